"""Human and JSON output of the ``pyleakhunt`` command.

Nothing here reads files or parses arguments (that is `pyleakhunt.cli`):
these functions turn snapshots, differences and suspects into lines of text
(aligned columns, sizes in B/KiB/MiB/GiB, ``file:line`` with its source
line) or into JSON-ready dicts.  The JSON shapes are documented in
`pyleakhunt.cli`.
"""

from __future__ import annotations

import json
import linecache
import os
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .growth import Suspect
from .snapshot import Snapshot, Statistic, StatisticDiff, Traceback
from .units import format_size
from .userframe import user_frame, user_frame_json, via_text

#: key -> the whole traceback of the biggest site grouped under it, from
#: which the user's frame of a row is found (`pyleakhunt.userframe`).
FullTracebacks = Mapping[Traceback, Traceback]

#: Paths longer than this are shortened in human output (never the basename).
PATH_WIDTH = 40
#: Source lines longer than this are cut in human output.
SOURCE_WIDTH = 60

_PACKAGE_MARKERS = ("site-packages", "dist-packages")


# --------------------------------------------------------------------------
# What was read


@dataclass
class LoadedSnapshot:
    """A snapshot read from a file, with where it came from."""

    path: str
    snapshot: Snapshot
    #: ``"snapshot"`` for a snapshot file, ``"timeline"`` for a timeline.
    kind: str = "snapshot"
    #: Timelines only: the number of complete entries (the last one is used).
    entries: Optional[int] = None
    #: True when a timeline's last entry was incomplete and skipped.
    truncated_tail: bool = False


@dataclass
class TimelineSuspects:
    """The suspects of one timeline file."""

    path: str
    pid: int
    samples: int
    first_timestamp: float
    last_timestamp: float
    suspects: List[Suspect] = field(default_factory=list)
    estimated: bool = False
    lost_blocks: int = 0
    truncated_tail: bool = False


# --------------------------------------------------------------------------
# Small pieces


def shorten_path(path: str, width: int = PATH_WIDTH) -> str:
    """*path* made short enough to read in a column, basename always kept.

    A path under the current directory becomes relative; a path inside
    ``site-packages`` starts after it; what is still longer than *width*
    keeps its last components behind ``.../``.
    """
    if not path or path.startswith("<"):
        return path
    short = path
    if os.path.isabs(path):
        cwd = os.getcwd()
        try:
            if os.path.commonpath([cwd, path]) == cwd:
                short = os.path.relpath(path, cwd)
        except ValueError:  # different drives
            pass
    parts = short.split(os.sep)
    for marker in _PACKAGE_MARKERS:
        if marker in parts[:-1]:
            index = len(parts) - 1 - parts[::-1].index(marker)
            parts = parts[index + 1 :]
            short = os.sep.join(parts)
            break
    if len(short) <= width:
        return short
    kept = [parts[-1]]
    for part in reversed(parts[:-1]):
        if len(part) + 1 + len(os.sep.join(kept)) + 4 > width:
            break
        kept.insert(0, part)
    return "..." + os.sep + os.sep.join(kept)


def location(filename: str, lineno: int, width: int = PATH_WIDTH) -> str:
    """``file:line`` with a shortened path; just the file when *lineno* is 0."""
    short = shorten_path(filename, width)
    return f"{short}:{lineno}" if lineno else short


def source_line(filename: str, lineno: int, width: int = SOURCE_WIDTH) -> str:
    """The stripped source line at *filename*:*lineno*, cut to *width*."""
    if not lineno:
        return ""
    line = linecache.getline(filename, lineno).strip()
    if len(line) > width:
        line = line[: width - 3] + "..."
    return line


def format_time(timestamp: float) -> str:
    """Local date and time, or ``"unknown time"`` for 0."""
    if not timestamp:
        return "unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def format_duration(seconds: float) -> str:
    """``"42.0 s"``, ``"12 min 5 s"`` or ``"3 h 20 min"``."""
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "%d min %d s" % (minutes, secs)
    hours, minutes = divmod(minutes, 60)
    return "%d h %d min" % (hours, minutes)


def plural(count: int, word: str, words: Optional[str] = None) -> str:
    """``"1 block"``, ``"2 blocks"`` (*words* for irregular plurals)."""
    if count == 1:
        return "1 " + word
    return "%d %s" % (count, words or word + "s")


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]
) -> List[str]:
    """Rows aligned in columns under *header*.

    ``right[i]`` right-aligns column *i*.  The last column is not padded,
    so lines carry no trailing blanks.
    """
    table = [list(header)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = []
        for i, cell in enumerate(row):
            if i == len(row) - 1 and not right[i]:
                cells.append(cell)
            elif right[i]:
                cells.append(cell.rjust(widths[i]))
            else:
                cells.append(cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
    return lines


def _most_recent(traceback: Traceback) -> tuple:
    if not len(traceback):
        return ("<unknown>", 0)
    frame = traceback[-1]
    return (frame.filename, frame.lineno)


def user_location(traceback: Traceback, full: Optional[FullTracebacks] = None) -> tuple:
    """``(filename, lineno, via)`` of a row: the most recent frame in the
    user's code, and the library frame that allocated (or None).

    *traceback* is the row's key; *full*, when given, maps it to the whole
    traceback of its biggest site, which reaches further than a one-frame
    key.  A ``filename`` key (line 0) is shown as it is.
    """
    whole = full.get(traceback, traceback) if full is not None else traceback
    if not len(traceback) or not len(whole) or traceback[-1].lineno == 0:
        filename, lineno = _most_recent(traceback)
        return filename, lineno, None
    frame, via = user_frame(whole)
    return frame.filename, frame.lineno, via


def _via_lines(via: Any, indent: str = "      ") -> List[str]:
    return [] if via is None else [indent + via_text(via)]


def _user_fields(traceback: Traceback, full: Optional[FullTracebacks]) -> dict:
    """The ``user_frame`` and ``via`` fields of a JSON row."""
    whole = full.get(traceback, traceback) if full is not None else traceback
    return user_frame_json(whole)


def traceback_json(traceback: Traceback) -> List[List[Any]]:
    """``[[filename, lineno], ...]``, the most recent call first."""
    return [[frame.filename, frame.lineno] for frame in reversed(traceback)]


def _traceback_lines(traceback: Traceback, indent: str = "      ") -> List[str]:
    return [indent + line for line in traceback.format(most_recent_first=True)]


def dumps(doc: Any) -> str:
    """*doc* as JSON text, one key and one list item per line.

    Each list item (a statistic, a suspect) stays on one line, which keeps
    the output readable and easy to grep while remaining plain JSON.
    """

    def items(values: List[Any], indent: str) -> str:
        inner = ",\n".join(indent + "  " + json.dumps(v) for v in values)
        return "[\n%s\n%s]" % (inner, indent)

    if isinstance(doc, list):
        return items(doc, "") if doc else "[]"
    if isinstance(doc, dict):
        lines = []
        for key, value in doc.items():
            if isinstance(value, list) and value:
                text = items(value, "  ")
            else:
                text = json.dumps(value)
            lines.append("  %s: %s" % (json.dumps(key), text))
        return "{\n%s\n}" % ",\n".join(lines) if lines else "{}"
    return json.dumps(doc)


# --------------------------------------------------------------------------
# Snapshots: headers


def _totals(snapshot: Snapshot) -> tuple:
    size = count = 0
    for site in snapshot.sites:
        size += site.size
        count += site.count
    return size, count


def describe_snapshot(loaded: LoadedSnapshot) -> str:
    """One line saying what was read: kind, pid, when, total."""
    snapshot = loaded.snapshot
    kind = "aggregated" if snapshot.is_aggregated else "full"
    if loaded.kind == "timeline":
        what = "last of %d timeline entries (%s snapshot)" % (loaded.entries, kind)
    else:
        what = "%s snapshot" % kind
    size, count = _totals(snapshot)
    approx = "~" if snapshot.is_estimated else ""
    text = "%s: %s of pid %d taken %s: %s%s in %s%s at %s" % (
        loaded.path,
        what,
        snapshot.pid,
        format_time(snapshot.timestamp),
        approx,
        format_size(size),
        approx,
        plural(count, "block"),
        plural(len(snapshot.sites), "site"),
    )
    if snapshot.is_estimated:
        text += " (estimated: sampled every ~%s)" % format_size(snapshot.sample_bytes)
    return text


def _lost_blocks_warning(lost: int) -> List[str]:
    if lost <= 0:
        return []
    return [
        "warning: the tracer failed to record %d blocks (it ran out of memory); "
        "the figures are incomplete" % lost
    ]


# --------------------------------------------------------------------------
# top


def top_lines(
    loaded: LoadedSnapshot,
    statistics: Sequence[Statistic],
    key_type: str,
    full: Optional[FullTracebacks] = None,
) -> List[str]:
    """The human report of ``pyleakhunt top``: each row at its user's line,
    the library frame that allocated beneath it (see `user_location`)."""
    snapshot = loaded.snapshot
    lines = [describe_snapshot(loaded)]
    lines += _lost_blocks_warning(snapshot.lost_blocks)
    lines.append("")
    if not statistics:
        lines.append("no live memory recorded")
        return lines
    size_title = "size (estimated)" if snapshot.is_estimated else "size"
    rows = []
    vias = []
    for rank, stat in enumerate(statistics, 1):
        filename, lineno, via = user_location(stat.traceback, full)
        vias.append(via)
        average = format_size(stat.size / stat.count) if stat.count else "-"
        rows.append(
            [
                str(rank),
                format_size(stat.size),
                str(stat.count),
                average,
                location(filename, lineno),
                source_line(filename, lineno),
            ]
        )
    header = ["#", size_title, "count", "average", "location", "source"]
    table = format_table(header, rows, [True, True, True, True, False, False])
    lines.append(table[0])
    for stat, via, line in zip(statistics, vias, table[1:]):
        lines.append(line)
        lines += _via_lines(via)
        if key_type == "traceback":
            lines += _traceback_lines(stat.traceback)
    return lines


def snapshot_json(loaded: LoadedSnapshot) -> Dict[str, Any]:
    """What a JSON document says about one file it read."""
    snapshot = loaded.snapshot
    size, count = _totals(snapshot)
    return {
        "file": loaded.path,
        "kind": loaded.kind,
        "entries": loaded.entries,
        "truncated_tail": loaded.truncated_tail,
        "aggregated": snapshot.is_aggregated,
        "pid": snapshot.pid,
        "timestamp": snapshot.timestamp,
        "traceback_limit": snapshot.traceback_limit,
        "estimated": snapshot.is_estimated,
        "sample_bytes": snapshot.sample_bytes,
        "lost_blocks": snapshot.lost_blocks,
        "total_size": size,
        "total_count": count,
    }


def statistic_json(
    stat: Statistic, full: Optional[FullTracebacks] = None
) -> Dict[str, Any]:
    """One statistic: its most recent frame, size, count, traceback, and
    the user's frame with the library frame it allocated through."""
    filename, lineno = _most_recent(stat.traceback)
    doc: Dict[str, Any] = {
        "filename": filename,
        "lineno": lineno,
        "size": stat.size,
        "count": stat.count,
        "traceback": traceback_json(stat.traceback),
    }
    doc.update(_user_fields(stat.traceback, full))
    return doc


def top_json(
    loaded: LoadedSnapshot,
    statistics: Sequence[Statistic],
    key_type: str,
    cumulative: bool,
    full: Optional[FullTracebacks] = None,
) -> Dict[str, Any]:
    """The JSON document of ``pyleakhunt top``."""
    doc: Dict[str, Any] = {"command": "top"}
    doc.update(snapshot_json(loaded))
    doc["key_type"] = key_type
    doc["cumulative"] = cumulative
    doc["statistics"] = [statistic_json(stat, full) for stat in statistics]
    return doc


# --------------------------------------------------------------------------
# diff


def diff_lines(
    old: LoadedSnapshot,
    new: LoadedSnapshot,
    diffs: Sequence[StatisticDiff],
    key_type: str,
    full: Optional[FullTracebacks] = None,
) -> List[str]:
    """The human report of ``pyleakhunt diff`` (rows as in `top_lines`)."""
    old_size, old_count = _totals(old.snapshot)
    new_size, new_count = _totals(new.snapshot)
    lines = ["old: " + describe_snapshot(old), "new: " + describe_snapshot(new)]
    change = "change: %s in %+d %s" % (
        format_size(new_size - old_size, sign=True),
        new_count - old_count,
        "block" if abs(new_count - old_count) == 1 else "blocks",
    )
    if old.snapshot.timestamp and new.snapshot.timestamp:
        change += " over %s" % format_duration(
            abs(new.snapshot.timestamp - old.snapshot.timestamp)
        )
    estimated = old.snapshot.is_estimated or new.snapshot.is_estimated
    if estimated:
        change += " (estimated)"
    lines.append(change)
    lines += _lost_blocks_warning(
        max(old.snapshot.lost_blocks, new.snapshot.lost_blocks)
    )
    lines.append("")
    if not diffs:
        lines.append("no call site changed")
        return lines
    rows = []
    vias = []
    for rank, diff in enumerate(diffs, 1):
        filename, lineno, via = user_location(diff.traceback, full)
        vias.append(via)
        rows.append(
            [
                str(rank),
                format_size(diff.size_diff, sign=True),
                format_size(diff.size),
                "%+d" % diff.count_diff,
                str(diff.count),
                location(filename, lineno),
                source_line(filename, lineno),
            ]
        )
    header = [
        "#",
        "size diff (estimated)" if estimated else "size diff",
        "size",
        "count diff",
        "count",
        "location",
        "source",
    ]
    right = [True, True, True, True, True, False, False]
    table = format_table(header, rows, right)
    lines.append(table[0])
    for diff, via, line in zip(diffs, vias, table[1:]):
        lines.append(line)
        lines += _via_lines(via)
        if key_type == "traceback":
            lines += _traceback_lines(diff.traceback)
    return lines


def statistic_diff_json(
    diff: StatisticDiff, full: Optional[FullTracebacks] = None
) -> Dict[str, Any]:
    """One difference: most recent frame, sizes, counts, traceback, and the
    user's frame with the library frame it allocated through."""
    filename, lineno = _most_recent(diff.traceback)
    doc: Dict[str, Any] = {
        "filename": filename,
        "lineno": lineno,
        "size": diff.size,
        "size_diff": diff.size_diff,
        "count": diff.count,
        "count_diff": diff.count_diff,
        "traceback": traceback_json(diff.traceback),
    }
    doc.update(_user_fields(diff.traceback, full))
    return doc


def diff_json(
    old: LoadedSnapshot,
    new: LoadedSnapshot,
    diffs: Sequence[StatisticDiff],
    key_type: str,
    cumulative: bool,
    full: Optional[FullTracebacks] = None,
) -> Dict[str, Any]:
    """The JSON document of ``pyleakhunt diff``."""
    return {
        "command": "diff",
        "old": snapshot_json(old),
        "new": snapshot_json(new),
        "estimated": old.snapshot.is_estimated or new.snapshot.is_estimated,
        "lost_blocks": max(old.snapshot.lost_blocks, new.snapshot.lost_blocks),
        "key_type": key_type,
        "cumulative": cumulative,
        "statistics": [statistic_diff_json(diff, full) for diff in diffs],
    }


# --------------------------------------------------------------------------
# suspects


def suspect_table(
    suspects: Sequence[Suspect], indent: str = "", key_type: str = "lineno"
) -> List[str]:
    """Suspects in aligned columns, growth rate first: each at its user's
    line, with the library frame that allocated beneath it, and its whole
    traceback with ``key_type='traceback'``."""
    rows = []
    vias = []
    for rank, suspect in enumerate(suspects, 1):
        filename, lineno, via = user_location(
            suspect.key, {suspect.key: suspect.traceback}
        )
        vias.append(via)
        rows.append(
            [
                str(rank),
                format_size(suspect.growth_bytes_per_s, sign=True) + "/s",
                format_size(suspect.growth_bytes, sign=True),
                format_size(suspect.size),
                str(suspect.count),
                "%.0f%%" % (100 * suspect.consistency),
                location(filename, lineno),
                source_line(filename, lineno),
            ]
        )
    header = ["#", "growth/s", "growth", "size", "count", "steady"]
    header += ["location", "source"]
    right = [True] * 6 + [False, False]
    table = format_table(header, rows, right)
    lines = [indent + table[0]]
    for suspect, via, line in zip(suspects, vias, table[1:]):
        lines.append(indent + line)
        lines += _via_lines(via, indent + "      ")
        if suspect.freed_at_exit:
            lines.append(indent + "      " + FREED_AT_EXIT)
        if key_type == "traceback":
            lines += _traceback_lines(suspect.traceback, indent + "      ")
    return lines


#: What a suspect marked `Suspect.freed_at_exit` says under its row.
FREED_AT_EXIT = "freed only when the program ended: it grew until then"


def describe_timeline(result: TimelineSuspects) -> str:
    """One line saying what a timeline holds."""
    text = "%s: timeline of pid %d, %s" % (
        result.path,
        result.pid,
        plural(result.samples, "sample"),
    )
    if result.samples:
        text += " over %s from %s" % (
            format_duration(result.last_timestamp - result.first_timestamp),
            format_time(result.first_timestamp),
        )
    if result.estimated:
        text += " (estimated)"
    if result.truncated_tail:
        text += " (last entry truncated)"
    return text


def no_suspect_reason(samples: int, min_samples: int) -> str:
    """Why a timeline has no suspect."""
    if samples < min_samples:
        return (
            "not enough samples to judge growth: %d, at least %d are needed "
            "(run longer or sample more often)" % (samples, min_samples)
        )
    return "no suspect: no call site kept growing"


def suspects_lines(
    result: TimelineSuspects, n: int, key_type: str, min_samples: int
) -> List[str]:
    """The human report of ``pyleakhunt suspects`` for one timeline."""
    lines = [describe_timeline(result)]
    lines += _lost_blocks_warning(result.lost_blocks)
    suspects = result.suspects[:n]
    if not result.suspects:
        lines.append(no_suspect_reason(result.samples, min_samples))
        return lines
    if not suspects:
        return lines
    lines.append("")
    lines += suspect_table(suspects, key_type=key_type)
    return lines


def suspect_json(suspect: Suspect, pid: int, path: str) -> Dict[str, Any]:
    """``Suspect.to_json()`` plus the pid and the timeline it came from."""
    doc = suspect.to_json()
    doc["pid"] = pid
    doc["file"] = path
    return doc


def suspects_json(results: Sequence[TimelineSuspects], n: int) -> List[Dict[str, Any]]:
    """The JSON document of ``pyleakhunt suspects``: one flat list."""
    return [
        suspect_json(suspect, result.pid, result.path)
        for result in results
        for suspect in result.suspects[:n]
    ]


# --------------------------------------------------------------------------
# run


#: The intervals ``run`` suggests, in seconds, the longest first.
_ROUND_INTERVALS = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)


def shorter_interval(duration: float, min_samples: int) -> Optional[float]:
    """A round ``--interval`` that samples a program that ran *duration*
    seconds at least twice *min_samples* times, or None if even the
    shortest (10 ms) would not."""
    for value in _ROUND_INTERVALS:
        if duration / value >= 2 * min_samples:
            return value
    return None


def too_few_samples_hint(
    duration: float,
    min_samples: int,
    interval: Optional[float] = None,
    samples: Optional[int] = None,
) -> str:
    """How ``run`` could have taken enough samples of this program, which
    ran *duration* seconds; *samples* were taken every *interval* seconds
    as asked, if given.

    When far fewer came than the interval asked for, a shorter one would
    not help: the sampling thread must hold the GIL to take a sample, and
    a program that gives the GIL up and takes it back at once, over and
    over (a busy asyncio loop of many small tasks polls with select()
    between them), can keep it from that thread for seconds at a time."""
    if interval and samples is not None and samples < duration / interval / 2:
        return (
            "the program ran %s, and samples came %s apart on average, not "
            "every %g s: the program kept the GIL from the sampling thread "
            "(a busy event loop?); run it longer"
            % (
                format_duration(duration),
                format_duration(duration / max(samples, 1)),
                interval,
            )
        )
    value = shorter_interval(duration, min_samples)
    if value is None or (interval and value >= interval):
        return "the program ran %s: run it longer" % format_duration(duration)
    return "the program ran %s: --interval %g takes about %d samples" % (
        format_duration(duration),
        value,
        int(duration / value),
    )


def run_summary(
    path: str,
    samples: int,
    duration: float,
    suspects: Sequence[Suspect],
    min_samples: int,
    error: Optional[BaseException] = None,
    interval: Optional[float] = None,
) -> List[str]:
    """What ``pyleakhunt run`` says on stderr when the program ends; it
    sampled every *interval* seconds, if given."""
    lines = [
        "pyleakhunt: timeline: %s (%s over %s)"
        % (path, plural(samples, "sample"), format_duration(duration))
    ]
    if error is not None:
        lines.append(
            "pyleakhunt: warning: sampling stopped early: %s: %s"
            % (type(error).__name__, error)
        )
    if suspects:
        lines.append("pyleakhunt: top suspects, the fastest growth first:")
        lines += suspect_table(suspects, indent="  ")
        lines.append("pyleakhunt: details: pyleakhunt suspects %s" % path)
    else:
        lines.append("pyleakhunt: " + no_suspect_reason(samples, min_samples))
        if samples < min_samples:
            hint = too_few_samples_hint(duration, min_samples, interval, samples)
            lines.append("pyleakhunt: " + hint)
    return lines


def exit_codes_text(codes: Mapping[int, str]) -> str:
    """The "exit codes:" block of a command's ``--help``."""
    lines = ["exit codes:"]
    for code, meaning in codes.items():
        lines.append(
            textwrap.fill(
                meaning,
                width=76,
                initial_indent="  %-4d " % code,
                subsequent_indent=" " * 7,
            )
        )
    return "\n".join(lines)
