"""``python -m pyleakhunt.census ARGS``: the same as ``pyleakhunt census ARGS``."""

import sys

from ..commands import main

sys.exit(main(["census", *sys.argv[1:]]))
