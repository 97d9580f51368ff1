"""Report sections and their two renderings: a text report and Markdown.

Figures (`benchmarks.figures`) turn raw results into `Section` objects;
this module knows nothing about workloads.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

MET, MISSED, NA = "MET", "MISSED", "n/a"
OK, MISMATCH, ERROR = "OK", "MISMATCH", "ERROR"


@dataclass
class Table:
    headers: List[str]
    rows: List[List[str]]
    caption: str = ""
    #: One letter per column, "l" or "r"; default: first left, others right.
    align: str = ""

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.headers) - 1)


@dataclass
class Check:
    """A target (MET/MISSED/n/a) or a correctness check (OK/MISMATCH)."""

    name: str
    status: str
    value: str = ""
    goal: str = ""
    detail: str = ""


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    tables: List[Table] = field(default_factory=list)
    targets: List[Check] = field(default_factory=list)
    checks: List[Check] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: SVG plots of this figure, paths relative to docs/ ("img/NAME.svg").
    plots: List[str] = field(default_factory=list)
    #: Their content (path relative to docs/ -> SVG text), written by
    #: ``--write-docs``; left out of the JSON results.
    svgs: Dict[str, str] = field(default_factory=dict, repr=False)

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data.pop("svgs", None)
        return data


# -- number formatting ---------------------------------------------------------


def seconds(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value < 1.0:
        return "%.1f ms" % (value * 1e3) if value >= 0.01 else "%.2f ms" % (value * 1e3)
    return "%.2f s" % value


def ratio(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value < 1:
        return "%.2gx" % value
    return "%.2fx" % value if value < 10 else "%.1fx" % value


def speedup(value: Optional[float]) -> str:
    """How many times faster; for ratios far from 1."""
    if value is None:
        return "-"
    if value < 10:
        return "%.2fx" % value
    return f"{value:,.0f}x"


def size(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if abs(value) < 2**20:
        return "%.1f KiB" % (value / 2**10)
    return "%.1f MiB" % (value / 2**20)


def mib(value: Optional[float]) -> str:
    return "-" if value is None else "%.1f MiB" % (value / 2**20)


def per_block(value: Optional[float]) -> str:
    return "-" if value is None else "%.1f B" % value


def count(value: Optional[float]) -> str:
    return "-" if value is None else f"{int(value):,}"


def spread(values: Sequence[float], fmt: Any = seconds) -> str:
    if not values:
        return "-"
    return "%s - %s" % (fmt(min(values)), fmt(max(values)))


def target_status(value: Optional[float], limit: float, applies: bool = True) -> str:
    if value is None or not applies:
        return NA
    return MET if value <= limit else MISSED


# -- text ---------------------------------------------------------------------------


def _text_table(table: Table) -> List[str]:
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    align = table.alignment()

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(
                cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i])
            )
        return "  ".join(out).rstrip()

    lines = []
    if table.caption:
        lines.append(table.caption)
    lines.append(line(table.headers))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(line(row) for row in table.rows)
    return lines


def _text_checks(title: str, checks: Sequence[Check]) -> List[str]:
    if not checks:
        return []
    lines = [title]
    for check in checks:
        text = "  [%s] %s" % (check.status, check.name)
        if check.value:
            text += ": %s" % check.value
        if check.goal:
            text += " (target %s)" % check.goal
        if check.detail:
            text += " - %s" % check.detail
        lines.extend(textwrap.wrap(text, 100, subsequent_indent="      "))
    return lines


def render_text(
    sections: Sequence[Section], machine: Dict[str, Any], header: Sequence[str]
) -> str:
    lines: List[str] = list(header)
    lines.append("")
    lines.extend(machine_lines(machine))
    for section in sections:
        lines.append("")
        lines.append("=" * 78)
        lines.append(section.title)
        lines.append("=" * 78)
        for table in section.tables:
            lines.append("")
            lines.extend(_text_table(table))
        lines.append("")
        lines.extend(_text_checks("Targets:", section.targets))
        lines.extend(_text_checks("Checks:", section.checks))
        for note in section.notes:
            lines.extend(textwrap.wrap("note: " + note, 100, subsequent_indent="  "))
    lines.append("")
    lines.append("=" * 78)
    lines.extend(_text_checks("Summary of targets:", all_targets(sections)))
    lines.extend(_text_checks("Summary of checks:", all_checks(sections)))
    return "\n".join(lines) + "\n"


def all_targets(sections: Sequence[Section]) -> List[Check]:
    return [t for s in sections for t in s.targets]


def all_checks(sections: Sequence[Section]) -> List[Check]:
    return [c for s in sections for c in s.checks]


def machine_lines(machine: Dict[str, Any]) -> List[str]:
    return ["%s: %s" % (label, value) for label, value in machine_rows(machine)]


def machine_rows(machine: Dict[str, Any]) -> List[List[str]]:
    ram = machine.get("ram_bytes")
    cores = "%s logical" % machine.get("logical_cpus", "?")
    if machine.get("physical_cores"):
        cores = "%s physical, %s" % (machine["physical_cores"], cores)
    if machine.get("usable_cpus") not in (None, machine.get("logical_cpus")):
        cores += ", %s usable" % machine["usable_cpus"]
    rows = [
        ["Date (UTC)", machine.get("date", "?")],
        ["CPU", machine.get("cpu_model", "?")],
        ["Cores", cores],
        ["RAM", "%.1f GiB" % (ram / 2**30) if ram else "?"],
        ["OS", machine.get("platform", "?")],
        ["Python", machine.get("python", "?")],
        ["pyleakhunt", machine.get("pyleakhunt", "?")],
    ]
    if machine.get("pyleakhunt_build"):
        rows.append(["Extension", machine["pyleakhunt_build"]])
    if machine.get("load_average"):
        rows.append(["Load average at start", machine["load_average"]])
    if machine.get("load_during_runs"):
        rows.append(["Load during the runs", machine["load_during_runs"]])
    if machine.get("env_removed"):
        rows.append(["Removed from the runs' environment", machine["env_removed"]])
    return [[label, str(value)] for label, value in rows]


# -- Markdown ---------------------------------------------------------------------


def _md_escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def _md_table(table: Table) -> List[str]:
    lines = []
    if table.caption:
        lines.extend([table.caption, ""])
    lines.append("| " + " | ".join(_md_escape(h) for h in table.headers) + " |")
    marks = {"l": ":---", "r": "---:"}
    lines.append("|" + "|".join(marks[a] for a in table.alignment()) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
    lines.append("")
    return lines


def _md_status(status: str) -> str:
    return "**%s**" % status if status in (MISSED, MISMATCH, ERROR) else status


def _md_checks(checks: Sequence[Check], first: str) -> List[str]:
    if not checks:
        return []
    table = Table(
        [first, "Measured", "Goal" if first == "Target" else "", "Status", "Note"],
        [[c.name, c.value, c.goal, _md_status(c.status), c.detail] for c in checks],
        align="lrrll",
    )
    return _md_table(table)


def render_markdown(
    sections: Sequence[Section],
    machine: Dict[str, Any],
    *,
    mode_line: str,
    reproduce: Sequence[str],
) -> str:
    out: List[str] = [
        "# Benchmarks",
        "",
        "<!-- Generated file: do not edit by hand. -->",
        "*Generated by `python -m benchmarks --write-docs`; run it again to "
        "regenerate this page from new measurements.*",
        "",
        mode_line,
        "",
        "## Summary",
        "",
    ]
    out.extend(_md_checks(all_targets(sections), "Target"))
    checks = all_checks(sections)
    if checks:
        out.extend(["Correctness checks:", ""])
        out.extend(_md_checks(checks, "Check"))
    out.extend(["## Machine", ""])
    out.extend(_md_table(Table(["", ""], machine_rows(machine), align="ll")))
    for section in sections:
        out.extend(["## " + section.title, ""])
        if section.intro:
            out.extend([section.intro, ""])
        for table in section.tables:
            out.extend(_md_table(table))
        if section.targets:
            out.extend(["Targets:", ""])
            out.extend(_md_checks(section.targets, "Target"))
        if section.checks:
            out.extend(["Checks:", ""])
            out.extend(_md_checks(section.checks, "Check"))
        for note in section.notes:
            out.append("- " + note)
        if section.notes:
            out.append("")
        for plot in section.plots:
            out.extend(["![%s](%s)" % (section.title, plot), ""])
    out.extend(["## How to reproduce", ""])
    out.extend(reproduce)
    out.append("")
    return "\n".join(out)
