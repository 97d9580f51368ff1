"""``python -m pyleakhunt.attach ARGS``: the same as ``pyleakhunt attach``."""

import sys

from ..commands.attach import main

sys.exit(main())
