"""Let the tests import the example's modules, wherever pytest runs from."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
