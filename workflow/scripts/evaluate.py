"""Evaluate one checkpoint on its task's fixed test set."""

from stn.evaluation import evaluate
from stn.io import output_to

with output_to(snakemake.log[0]):
    metrics = evaluate(
        snakemake.input.model, snakemake.input.test_set, snakemake.output[0], snakemake.params.device
    )
    print(f"{metrics['network']} {metrics['task']} seed {metrics['seed']}: {metrics['test_error']:.2f}%")
