"""``pyleakhunt report``: a self-contained HTML report of a timeline, a
snapshot, or the growth between two snapshots (`pyleakhunt.export.html_report`)."""

from __future__ import annotations

import argparse
import os

from ..fileformat import file_kind
from . import EXIT_OK, files
from .files import TimelineReader, reading

SUMMARY = "a self-contained HTML report: memory over time, suspects, flame graphs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt report``."""
    parser.add_argument(
        "path",
        metavar="PATH",
        help="a timeline, a snapshot, or (with PATH2) the older of two snapshots",
    )
    parser.add_argument(
        "path2",
        metavar="PATH2",
        nargs="?",
        default=None,
        help="the newer snapshot: the report shows what grew from PATH to it",
    )
    parser.add_argument(
        "-o",
        dest="output",
        metavar="FILE",
        default=None,
        help="write the HTML to FILE (default: beside the input, .html)",
    )


def run(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report and print its path."""
    from ..export import html_report

    output = args.output or os.path.splitext(args.path2 or args.path)[0] + ".html"
    if args.path2 is not None:
        old, new = files.load_snapshot(args.path), files.load_snapshot(args.path2)
        page = html_report.diff_page(args.path, old.snapshot, args.path2, new.snapshot)
    else:
        with reading(args.path):
            kind = file_kind(args.path)
        if kind == "timeline":
            reader = TimelineReader(args.path, columns=True)
            with reading(args.path):
                page = html_report.timeline_page(
                    args.path,
                    reader,
                    # The reader shows its own progress for big files.
                    progress=html_report.Progress(
                        reading=os.path.getsize(args.path) < files.PROGRESS_MIN_BYTES
                    ),
                    truncated_tail=lambda: reader.truncated_tail,
                )
        else:
            loaded = files.load_snapshot(args.path)
            page = html_report.snapshot_page(args.path, loaded.snapshot)
    with reading(output, "write"):
        with open(output, "w", encoding="utf-8") as f:
            f.write(page.render())
    print(output)
    return EXIT_OK
