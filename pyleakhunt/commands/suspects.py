"""``pyleakhunt suspects``: the call sites that kept growing in a timeline,
or in each timeline of a directory (`pyleakhunt.growth.analyse_series`,
streamed)."""

from __future__ import annotations

import argparse
from typing import List

from .. import report
from ..growth import DEFAULT_RULE
from . import EXIT_FILE, EXIT_OK, PyleakhuntError, error
from .files import analyse_timeline, timeline_paths
from .options import DEFAULT_KEY, add_report_options
from .output import print_json, print_lines

SUMMARY = "the call sites that kept growing in timelines"
JSON_SUSPECTS = """\
suspects: [{"file", "pid", "filename", "lineno", "size", "count",
           "growth_bytes", "growth_bytes_per_s",
           "growth_bytes_per_snapshot", "consistency", "samples",
           "duration_s", "estimated", "freed_at_exit", "traceback",
           "user_frame", "via"}, ...]"""
JSON_SHAPES = (JSON_SUSPECTS,)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt suspects``."""
    parser.add_argument(
        "path",
        metavar="DIR_OR_FILE",
        help="a timeline file, or a directory of them (*.plh)",
    )
    add_report_options(parser, cumulative=False)


def run(args: argparse.Namespace) -> int:
    """Rank the call sites that kept growing in one or more timelines."""
    paths = timeline_paths(args.path)
    results = []
    failed = False
    for path in paths:
        try:
            results.append(analyse_timeline(path, args.key or DEFAULT_KEY))
        except PyleakhuntError as exc:
            if len(paths) == 1:
                raise
            error(str(exc))
            failed = True
    if args.json:
        print_json(report.suspects_json(results, args.limit))
    else:
        lines: List[str] = []
        for result in results:
            if lines:
                lines.append("")
            lines += report.suspects_lines(
                result, args.limit, args.key or DEFAULT_KEY, DEFAULT_RULE.min_samples
            )
        print_lines(lines)
    return EXIT_FILE if failed else EXIT_OK
