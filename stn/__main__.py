"""``python -m stn``."""

from stn.cli import run

run()
