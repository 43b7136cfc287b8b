"""The rotation analysis of a table's networks, drawn."""

import json
from pathlib import Path

from stn.io import output_to
from stn.report import rotation_figure

with output_to(snakemake.log[0]):
    analyses = [json.loads(Path(path).read_text()) for path in snakemake.input.analyses]
    rotation_figure(analyses, snakemake.params.networks, Path(snakemake.output[0]).with_suffix(""))
