"""``pyleakhunt diff``: the growth between two snapshot (or timeline)
files, the biggest first."""

from __future__ import annotations

import argparse

from .. import export, report
from . import EXIT_OK, files
from .options import add_report_options, check_cumulative
from .output import add_output_options, output_format, write_output, write_profile
from .top import full_tracebacks

SUMMARY = "the growth between two snapshots, the biggest first"
JSON_DIFF = """\
diff:     {"command": "diff", "old": {FILE}, "new": {FILE}, "estimated",
           "lost_blocks", "key_type", "cumulative", "statistics":
           [{"filename", "lineno", "size", "size_diff", "count",
           "count_diff", "traceback", "user_frame", "via"}, ...]}
          ({FILE}: the keys of top from "file" to "total_count"; the
          biggest growth first, unchanged call sites left out)"""
JSON_SHAPES = (JSON_DIFF,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt diff``."""
    parser.add_argument("old", metavar="OLD", help="the earlier snapshot or timeline")
    parser.add_argument("new", metavar="NEW", help="the later snapshot or timeline")
    add_report_options(parser, cumulative=True)
    add_output_options(
        parser, "the growth: every call site whose live size grew, by how much"
    )


def run(args: argparse.Namespace) -> int:
    """Print (or export) the growth between two snapshots, the biggest first."""
    check_cumulative(args)
    fmt = output_format(args)
    old = files.load_snapshot(args.old)
    new = files.load_snapshot(args.new)
    if fmt in ("pprof", "folded"):
        write_profile(args, fmt, export.growth(old.snapshot, new.snapshot))
        return EXIT_OK
    diffs = [
        diff
        for diff in new.snapshot.diff(old.snapshot, args.key, args.cumulative)
        if diff.size_diff or diff.count_diff
    ][: args.limit]
    full = dict(full_tracebacks(args, old.snapshot))
    full.update(full_tracebacks(args, new.snapshot))
    if fmt == "json":
        doc = report.diff_json(old, new, diffs, args.key, args.cumulative, full)
        write_output(args, report.dumps(doc) + "\n")
    else:
        lines = report.diff_lines(old, new, diffs, args.key, full)
        write_output(args, "".join(line + "\n" for line in lines))
    return EXIT_OK
