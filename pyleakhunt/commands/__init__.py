"""The subcommands of the ``pyleakhunt`` command, one module each.

A subcommand's module has ``SUMMARY`` (its one-line help), ``USAGE`` (a
usage line, or None to let argparse write it), ``JSON_SHAPES`` (the JSON
it prints, for its ``--help``), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code).  This package holds what they share:
the registry (`COMMANDS`), the one parser class (`Parser`), the one error
printer (`error`), and the one error class with its exit code
(`PyleakhuntError`, from `pyleakhunt.errors`, with the one table of exit
codes, `EXIT_CODES`, documented in docs/cli.md).

A subcommand raises `PyleakhuntError` (or a subclass: `UsageError`,
`FileError`, the census's and attach's errors) for anything that goes
wrong; `main` prints it as one line, ``pyleakhunt: error: ...``, and
returns its code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import Any, Callable, List, Optional, Sequence

from ..errors import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_FILE,
    EXIT_INTERRUPTED,
    EXIT_NO_GDB,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PTRACE,
    EXIT_REFUSED,
    EXIT_TARGET_ERROR,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    FileError,
    PyleakhuntError,
    UsageError,
    error,
    warn,
)
from ..report import exit_codes_text

__all__ = [
    "COMMANDS",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_FILE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NO_GDB",
    "EXIT_OK",
    "EXIT_PTRACE",
    "EXIT_REFUSED",
    "EXIT_TARGET_ERROR",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "FileError",
    "Parser",
    "PyleakhuntError",
    "UsageError",
    "build_parser",
    "commands_named",
    "epilog",
    "error",
    "main",
    "report_errors",
    "warn",
]

#: The subcommands, in the order ``--help`` lists them: each is the module
#: ``pyleakhunt.commands.<name>``, imported when the parser is built.
COMMANDS = ("run", "top", "diff", "suspects", "report", "demo", "attach", "census")

#: What ``--help`` says of the JSON output, after the shapes.
JSON_NOTES = """\
Sizes in bytes, timestamps in seconds since the epoch; tracebacks are lists
of [filename, lineno], the most recent call first; filename/lineno are the
key's most recent frame (lineno 0 with --key filename); user_frame is the
most recent [filename, lineno] in your code, via the library frame that
allocated, or null.  "estimated": sampled
tracing, figures are estimates; "lost_blocks" > 0: figures are incomplete.
"freed_at_exit": the suspect grew until the closing sample, taken after the
program ended, which found it freed (size and count are then at that
sample)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`UsageError`), not
    usage plus error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError("%s (see '%s --help')" % (message, self.prog))


def epilog(*json_shapes: str, before: str = "") -> str:
    """The end of a ``--help``: *before*, the JSON shapes, the exit codes."""
    parts = [before, ""] if before else []
    if json_shapes:
        parts.append("JSON output (--json, on stdout):")
        parts += ["  " + line for shape in json_shapes for line in shape.splitlines()]
        parts += ["  " + line for line in JSON_NOTES.splitlines()]
        parts.append("")
    parts.append(exit_codes_text(EXIT_CODES))
    return "\n".join(parts)


def command_module(name: str) -> ModuleType:
    """The module of subcommand *name* (one of `COMMANDS`)."""
    return importlib.import_module("%s.%s" % (__name__, name))


def add_command(subparsers: Any, name: str) -> argparse.ArgumentParser:
    """Add subcommand *name* to *subparsers*; its ``run`` is ``args.func``."""
    module = command_module(name)
    summary: str = module.SUMMARY
    sub = subparsers.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        usage=getattr(module, "USAGE", None),
        epilog=epilog(
            *getattr(module, "JSON_SHAPES", ()),
            before=getattr(module, "EPILOG", ""),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub)
    sub.set_defaults(func=module.run)
    return sub


def build_parser(names: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The argument parser of the ``pyleakhunt`` command (with subcommands
    *names*)."""
    import pyleakhunt

    shapes = [
        shape
        for name in names
        for shape in getattr(command_module(name), "JSON_SHAPES", ())
    ]
    parser = Parser(
        prog="pyleakhunt",
        description="Hunt memory leaks in Python programs.",
        epilog=epilog(*dict.fromkeys(shapes)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version="%(prog)s " + pyleakhunt.__version__
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in names:
        add_command(subparsers, name)
    return parser


def silence_stdout() -> None:
    """Point stdout at /dev/null so that the exit-time flush after a closed
    pipe (``pyleakhunt top f | head``) stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def report_errors(call: Callable[[], int]) -> int:
    """Return what *call* returns; print its `PyleakhuntError` as one line
    and return its code instead (a closed stdout is no error, Ctrl-C 130)."""
    try:
        code = call()
        try:
            sys.stdout.flush()
        except ValueError:  # closed by the program that run ran
            pass
        return code
    except PyleakhuntError as exc:
        error(str(exc))
        return exc.code
    except BrokenPipeError:
        silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED


def commands_named(argv: Sequence[str]) -> Sequence[str]:
    """The subcommands whose parsers *argv* needs: the one it names, or all
    of them (for ``--help``, ``--version`` and errors that list them).

    Each subcommand's module is imported to build its parser, and some
    import much (census, attach); a command line that names one needs no
    other.  The top-level parser has no option that takes a value, so the
    first argument that is not an option is the subcommand.
    """
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return (first,) if first in COMMANDS else COMMANDS


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``pyleakhunt`` command with *argv*; return its exit code."""

    def parse_and_run() -> int:
        args_list = sys.argv[1:] if argv is None else argv
        try:
            args = build_parser(commands_named(args_list)).parse_args(args_list)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        code: int = args.func(args)
        return code

    return report_errors(parse_and_run)
