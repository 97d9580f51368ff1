"""``pyleakhunt attach``: trace a running Python process (start, snapshot,
watch, detach, status).

The command's arguments and its run live in `pyleakhunt.attach` for now;
this module registers them, and its errors (`AttachError`) reach the
command's one error printer with codes from the one table.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import attach as _attach

SUMMARY = _attach.SUMMARY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``pyleakhunt attach``."""
    _attach.add_arguments(parser)


def run(args: argparse.Namespace) -> Any:
    """Run ``pyleakhunt attach`` with parsed *args*; return the exit code."""
    return _attach.run_command(args)
