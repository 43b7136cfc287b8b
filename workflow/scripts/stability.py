"""The stability of a table's learned transformers: a table and a figure."""

from functools import partial
from pathlib import Path

from stn.job import job
from stn.report import training
from stn.report.writers import write_table

with job(snakemake.log[0]):
    tasks, networks = snakemake.params.tasks, snakemake.params.networks
    runs = training.load_runs(snakemake.input.metrics, snakemake.input.logs)
    table = training.stability_table(runs, networks, tasks)
    spreads = ", ".join(f"{column} < {bound}" for column, bound in training.COLLAPSED_SPREADS.items())
    caption = (
        f"Training stability of the learned transformers of {snakemake.wildcards.table}, per network "
        "and task, of its runs (seeds): diverged (a non-finite or exploding loss ended the run), "
        f"identity (final displacement ‖θ − I‖ < {training.IDENTITY_DISPLACEMENT}: never left it), "
        f"collapsed (one warp for every image: final {spreads}), and the standard deviation over "
        "seeds of the final training loss. The paper claims that sharing parameters between the "
        "classification and the localisation network (STN-SLX) trains deeper localisation networks "
        "stably, where separate ones (STN-DLX) do not: fewer diverged or collapsed runs and a "
        "smaller loss spread for SL than for DL at the same depth."
    )
    write_table(
        table,
        partial(training.format_stability, table, tasks),
        Path(snakemake.output.table).with_suffix(""),
        caption,
    )
    training.stability_figure(runs, networks, tasks, Path(snakemake.output.figure).with_suffix(""))
    print(table.to_string())
