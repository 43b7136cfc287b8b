"""The rotation analysis of a table's networks: the figure and the table of spreads."""

import json
from functools import partial
from pathlib import Path

from stn.job import job
from stn.report.rotation import format_rotation_table, rotation_figure, rotation_table
from stn.report.writers import write_table

with job(snakemake.log[0]):
    analyses = [json.loads(Path(path).read_text()) for path in snakemake.input.analyses]
    skipped = [a for a in analyses if a.get("status") == "diverged"]
    for analysis in skipped:
        print(f"{analysis['network']} {analysis['task']} seed {analysis['seed']}: diverged, left out")
    analyses = [a for a in analyses if a not in skipped]
    analysed = {a["network"] for a in analyses}
    networks = [n for n in snakemake.params.networks if n == "CNN" or n in analysed]  # all diverged: out
    rotation_figure(analyses, networks, Path(snakemake.output.figure).with_suffix(""))
    table = rotation_table(analyses, networks)
    caption = (
        f"Rotation analysis of {snakemake.wildcards.table}: each test image rotated to "
        f"{len(analyses[0]['angles'])} angles over [-180°, 180°); the residual pose (applied + "
        "predicted angle) of its copies, the medoid's mean angular distance to the others, "
        "averaged over images: mean ± half-width of the 95% t-interval over seeds (n). Modulo "
        "360°: the distance of two rotations; modulo 180°: the authors' measure, which counts a "
        "copy left upside down as aligned. 0: every copy in one pose; a transformer that ignores "
        f"rotations: {table['ignoring360'].iloc[0]:.1f}° (mod 360°)."
    )
    write_table(
        table, partial(format_rotation_table, table), Path(snakemake.output.table).with_suffix(""), caption
    )
    print(table.to_string())
