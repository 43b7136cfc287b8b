"""Test error against the depth of the transformer."""

from pathlib import Path

from stn.job import job
from stn.report.figures import depth_figure
from stn.report.tables import load_metrics

with job(snakemake.log[0]):
    metrics = load_metrics(snakemake.input.metrics)
    stem = Path(snakemake.output[0]).with_suffix("")
    depth_figure(
        metrics, snakemake.params.networks, snakemake.params.tasks, stem, paper=snakemake.wildcards.table
    )
