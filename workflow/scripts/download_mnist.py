"""Fetch (or verify files placed by hand) the official MNIST files."""

from pathlib import Path

from stn.data.mnist_files import load_official_mnist
from stn.io import output_to

with output_to(snakemake.log[0]):
    root = Path(snakemake.output[0]).parent
    load_official_mnist(root, snakemake.params.mirrors)
