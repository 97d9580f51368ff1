"""The ``pyleakhunt`` command (also ``python -m pyleakhunt``).

Usage::

    pyleakhunt run [--nframe N] [--sample SIZE] [--interval S] [-o DIR] [--json]
                   (script.py | -m module | [--signal NAME] -- COMMAND) [args ...]
    pyleakhunt top FILE [-n N] [--key KEY] [--cumulative]
                   [--json | --format FORMAT] [-o FILE] [--value bytes|count]
    pyleakhunt diff OLD NEW [-n N] [--key KEY] [--cumulative]
                   [--json | --format FORMAT] [-o FILE] [--value bytes|count]
    pyleakhunt suspects DIR_OR_FILE [-n N] [--key KEY] [--json]
    pyleakhunt report PATH [PATH2] [-o FILE]
    pyleakhunt demo [--seconds S | --requests N]
    pyleakhunt attach PID [...]        (docs/attach.md)
    pyleakhunt census CORE | --pid PID [...]   (docs/census.md)

``run`` runs a Python program in this process with tracing on from its first
line (every allocation, or one per SIZE bytes on average with ``--sample``),
samples it every S seconds into a timeline file
``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``, and when the program ends
prints a summary (the timeline, the top suspects) on stderr.  With
``-- COMMAND`` (``gunicorn app:app``, ``python3 app.py``...) it runs the
command in a child process with ``PYLEAKHUNT`` set (see
`pyleakhunt.production`): every Python process the command starts, forked
and spawned workers included, traces from its first line into its own
timeline in DIR; the summary covers them all.  ``top`` shows
the biggest call sites of a snapshot file or of the last entry of a timeline,
``diff`` the growth between two such files, ``suspects`` the call sites that
kept growing in a timeline, or in every timeline of a directory.  KEY is
``userline`` (the default, ``lineno`` with ``--cumulative``): the most
recent line in the user's code, so that what json, logging or an installed
package allocates for a line of the program counts under that line
(`pyleakhunt.userframe`); or ``lineno`` (the most recent line anywhere, as
tracemalloc), ``filename`` or ``traceback``.  Each row shows the user's
line first and, beneath it, the library frame that allocated, as ``via
json/decoder.py:353``.

``top`` and ``diff`` write FORMAT ``text`` (the default), ``json`` (the same
as ``--json``), ``pprof`` (gzipped profile.proto for ``go tool pprof``:
``-o FILE`` needed on a terminal) or ``folded`` (folded stacks for
flamegraph.pl and speedscope, valued in bytes or, with ``--value count``,
blocks), on stdout or to ``-o FILE``.  pprof and folded output hold every
call site with its whole traceback (``-n`` does not apply); for ``diff``
they hold the growth: the call sites whose live size grew, valued by how
much.  See `pyleakhunt.export`.

JSON output (``--json``, on stdout).  Sizes are in bytes, timestamps in
seconds since the epoch, tracebacks lists of ``[filename, lineno]`` with the
most recent call first, ``filename``/``lineno`` the most recent frame of
the key (``lineno`` is 0 with ``--key filename``), ``user_frame`` the most
recent ``[filename, lineno]`` in the user's code (of the biggest call site
under the key) and ``via`` the library frame that allocated, or null::

    top:      {"command": "top", "file", "kind": "snapshot"|"timeline",
               "entries": N|null, "truncated_tail", "aggregated", "pid",
               "timestamp", "traceback_limit", "estimated", "sample_bytes",
               "lost_blocks", "total_size", "total_count", "key_type",
               "cumulative", "statistics": [{"filename", "lineno", "size",
               "count", "traceback", "user_frame", "via"}, ...]}
    diff:     {"command": "diff", "old": {FILE}, "new": {FILE}, "estimated",
               "lost_blocks", "key_type", "cumulative", "statistics":
               [{"filename", "lineno", "size", "size_diff", "count",
               "count_diff", "traceback", "user_frame", "via"}, ...]}
              ({FILE}: the keys of top from "file" to "total_count"; the
              biggest growth first, unchanged call sites left out)
    suspects: [{"file", "pid", "filename", "lineno", "size", "count",
               "growth_bytes", "growth_bytes_per_s",
               "growth_bytes_per_snapshot", "consistency", "samples",
               "duration_s", "estimated", "freed_at_exit", "traceback",
               "user_frame", "via"}, ...]
    run:      {"command": "run", "timeline", "pid", "exit_code", "samples",
               "duration_s", "sampling_error": str|null,
               "suspects": [SUSPECT, ...]}
              (one line after the program's output; SUSPECT as in suspects;
              with -- COMMAND also "timelines": [path, ...], one per traced
              process, "timeline" being the command's own or null, "pid" the
              command's)

{FILE} holds the ``top`` keys from "file" to "total_count".  ``diff`` lists
the biggest growth first and leaves out call sites that did not change; its
"estimated" is true if either file is, its "lost_blocks" the larger count.
``suspects`` lists each timeline's suspects (at most N each), the fastest
growth first, timelines in name order.  "estimated" true means sampled
tracing: sizes and counts are estimates.  "lost_blocks" > 0 means the tracer
failed to record some blocks: the figures are incomplete.

Exit codes (one table for every subcommand, docs/cli.md; ``run`` exits
with its program's own code)::

    0    success
    1    failed, for a reason the error line gives (demo: no leak found;
         attach: gdb's or sys.remote_exec's error); run: the program raised
         an exception
    2    bad usage: unknown command, bad option or argument
    3    a file is missing, unreadable or of the wrong kind, an output file
         cannot be written, or the script, module or command given to run
         cannot be found
    4    the process is gone, not a supported Python, or in no state to be
         read or attached to (attach, census --pid)
    5    not permitted to read or trace the process (attach, census --pid)
    6    gdb is missing (attach)
    7    timed out (attach)
    8    the target ran the command and reported an error (attach)
    9    census: --type or --held-by names nothing in the census
    130  interrupted (Ctrl-C)

Errors are one line on stderr (``pyleakhunt: error: ...``).  Output cut
short by a closed pipe (``pyleakhunt top f | head``) is not an error.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Dict

from .commands import build_parser, main
from .errors import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_FILE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    FileError,
    PyleakhuntError,
    UsageError,
)

# Names this module had before the subcommands moved to
# `pyleakhunt.commands`, kept for code that imports them from here.
CLIError = PyleakhuntError
EXIT_FAILURE = EXIT_FAILED
EXIT_BAD_FILE = EXIT_FILE

#: The moved names that live in a subcommand's module, by module: each is
#: imported on first use, so that ``pyleakhunt report`` does not pay for
#: importing ``census`` and ``attach``.
_LAZY = {
    "pyleakhunt.commands.diff": ("JSON_DIFF",),
    "pyleakhunt.commands.run": ("JSON_RUN", "Target", "timeline_path"),
    "pyleakhunt.commands.suspects": ("JSON_SUSPECTS",),
    "pyleakhunt.commands.top": ("JSON_TOP",),
    "pyleakhunt.commands.options": ("DEFAULT_KEY", "KEY_CHOICES"),
    "pyleakhunt.commands.files": (
        "PROGRESS_MIN_BYTES",
        "TimelineReader",
        "analyse_timeline",
        "load_snapshot",
        "timeline_paths",
    ),
    "pyleakhunt.fileformat": ("file_kind",),
}
_MODULE_OF: Dict[str, str] = {
    name: module for module, names in _LAZY.items() for name in names
}

__all__ = [
    "CLIError",
    "EXIT_BAD_FILE",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_FAILURE",
    "EXIT_FILE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "FileError",
    "PyleakhuntError",
    "UsageError",
    "build_parser",
    "main",
]
__all__ += sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


if __name__ == "__main__":
    sys.exit(main())
