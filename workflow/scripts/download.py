"""Fetch (or verify, where placed by hand) one raw file of a data set."""

from pathlib import Path

from stn.data import get_dataset
from stn.io import output_to

with output_to(snakemake.log[0]):
    data = snakemake.params.data
    get_dataset(data["dataset"]).fetch(data, Path(snakemake.output[0]))
