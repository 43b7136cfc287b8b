"""``python -m stn``."""

import sys

from stn.cli import main

sys.exit(main())
