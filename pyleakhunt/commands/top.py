"""``pyleakhunt top``: the biggest call sites of a snapshot file or of the
last entry of a timeline, as text, JSON, pprof or folded stacks."""

from __future__ import annotations

import argparse
from typing import Dict

from .. import export, report
from ..growth import reduce_snapshot
from ..snapshot import Snapshot, Traceback
from . import EXIT_OK, files
from .options import add_report_options, check_cumulative
from .output import add_output_options, output_format, write_output, write_profile

SUMMARY = "the biggest call sites of a snapshot or of a timeline's last entry"
JSON_TOP = """\
top:      {"command": "top", "file", "kind": "snapshot"|"timeline",
           "entries": N|null, "truncated_tail", "aggregated", "pid",
           "timestamp", "traceback_limit", "estimated", "sample_bytes",
           "lost_blocks", "total_size", "total_count", "key_type",
           "cumulative", "statistics": [{"filename", "lineno", "size",
           "count", "traceback", "user_frame", "via"}, ...]}"""
JSON_SHAPES = (JSON_TOP,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt top``."""
    parser.add_argument("file", metavar="FILE", help="a snapshot or timeline file")
    add_report_options(parser, cumulative=True)
    add_output_options(parser, "the live memory of every call site")


def run(args: argparse.Namespace) -> int:
    """Print (or export) the biggest call sites of a snapshot."""
    check_cumulative(args)
    fmt = output_format(args)
    loaded = files.load_snapshot(args.file)
    if fmt in ("pprof", "folded"):
        write_profile(args, fmt, export.live_memory(loaded.snapshot))
        return EXIT_OK
    stats = loaded.snapshot.top(args.limit, args.key, args.cumulative)
    full = full_tracebacks(args, loaded.snapshot)
    if fmt == "json":
        doc = report.top_json(loaded, stats, args.key, args.cumulative, full)
        write_output(args, report.dumps(doc) + "\n")
    else:
        lines = report.top_lines(loaded, stats, args.key, full)
        write_output(args, "".join(line + "\n" for line in lines))
    return EXIT_OK


def full_tracebacks(
    args: argparse.Namespace, snapshot: Snapshot
) -> Dict[Traceback, Traceback]:
    """Each row's key -> the whole traceback of its biggest site, where the
    user's frame of a one-frame key (``lineno``) is found."""
    if args.cumulative:
        return {}  # a row is one frame of many tracebacks
    return reduce_snapshot(snapshot, args.key, exclude_tracer=False)[1]
