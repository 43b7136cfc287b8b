"""``python -m stn.bench``: the same as ``python -m stn bench``."""

import sys

from stn.bench.cli import main

sys.exit(main())
