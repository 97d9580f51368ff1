"""The census's errors, each with the exit code the command gives it (the
one table of `pyleakhunt.errors`, docs/cli.md)."""

from __future__ import annotations

from ..errors import (
    EXIT_CODES,
    EXIT_FILE,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PTRACE,
    EXIT_REFUSED,
    EXIT_USAGE,
    PyleakhuntError,
)

#: The input file is missing, unreadable, truncated, not an ELF core of an
#: x86-64 CPython 3.10-3.15 process, or not a saved census.
EXIT_BAD_INPUT = EXIT_FILE
#: The target process is gone, not CPython 3.10-3.15, or in no state to be
#: read (traced by another, does not stop).
EXIT_PROCESS = EXIT_REFUSED
#: The target process may not be read (permissions, ptrace).
EXIT_NOT_PERMITTED = EXIT_PTRACE

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NOT_PERMITTED",
    "EXIT_OK",
    "EXIT_PROCESS",
    "EXIT_USAGE",
    "BadInputError",
    "CensusError",
    "NotFoundError",
    "NotPermittedError",
    "ProcessError",
]


class CensusError(PyleakhuntError):
    """A census cannot be taken; ``code`` (also ``exit_code``) says which
    kind of failure."""

    code = EXIT_BAD_INPUT


class BadInputError(CensusError):
    """The core or census file is missing, damaged or of the wrong kind."""

    code = EXIT_BAD_INPUT


class ProcessError(CensusError):
    """The live process is gone, not a supported Python, or cannot be
    stopped."""

    code = EXIT_PROCESS


class NotPermittedError(ProcessError):
    """The live process may not be read by this user."""

    code = EXIT_NOT_PERMITTED


class NotFoundError(CensusError):
    """A type or an address that the census does not contain."""

    code = EXIT_NOT_FOUND
