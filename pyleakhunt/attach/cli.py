"""The command line of ``pyleakhunt attach`` moved to
`pyleakhunt.commands.attach`; these names stay here for the package's
re-exports (``pyleakhunt.attach.main``, ``register``, ...)."""

from ..commands.attach import (
    SUMMARY,
    add_arguments,
    build_parser,
    main,
    register,
    request_from_args,
    run_command,
)

__all__ = [
    "SUMMARY",
    "add_arguments",
    "build_parser",
    "main",
    "register",
    "request_from_args",
    "run_command",
]
