"""docs/benchmarks.md can be regenerated without losing a figure."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_benchmarks_page_keeps_its_hand_kept_figures():
    # `python -m benchmarks --write-docs` writes the measured figures, then
    # appends benchmarks/other_figures.md: whatever was edited in the page
    # itself below that point would be lost.
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    kept = (ROOT / "benchmarks" / "other_figures.md").read_text()
    assert page.endswith("\n\n" + kept), (
        "docs/benchmarks.md differs from benchmarks/other_figures.md after "
        "its first line: edit benchmarks/other_figures.md and copy it into "
        "the page (regenerating the page appends that file)"
    )
