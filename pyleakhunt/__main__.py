"""``python -m pyleakhunt``: the same as the ``pyleakhunt`` command."""

import sys

from .cli import main

sys.exit(main())
