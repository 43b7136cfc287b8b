"""Train one run of the workflow, then evaluate it for its evaluation job (stn.evaluation_memo)."""

import json

import torch

from stn.io import DiskFullError
from stn.job import job
from stn.training import GpuOutOfMemory, TrainingDiverged, train

with job(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    try:
        stats = train(
            snakemake.params.run,
            snakemake.output.model,
            runs_per_gpu=snakemake.config["resources"]["runs_per_gpu"],
        )
    except (GpuOutOfMemory, TrainingDiverged, DiskFullError) as error:  # the message says the fix
        print(f"error: {error}")
        raise SystemExit(f"error: {error}") from None
    print(json.dumps(stats, indent=2))

    from stn.evaluation import evaluate_for_memo

    memo = snakemake.params.memo
    print(evaluate_for_memo(snakemake.output.model, memo["test_set"], memo["code"], memo["device"]))
