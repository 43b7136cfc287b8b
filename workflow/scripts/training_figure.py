"""How a table's runs trained: the training loss and the transformer's displacement by step."""

from pathlib import Path

from stn.job import job
from stn.report.training import load_runs, training_figure

with job(snakemake.log[0]):
    runs = load_runs(snakemake.input.metrics, snakemake.input.logs)
    training_figure(
        runs, snakemake.params.networks, snakemake.params.tasks, Path(snakemake.output[0]).with_suffix("")
    )
    print(f"{len(runs)} runs, {sum(len(run.log) for run in runs)} log rows")
