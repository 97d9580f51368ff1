"""``pyleakhunt demo``: find the leak of a small demo web service
(`pyleakhunt.demo`)."""

from __future__ import annotations

import argparse
import sys

from .options import positive_int

SUMMARY = "find a leak in a small demo service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt demo``."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not 0 < value <= 3600:
            raise argparse.ArgumentTypeError(
                "--seconds must be a number of seconds from 0 to 3600, not %s" % text
            )
        return value

    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--seconds",
        type=seconds,
        default=5.0,
        metavar="S",
        help="drive traffic for S seconds (5)",
    )
    amount.add_argument(
        "--requests",
        type=lambda text: positive_int(text, "--requests", 10_000_000),
        default=None,
        metavar="N",
        help="drive N requests instead",
    )


def run(args: argparse.Namespace) -> int:
    """Find the leak of a small demo web service."""
    from .. import demo

    return demo.run(sys.stdout, requests=args.requests, seconds=args.seconds)
