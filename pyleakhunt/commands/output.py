"""Writing a command's output: text, JSON, pprof or folded stacks, on
stdout or to ``-o FILE``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .. import export, report
from . import UsageError
from .files import reading
from .options import DEFAULT_KEY


def print_lines(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


def print_json(doc: Any, compact: bool = False) -> None:
    if compact:
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(report.dumps(doc) + "\n")


OUTPUT_FORMATS = ("text", "json", "pprof", "folded")


def add_output_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help=(
            "text (default), json (as --json), pprof (gzipped profile.proto "
            "for go tool pprof) or folded (folded stacks for flamegraph.pl "
            "and speedscope); pprof and folded hold %s, with whole "
            "tracebacks" % what
        ),
    )
    parser.add_argument(
        "-o",
        dest="output",
        metavar="FILE",
        default=None,
        help="write to FILE instead of stdout",
    )
    parser.add_argument(
        "--value",
        choices=export.FOLDED_VALUES,
        default="bytes",
        help="folded: the value of a stack, bytes (default) or count (blocks)",
    )


def output_format(args: argparse.Namespace) -> str:
    """The format asked for with --format or --json."""
    if args.json and args.format not in (None, "json"):
        raise UsageError("--json and --format %s disagree" % args.format)
    fmt = args.format or ("json" if args.json else "text")
    if fmt in ("pprof", "folded") and (
        args.cumulative or args.key not in ("lineno", DEFAULT_KEY)
    ):
        raise UsageError(
            "--format %s holds whole tracebacks: --key and --cumulative apply "
            "to text and json only" % fmt
        )
    if fmt == "pprof" and args.output in (None, "-") and sys.stdout.isatty():
        raise UsageError("pprof output is binary: give -o FILE")
    return fmt


def write_output(args: argparse.Namespace, data: Any) -> None:
    """*data* (text or, for pprof, bytes) to -o FILE or stdout."""
    if args.output in (None, "-"):
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
        return
    with reading(args.output, "write"):
        if isinstance(data, bytes):
            with open(args.output, "wb") as f:
                f.write(data)
        else:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(data)


def write_profile(args: argparse.Namespace, fmt: str, profile: Any) -> None:
    if fmt == "pprof":
        write_output(args, export.pprof_bytes(profile))
    else:
        lines = export.folded_lines(profile, args.value)
        write_output(args, "".join(line + "\n" for line in lines))
