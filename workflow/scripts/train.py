"""Train one run of the workflow."""

import json

import torch

from stn.io import output_to
from stn.training import train

with output_to(snakemake.log[0]):  # noqa: F821
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    stats = train(snakemake.params.run, snakemake.output.model)  # noqa: F821
    print(json.dumps(stats, indent=2))
