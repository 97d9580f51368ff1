"""``python -m pyleakhunt.attach ARGS``: the same as ``pyleakhunt attach``."""

import sys

from .cli import main

sys.exit(main())
