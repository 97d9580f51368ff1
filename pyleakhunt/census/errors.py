"""The census's errors, each with the exit code the command gives it."""

from __future__ import annotations

#: Everything went well.
EXIT_OK = 0
#: ``--type NAME`` or ``--held-by ADDRESS`` names nothing in the census.
EXIT_NOT_FOUND = 1
#: Bad usage: an unknown option, a missing argument.
EXIT_USAGE = 2
#: The input file is missing, unreadable, truncated, not an ELF core of an
#: x86-64 CPython 3.10-3.15 process, or not a saved census.
EXIT_BAD_INPUT = 3
#: The target process is gone, may not be read, or is not CPython 3.10-3.15.
EXIT_PROCESS = 4
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130

#: Every exit code of ``pyleakhunt census`` and what it means.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_NOT_FOUND: "--type or --held-by names nothing in the census",
    EXIT_USAGE: "bad usage: unknown option, missing or bad argument",
    EXIT_BAD_INPUT: (
        "the input is missing, unreadable, truncated, or not an ELF core of "
        "an x86-64 CPython 3.10-3.15 process (nor a saved census)"
    ),
    EXIT_PROCESS: (
        "the process is gone, may not be read (permissions, ptrace), or is "
        "not CPython 3.10-3.15"
    ),
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class CensusError(Exception):
    """A census cannot be taken; ``exit_code`` says which kind of failure."""

    exit_code = EXIT_BAD_INPUT


class BadInputError(CensusError):
    """The core or census file is missing, damaged or of the wrong kind."""

    exit_code = EXIT_BAD_INPUT


class ProcessError(CensusError):
    """The live process is gone, off limits, or not a supported Python."""

    exit_code = EXIT_PROCESS


class NotFoundError(CensusError):
    """A type or an address that the census does not contain."""

    exit_code = EXIT_NOT_FOUND
