"""Argument types and options shared by the tracer-file commands."""

from __future__ import annotations

import argparse
from typing import Optional

from .. import production
from ..units import parse_size
from . import UsageError

KEY_CHOICES = ("userline", "lineno", "filename", "traceback")
#: The default grouping: by the most recent line in the user's code, so that
#: what json, logging or an ORM allocates for a line of the program is
#: counted under that line (`pyleakhunt.userframe`).
DEFAULT_KEY = "userline"


def positive_int(text: str, what: str, high: Optional[int] = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%s must be an integer" % what) from None
    if value < 1 or (high is not None and value > high):
        limit = "between 1 and %d" % high if high is not None else ">= 1"
        raise argparse.ArgumentTypeError("%s must be %s, not %d" % (what, limit, value))
    return value


def nframe(text: str) -> int:
    return positive_int(text, "the number of frames", 65535)


def limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("N must be an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("N must be >= 0, not %d" % value)
    return value


def byte_size(text: str, also: str = "") -> int:
    """A size of at least one byte (``512KiB``); *also* names what else
    the option takes, for the error."""
    try:
        value = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "SIZE must be a size such as 512KiB%s, not %r" % (also, text)
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("SIZE must be at least 1 byte")
    return value


def sample_size(text: str) -> Optional[int]:
    if text.strip().lower() == "exact":
        return None
    return byte_size(text, ", or exact")


def pid(text: str) -> int:
    """A process id."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("not a process id: %r" % text)
    return value


def dump_signal(text: str) -> Optional[int]:
    try:
        return production.parse_settings("signal=" + text).dump_signal
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str, what: str, finite: bool = True) -> float:
    """A positive number of seconds (``inf`` too unless *finite*); *what*
    names it in the error."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or (finite and value == float("inf")):  # NaN is not > 0
        raise argparse.ArgumentTypeError(
            "%s must be a positive number of seconds, not %s" % (what, text)
        )
    return value


def interval(text: str) -> float:
    return seconds(text, "the interval")


def add_report_options(parser: argparse.ArgumentParser, cumulative: bool) -> None:
    parser.add_argument(
        "-n",
        dest="limit",
        type=limit,
        default=10,
        metavar="N",
        help="show the N biggest (default: 10)",
    )
    parser.add_argument(
        "--key",
        choices=KEY_CHOICES,
        default=None,
        help=(
            "group by the most recent line in your code (userline, the "
            "default; lineno with --cumulative), by the most recent line "
            "anywhere (lineno), by file, or by whole traceback"
        ),
    )
    if cumulative:
        parser.add_argument(
            "--cumulative",
            action="store_true",
            help="count every frame of a traceback, not only the most recent",
        )
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output on stdout"
    )


def check_cumulative(args: argparse.Namespace) -> None:
    """Settle the key: `DEFAULT_KEY`, or ``lineno`` with --cumulative
    (which counts every frame, the user's among them)."""
    if args.key is None:
        args.key = "lineno" if args.cumulative else DEFAULT_KEY
    if args.cumulative and args.key not in ("lineno", "filename"):
        raise UsageError("--cumulative needs --key lineno or --key filename")
