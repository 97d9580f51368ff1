"""``python -m pyleakhunt.census ARGS``: the same as ``pyleakhunt census ARGS``."""

import sys

from .cli import main

sys.exit(main())
