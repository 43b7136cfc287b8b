"""Aggregate the metrics of every run into a table and an error figure."""

from pathlib import Path

from stn.io import output_to
from stn.report import error_figure, load_metrics, summary_table, write_table

with output_to(snakemake.log[0]):
    tasks, networks = snakemake.params.tasks, snakemake.params.networks
    name = snakemake.wildcards.table
    metrics = load_metrics(snakemake.input.metrics)
    table = summary_table(metrics, networks, tasks, paper=name)
    caption = (
        f"Test error (%) on {name}: mean ± standard deviation over seeds (n), "
        "the paper's error, and our mean minus the paper's; for rotated tasks, undone: the share "
        "of an applied rotation that the transformer undoes (1: every copy to one pose, 0: none)."
    )
    write_table(table, tasks, Path(snakemake.output.table[0]).with_suffix(""), caption)
    error_figure(metrics, networks, tasks, Path(snakemake.output.figure[0]).with_suffix(""), paper=name)
    print(table.to_string())
