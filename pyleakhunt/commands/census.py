"""``pyleakhunt census``: what fills a core dump or a live process, and who
holds it (`pyleakhunt.census`).

Usage::

    pyleakhunt census CORE [--python PATH] [options]
    pyleakhunt census --pid PID [--no-stop] [options]
    pyleakhunt census FILE              (a census saved with -o)
    pyleakhunt census diff A B          (cores or saved censuses)

Options: ``--type NAME`` (who holds objects of this type; repeatable),
``--held-by ADDRESS`` (who holds this one object), ``-n N`` (rows of the
table, default 20), ``--json``, ``-o FILE`` (save the census as JSON),
``--no-holders`` (the type table only: fastest).

``python -m pyleakhunt.census`` runs the same command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..census import report
from ..census.diff import diff
from ..census.errors import CensusError
from ..census.model import Census
from ..census.progress import Progress
from ..census.session import DEFAULT_HOLDER_TYPES, Session
from ..census.take import open_core, open_process, run_census
from ..fileformat import file_kind
from ..report import dumps
from . import EXIT_OK, UsageError
from .options import pid

SUMMARY = "count the objects of a core dump or a live process, and find who holds them"

#: Types whose holders the text report shows when --type is not given.
SHOWN_HOLDER_TYPES = 3
#: Types whose holders ``census diff`` looks up, among those that grew.
DIFF_HOLDER_TYPES = 10


def _address(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return value


#: What ``--help`` says before the exit codes.
EPILOG = (
    "Take a core with gcore (from gdb: gcore -o core PID) or let the kernel\n"
    "write one (ulimit -c unlimited, or systemd-coredump); see docs/census.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt census``."""
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="CORE",
        help="an ELF core file, a census saved with -o, or 'diff A B'",
    )
    parser.add_argument("--pid", type=pid, help="read this live process instead")
    parser.add_argument(
        "--python",
        metavar="PATH",
        help="the interpreter (or libpython) the core came from, if the path "
        "recorded in the core is not usable here",
    )
    parser.add_argument(
        "--type",
        metavar="NAME",
        dest="types",
        action="append",
        default=[],
        help="show who holds the objects of this type (full or last part of "
        "its name; repeatable)",
    )
    parser.add_argument(
        "--held-by",
        metavar="ADDRESS",
        type=_address,
        help="show who holds the object at this address (0x...)",
    )
    parser.add_argument(
        "-n",
        type=_positive,
        default=20,
        metavar="N",
        help="rows of the type table (default 20)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "-o", dest="output", metavar="FILE", help="also save the census as JSON"
    )
    parser.add_argument(
        "--no-stop",
        action="store_true",
        help="with --pid: read without stopping the process (counts may be off)",
    )
    parser.add_argument(
        "--no-holders",
        action="store_true",
        help="only the type table (fastest; no held-by chains)",
    )


# --------------------------------------------------------------------------
# Running


def _print(lines: Sequence[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def _is_saved_census(path: str) -> bool:
    """Is *path* a census saved as JSON (rather than an ELF core)?"""
    try:
        return file_kind(path) == "census"
    except OSError:
        return False  # open_core gives the clear error


def _holders_to_compute(args: argparse.Namespace) -> int:
    if args.no_holders:
        return 0
    return max(DEFAULT_HOLDER_TYPES, SHOWN_HOLDER_TYPES)


def _show(census: Census, args: argparse.Namespace) -> None:
    if args.output:
        try:
            census.save(args.output)
        except OSError as exc:
            raise CensusError(f"cannot write {args.output!r}: {exc.strerror}") from None
    if args.json:
        sys.stdout.write(dumps(report.census_json(census)) + "\n")
        return
    if args.types:
        shown = [census.find_type(name).name for name in args.types]
    else:
        shown = [
            t.name
            for t in census.types[:SHOWN_HOLDER_TYPES]
            if t.name in census.holders
        ]
    _print(report.census_lines(census, args.n, shown))


def _held_by(session: Session, args: argparse.Namespace) -> None:
    session.census()
    found = session.held_by(args.held_by)
    if args.json:
        sys.stdout.write(dumps(report.object_json(found)) + "\n")
    else:
        _print(report.object_lines(found))


def _run_session(session: Session, args: argparse.Namespace) -> None:
    if args.held_by is not None:
        _held_by(session, args)
        return
    census = run_census(session, _holders_to_compute(args), args.types)
    _show(census, args)


def _census_of(
    path: str, args: argparse.Namespace, extra_types: Sequence[str] = ()
) -> Census:
    if _is_saved_census(path):
        return Census.load(path)
    with open_core(path, args.python) as session:
        return run_census(session, _holders_to_compute(args), extra_types)


def _run_diff(args: argparse.Namespace) -> None:
    if len(args.inputs) != 3:
        raise UsageError("census diff needs two inputs: census diff A B")
    old_path, new_path = args.inputs[1:]
    old = _census_of(old_path, args, args.types)
    new = _census_of(new_path, args, args.types)
    first = diff(old, new)
    grown = [g.name for g in first.types[:DIFF_HOLDER_TYPES] if g.size_diff > 0]
    missing = [n for n in grown if n not in old.holders or n not in new.holders]
    if missing and not args.no_holders:
        # Look up the holders of the types that grew, in both, if cores.
        if not _is_saved_census(old_path):
            old = _census_of(old_path, args, [*args.types, *grown])
        if not _is_saved_census(new_path):
            new = _census_of(new_path, args, [*args.types, *grown])
    result = diff(old, new)
    if args.json:
        sys.stdout.write(dumps(report.diff_json(result, args.n)) + "\n")
    else:
        _print(report.diff_lines(result, args.n))


def _check_usage(args: argparse.Namespace) -> None:
    inputs = args.inputs
    if inputs and inputs[0] == "diff":
        if args.pid is not None or args.held_by is not None:
            raise UsageError("census diff takes no --pid or --held-by")
        return
    if args.pid is not None and inputs:
        raise UsageError("give a core file or --pid PID, not both")
    if args.pid is None and len(inputs) != 1:
        raise UsageError(
            "give one core file, --pid PID, or 'diff A B' "
            "(see pyleakhunt census --help)"
        )
    if args.no_stop and args.pid is None:
        raise UsageError("--no-stop is for --pid")


def _dispatch(args: argparse.Namespace) -> None:
    _check_usage(args)
    if args.inputs and args.inputs[0] == "diff":
        _run_diff(args)
    elif args.pid is not None:
        with open_process(args.pid, stop=not args.no_stop) as session:
            _run_session(session, args)
    elif _is_saved_census(args.inputs[0]):
        if args.held_by is not None:
            raise UsageError("--held-by needs a core or a process, not a saved census")
        _show(Census.load(args.inputs[0]), args)
    else:
        with open_core(args.inputs[0], args.python) as session:
            _run_session(session, args)


def run(args: argparse.Namespace) -> int:
    """Run ``pyleakhunt census`` with parsed *args*; return the exit code.

    Its errors (`CensusError`) are printed by `pyleakhunt.commands.main`,
    after the progress line is gone.
    """
    with Progress(sys.stderr):
        _dispatch(args)
    return EXIT_OK
