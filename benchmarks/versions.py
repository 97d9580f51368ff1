"""One table of the core figures per Python version, from saved results.

    python -m benchmarks.versions RESULTS.json [RESULTS.json ...]

Each file is the raw result of one ``python -m benchmarks --only
w1,memory,snapshot`` run (``benchmarks/results/*.json``), each on its own
Python.  Prints a Markdown table: one row per target, and tracemalloc's
figures on the same Python, one column per file (in the order given), so
that versions sit side by side in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Dict, List, Tuple

from . import figures

#: Figures read from the W1 table: (row label, configuration).
W1_TRACEMALLOC = [
    ("W1 time, tracemalloc-1 vs untraced", "tracemalloc-1"),
    ("W1 time, tracemalloc-25 vs untraced", "tracemalloc-25"),
]


def _column(saved: Dict) -> Tuple[str, Dict[str, str], Dict[str, str]]:
    """(header, row -> cell, row -> goal) for one results file."""
    results = figures.Results(saved["experiments"], saved["quick"])
    sections = figures.build_sections(results, saved["figures"])
    cells: Dict[str, str] = {}
    goals: Dict[str, str] = {}
    for section in sections:
        for target in section.targets:
            cells[target.name] = "%s %s" % (target.value, target.status)
            goals[target.name] = target.goal
            found = re.search(r"(tracemalloc-1: [^;(]+)", target.detail)
            if found and section.key != "w1":
                cells[target.name + " (tracemalloc)"] = found.group(1).strip()
        if section.key == "w1" and section.tables:
            table = section.tables[0]
            column = table.headers.index("vs untraced")
            for label, config in W1_TRACEMALLOC:
                for row in table.rows:
                    if row[0] == config:
                        cells[label] = row[column]
    machine = saved["machine"]
    header = "CPython %s" % machine.get("python", "?").split()[1]
    if saved["quick"]:
        header += " (quick)"
    return header, cells, goals


def table(files: List[str]) -> str:
    columns = []
    for path in files:
        with open(path) as f:
            columns.append(_column(json.load(f)))
    rows: List[str] = []
    goals: Dict[str, str] = {}
    for _, cells, column_goals in columns:
        goals.update(column_goals)
        rows.extend(name for name in cells if name not in rows)
    lines = [
        "| Figure | %s | Goal |" % " | ".join(header for header, _, _ in columns),
        "|:---|%s---:|" % ("---:|" * len(columns)),
    ]
    for name in rows:
        values = [cells.get(name, "-") for _, cells, _ in columns]
        lines.append(
            "| %s | %s | %s |" % (name, " | ".join(values), goals.get(name, ""))
        )
    return "\n".join(lines) + "\n"


def main(argv: List[str] | None = None) -> int:
    files = sys.argv[1:] if argv is None else argv
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(table(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
