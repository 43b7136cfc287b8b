"""Aggregate the metrics of every run into a table, the stated orderings and an error figure."""

from functools import partial
from pathlib import Path

from stn.job import job
from stn.report.figures import error_figure
from stn.report.tables import contrast_table, format_contrasts, format_table, load_metrics, summary_table
from stn.report.writers import write_table

with job(snakemake.log[0]):
    tasks, networks = snakemake.params.tasks, snakemake.params.networks
    name = snakemake.wildcards.table
    metrics = load_metrics(snakemake.input.metrics)
    table = summary_table(metrics, networks, tasks, paper=name)
    caption = (
        f"Test error (%) on {name}: mean ± half-width of the 95% t-interval over seeds (n); "
        "where the paper reports the value, the paper's error and our mean minus the paper's; "
        "for rotated tasks, undone: the share of an applied rotation that the transformer undoes "
        "(1: every copy to one pose, 0: none), and spread: the residual pose spread in degrees "
        "(0: every image of a class ends in one pose; on MNIST R about 52 when rotations are "
        "ignored; none where the test images are not rotated)."
    )
    write_table(
        table, partial(format_table, table, tasks), Path(snakemake.output.table).with_suffix(""), caption
    )
    contrasts = contrast_table(metrics, snakemake.params.contrasts, tasks)
    caption = (
        f"Orderings on {name}: the first network's test error minus the second's (percentage "
        "points), paired by seed, with the half-width of its 95% t-interval; holds: yes when the "
        "interval lies above 0, no when below, unclear when it spans 0."
    )
    write_table(
        contrasts,
        partial(format_contrasts, contrasts, tasks),
        Path(snakemake.output.contrasts).with_suffix(""),
        caption,
    )
    error_figure(metrics, networks, tasks, Path(snakemake.output.figure).with_suffix(""), paper=name)
    print(table.to_string())
    print(contrasts.to_string())
