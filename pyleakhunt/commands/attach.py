"""``pyleakhunt attach``: trace a running Python process (start, snapshot,
watch, detach, status); also ``python -m pyleakhunt.attach``.

The work is `pyleakhunt.attach.attach`; this module parses the arguments
into its `Request` and prints its result.  Its errors (`AttachError`, a
`PyleakhuntError`) are printed by the one error printer, with codes from
the one table (docs/cli.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional, Sequence

from ..attach.base import DEFAULT_TIMEOUT, AttachError, Environment, Request
from ..attach.command import attach
from ..attach.output import describe
from . import EXIT_OK, EXIT_USAGE, Parser, epilog, report_errors
from .options import byte_size, nframe, pid, seconds

# --------------------------------------------------------------------------
# Command line


SUMMARY = "trace a running Python process: start, snapshot, watch, detach"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``pyleakhunt attach``."""
    parser.add_argument("pid", type=pid, metavar="PID", help="the process")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--snapshot",
        metavar="FILE",
        help="write a snapshot of the target to FILE (written by the target)",
    )
    action.add_argument(
        "--watch",
        type=lambda text: seconds(text, "S", finite=False),
        metavar="S",
        help="record a timeline, a sample every S seconds (see --duration, -o)",
    )
    action.add_argument(
        "--detach",
        action="store_true",
        help="stop the tracing attach started (the program's own goes on)",
    )
    action.add_argument(
        "--status", action="store_true", help="show whether the target traces"
    )
    parser.add_argument(
        "--nframe",
        type=nframe,
        default=10,
        metavar="N",
        help="frames kept per traceback when tracing starts (default: 10)",
    )
    parser.add_argument(
        "--sample",
        type=byte_size,
        metavar="BYTES",
        help="sampled tracing: on average one allocation per BYTES (e.g. 512KiB)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="--snapshot: keep every block, not only per-site totals",
    )
    parser.add_argument(
        "--duration",
        type=lambda text: seconds(text, "T", finite=False),
        default=60.0,
        metavar="T",
        help="--watch: stop after T seconds (default: 60)",
    )
    parser.add_argument(
        "-o",
        dest="output",
        metavar="FILE",
        help="--watch: the timeline file (default: pyleakhunt-PID-TIME.plh here)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="--watch: wait until the timeline is complete",
    )
    parser.add_argument(
        "--timeout",
        type=lambda text: seconds(text, "S", finite=False),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="give up after S seconds (default: %g)" % DEFAULT_TIMEOUT,
    )
    parser.add_argument(
        "--method",
        choices=("auto", "gdb", "remote_exec"),
        default="auto",
        help="how to get in: gdb (Python 3.10+), sys.remote_exec (3.14+), or "
        "auto (the default: remote_exec when it can, else gdb)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show what gdb does"
    )


def request_from_args(args: argparse.Namespace) -> Request:
    """The `Request` of parsed *args*; AttachError (exit 2) on misuse."""

    def misuse(message: str) -> AttachError:
        return AttachError(message + " (see 'pyleakhunt attach --help')", EXIT_USAGE)

    request = Request(
        pid=args.pid,
        nframe=args.nframe,
        sample_bytes=args.sample,
        timeout=args.timeout,
        method=args.method,
        verbose=args.verbose,
        full=args.full,
        wait=args.wait,
        duration=args.duration,
    )
    if args.snapshot is not None:
        request.command = "snapshot"
        request.path = os.path.abspath(args.snapshot)
    elif args.watch is not None:
        request.command = "watch"
        request.interval = args.watch
        output = args.output or "pyleakhunt-%d-%s.plh" % (
            args.pid,
            time.strftime("%Y%m%d-%H%M%S"),
        )
        request.path = os.path.abspath(output)
    elif args.detach:
        request.command = "detach"
    elif args.status:
        request.command = "status"
    if args.full and request.command != "snapshot":
        raise misuse("--full goes with --snapshot")
    if args.output and request.command != "watch":
        raise misuse("-o goes with --watch")
    if args.wait and request.command != "watch":
        raise misuse("--wait goes with --watch")
    return request


def run_command(args: argparse.Namespace, env: Optional[Environment] = None) -> int:
    """Run parsed ``pyleakhunt attach`` arguments; return the exit code.

    Raises `AttachError` (printed by `pyleakhunt.commands.main`) on failure.
    """
    request = request_from_args(args)
    result = attach(request, env)
    sys.stdout.write("".join(line + "\n" for line in describe(request, result)))
    sys.stdout.flush()
    return EXIT_OK


#: The name every subcommand module gives its run (`pyleakhunt.commands`).
run = run_command


def register(subparsers: Any) -> None:
    """Add the ``attach`` command to the ``pyleakhunt`` command's *subparsers*.

    Its handler, ``args.func(args)``, returns the exit code, or raises
    `AttachError` with it.
    """
    parser = subparsers.add_parser(
        "attach",
        help=SUMMARY,
        description=SUMMARY[0].upper() + SUMMARY[1:] + ".",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m pyleakhunt.attach``."""
    parser = Parser(
        prog="pyleakhunt attach",
        description=SUMMARY[0].upper() + SUMMARY[1:] + ".",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(
    argv: Optional[Sequence[str]] = None, env: Optional[Environment] = None
) -> int:
    """``python -m pyleakhunt.attach ARGS`` (with *env*, the machine that
    tests replace); returns the exit code, printing errors as one line."""

    def parse_and_run() -> int:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        return run_command(args, env)

    return report_errors(parse_and_run)
