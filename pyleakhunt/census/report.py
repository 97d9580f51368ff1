"""The census as text: the type table, who holds what, one object, a diff."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from ..report import format_table
from ..units import format_size
from .diff import CensusDiff, HolderGrowth, TypeGrowth
from .model import Census, HolderGroup, TypeCount
from .session import ObjectReport

_COUNTED_BY = (
    "Counted by: gc = exactly, on the collector's lists; scan = found by "
    "scanning memory\n(objects the collector does not track: str, bytes, int, "
    "float, and untracked containers)."
)


def _percent(part: int, whole: int) -> str:
    return "%5.1f%%" % (100.0 * part / whole) if whole else "    -"


def header_lines(census: Census) -> List[str]:
    """Where the census comes from, and what it found, in a few lines."""
    where = census.source
    if census.source_kind == "core":
        where = os.path.basename(census.source)
    who = f"PID {census.pid}" if census.pid else ""
    if census.process:
        who = f"{who}: {census.process}" if who else census.process
    lines = [
        f"Census of {where}"
        + (f" ({who})" if who else "")
        + f", Python {census.python}"
    ]
    stats = census.stats
    gc_objects = stats.get("gc_objects", 0)
    scan_objects = stats.get("scan_objects", 0)
    immortal = stats.get("immortal", 0)
    lines.append(
        f"{format_size(census.memory_bytes)} of memory; {census.total_count:,} "
        f"objects, {format_size(census.total_size)}: {gc_objects:,} on the gc "
        f"lists, {scan_objects:,} found by the scan"
        + (f"; {immortal:,} immortal" if immortal else "")
    )
    lines.append(_timing_line(census))
    for warning in census.warnings:
        lines.append(f"warning: {warning}")
    if stats.get("broken_lists") or stats.get("bad_links"):
        lines.append(
            "warning: the gc lists were inconsistent (memory read while "
            "changing?): counts may be off"
        )
    return lines


def _timing_line(census: Census) -> str:
    t = census.timings
    parts = [
        f"{label} {t[key]:.2f} s"
        for key, label in (
            ("load_s", "reading"),
            ("census_s", "counting"),
            ("graph_s", "paths"),
            ("holders_s", "holders"),
        )
        if key in t
    ]
    line = "Took " + ", ".join(parts) if parts else ""
    if t.get("stopped_s"):
        line += f"; the process was stopped for {t['stopped_s']:.2f} s"
    return line


def type_table(types: Sequence[TypeCount], total: int) -> List[str]:
    """The type table: bytes, share, count, how counted, name."""
    rows = [
        [
            format_size(t.size),
            _percent(t.size, total),
            f"{t.count:,}",
            t.counted_by,
            t.name,
        ]
        for t in types
    ]
    return format_table(
        ["Bytes", "Share", "Count", "Counted", "Type"],
        rows,
        [True, True, True, False, False],
    )


def holder_lines(census: Census, names: Sequence[str], indent: str = "  ") -> List[str]:
    """For each type of *names*: how its objects are held."""
    lines: List[str] = []
    by_name = {t.name: t for t in census.types}
    for name in names:
        groups = census.holders.get(name)
        t = by_name.get(name)
        if not groups or t is None:
            continue
        lines.append(f"{indent}{name}: {t.count:,} objects, {format_size(t.size)}")
        for group in groups:
            lines.append(
                f"{indent}  {_percent(group.count, t.count)} {group.count:>10,}  "
                f"{format_size(group.size):>9}  {group.describe()}"
            )
    return lines


def census_lines(census: Census, limit: int, holder_types: Sequence[str]) -> List[str]:
    """The whole text report of a census."""
    lines = header_lines(census) + [""]
    lines += type_table(census.types[:limit], census.total_size)
    if len(census.types) > limit:
        lines.append(f"... {len(census.types) - limit} more types (-n to show more)")
    lines += ["", _COUNTED_BY]
    held = holder_lines(census, holder_types)
    if held:
        lines += ["", "Who holds them (the biggest groups of each type):"] + held
    return lines


def census_json(census: Census) -> Dict[str, Any]:
    """The census as JSON (the layout of a saved census)."""
    return census.to_dict()


def object_lines(report: ObjectReport) -> List[str]:
    """``--held-by ADDRESS``: one object and who holds it."""
    lines = [f"{report.address:#x}: {report.type_name}, {report.size:,} bytes"]
    if report.path:
        lines.append(f"reachable as {report.path} ({report.role})")
    else:
        lines.append("not reachable from any module, thread or type")
    if report.referrers:
        lines.append("referred to by:")
        for address, type_name, path in report.referrers:
            where = path or "(not reachable)"
            lines.append(f"  {address:#x}  {type_name}  {where}")
    else:
        lines.append("referred to by no object the census found")
    if report.chain:
        via = " <- ".join(name for _, name in report.chain)
        lines.append(f"climbing first referrers: {via} ({_end_text(report.end)})")
    return lines


def _end_text(end: str) -> str:
    return {
        "reached": "reachable from there",
        "no_referrer": "then nothing: C code, a C stack, or a leaked reference",
        "cycle": "a reference cycle no root reaches",
        "too_deep": "and further",
    }.get(end, end)


def object_json(report: ObjectReport) -> Dict[str, Any]:
    """``--held-by ADDRESS`` as JSON."""
    return {
        "address": report.address,
        "type": report.type_name,
        "size": report.size,
        "path": report.path,
        "role": report.role,
        "referrers": [
            {"address": a, "type": t, "path": p} for a, t, p in report.referrers
        ],
        "chain": [{"address": a, "type": t} for a, t in report.chain],
        "end": report.end,
    }


def _signed(value: int) -> str:
    return f"{value:+,}"


def diff_lines(result: CensusDiff, limit: int) -> List[str]:
    """``census diff``: the types and holders that grew most."""
    old, new = result.old, result.new
    names = (os.path.basename(old.source), os.path.basename(new.source))
    lines = [
        "Census diff: %s -> %s" % names,
        f"objects {old.total_count:,} -> {new.total_count:,}, "
        f"{format_size(old.total_size)} -> {format_size(new.total_size)} "
        f"({format_size(new.total_size - old.total_size, sign=True)})",
        "",
    ]
    rows = [
        [
            format_size(g.size_diff, sign=True),
            _signed(g.count_diff),
            format_size(g.new_size),
            f"{g.new_count:,}",
            g.name,
        ]
        for g in result.types[:limit]
    ]
    if rows:
        lines += format_table(
            ["Growth", "Count", "Bytes now", "Count now", "Type"],
            rows,
            [True, True, True, True, False],
        )
    else:
        lines.append("No type changed.")
    grew = [h for h in result.holders if h.size_diff > 0 or h.count_diff > 0][:limit]
    if grew:
        lines += ["", "Holders that grew:"]
        for h in grew:
            growth = format_size(h.size_diff, sign=True)
            lines.append(
                f"  {growth:>10} {_signed(h.count_diff):>10}  "
                f"{h.type_name}: {h.description}"
            )
    return lines


def _growth_json(g: TypeGrowth) -> Dict[str, Any]:
    return {
        "type": g.name,
        "count": g.new_count,
        "count_diff": g.count_diff,
        "size": g.new_size,
        "size_diff": g.size_diff,
    }


def _holder_growth_json(h: HolderGrowth) -> Dict[str, Any]:
    return {
        "type": h.type_name,
        "held": h.description,
        "path": h.path,
        "count": h.new_count,
        "count_diff": h.count_diff,
        "size": h.new_size,
        "size_diff": h.size_diff,
    }


def diff_json(result: CensusDiff, limit: Optional[int] = None) -> Dict[str, Any]:
    """``census diff --json``."""
    return {
        "command": "census diff",
        "old": result.old.source,
        "new": result.new.source,
        "old_total_size": result.old.total_size,
        "new_total_size": result.new.total_size,
        "types": [_growth_json(g) for g in result.types[:limit]],
        "holders": [_holder_growth_json(h) for h in result.holders[:limit]],
    }


def describe_groups(groups: Sequence[HolderGroup]) -> List[str]:
    """One line per group (for tests and the docs)."""
    return [g.describe() for g in groups]
