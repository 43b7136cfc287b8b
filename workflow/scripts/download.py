"""Fetch (or verify, where placed by hand) one raw file of a data set."""

from pathlib import Path

from stn.data import get_dataset
from stn.job import job

with job(snakemake.log[0]):
    data = snakemake.params.data
    get_dataset(data["dataset"]).fetch(data, Path(snakemake.output[0]))
