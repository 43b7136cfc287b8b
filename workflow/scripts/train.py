"""Train one run of the workflow."""

import json

import torch

from stn.io import output_to
from stn.training import train

with output_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    stats = train(
        snakemake.params.run,
        snakemake.output.model,
        runs_per_gpu=snakemake.config["resources"]["runs_per_gpu"],
    )
    print(json.dumps(stats, indent=2))
