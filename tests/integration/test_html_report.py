"""The HTML report without a browser: what the page embeds, and how safely.

`pyleakhunt.export.html` renders; `pyleakhunt report` (cli) reads files.
The page's script draws from the JSON it embeds, so these tests read that
JSON back; tests/test_report_browser.py checks the drawing in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from typing import Any, Dict, List, Tuple

import pytest
from helpers import page_data, recorded_timeline, report_of, sections

from pyleakhunt import cli
from pyleakhunt._raw import RawSite, RawSnapshot
from pyleakhunt.export import html
from pyleakhunt.export.html_report import Progress
from pyleakhunt.fileformat import TimelineWriter, write_snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = "<img src=x onerror=alert(1)>"

#: A program that leaks at LEAK_LINE and churns at CHURN_LINE; argv[1]
#: batches, a short pause each so that the sampler sees every stage.
LEAKY_SCRIPT = """\
import sys
import time
KEPT = []
def handle(i):
    KEPT.append("request %d " % i * 40)  # the leak
def main():
    for batch in range(int(sys.argv[1])):
        for i in range(200):
            handle(batch * 200 + i)
        scratch = [bytearray(1000) for _ in range(50)]
        time.sleep(0.02)
main()
"""
LEAK_LINE = 5
#: The same work, but nothing is kept.
CLEAN_SCRIPT = LEAKY_SCRIPT.replace("KEPT.append(", "len(")
#: A leak whose file name and leaking line are markup.
HOSTILE_SCRIPT = LEAKY_SCRIPT.replace(
    '"request %d " % i * 40)  # the leak',
    '"%s %%d " %% i * 40)  # %s' % (HOSTILE, HOSTILE),
)


# --------------------------------------------------------------------------
# Helpers


def raw(sites: List[RawSite], t: float, **fields: Any) -> RawSnapshot:
    return RawSnapshot(3, sites, pid=4242, timestamp=t, **fields)


def frame_at(data: Dict[str, Any], index: int) -> Tuple[str, int, str, str]:
    """(filename, lineno, function, source line) of a page's frame."""
    file_index, lineno, function, source = data["frames"][index]
    return data["files"][file_index][0], lineno, function, source


def frames_of(node: List[Any]) -> List[List[Any]]:
    """Every node of a flame tree."""
    out = [node]
    for child in node[3]:
        out += frames_of(child)
    return out


@pytest.fixture(scope="module")
def leaky_timeline(tmp_path_factory) -> str:
    return recorded_timeline(
        str(tmp_path_factory.mktemp("leaky")), "leaky.py", LEAKY_SCRIPT
    )


@pytest.fixture(scope="module")
def clean_timeline(tmp_path_factory) -> str:
    return recorded_timeline(
        str(tmp_path_factory.mktemp("clean")), "clean.py", CLEAN_SCRIPT
    )


# --------------------------------------------------------------------------
# Embedding and the page's policy


def test_embedded_json_cannot_end_the_script_element():
    value = {"s": "</script><script>alert(1)</script><!-- \u2028\u2029 & >"}
    text = html.json_for_script(value)
    assert "</" not in text and "<!--" not in text and "<" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == value


def test_page_forbids_every_fetch_and_runs_only_its_own_script():
    page = html.Page("t")
    page.notes("n", ["x"])
    text = page.render()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text)
    assert policy
    rules = dict(
        (part.split(" ", 1) + [""])[:2] for part in policy.group(1).split("; ")
    )
    assert rules["default-src"] == "'none'"
    assert rules["connect-src"] == "'none'"
    assert rules["img-src"] == "data:"
    (script,) = re.findall(r"<script>(.*?)</script>", text, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert rules["script-src"] == "'sha256-%s'" % digest
    (style,) = re.findall(r"<style>(.*?)</style>", text, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert rules["style-src"] == "'sha256-%s'" % digest
    # Nothing the page loads: no src/href attribute, no CSS url() or import.
    assert not re.search(r"\s(src|href)\s*=", text.replace(HOSTILE, ""))
    assert "url(" not in style and "@import" not in style


def test_hostile_names_reach_the_page_only_as_json_text():
    hostile_file = "/tmp/%s.py" % HOSTILE
    page = html.Page(HOSTILE, [HOSTILE])
    frames = ((hostile_file, 3), ("/srv/</script>.py", 1))
    page.flame_graph(HOSTILE, [(frames, 1000, 1)])
    page.chart(HOSTILE, [html.Series(HOSTILE, [(0, 1), (1, 2)])])
    text = page.render()
    assert HOSTILE not in text
    assert "</script>.py" not in text
    assert text.count("</script>") == 2  # the data's and the code's own
    data = page_data(text)
    assert data["title"] == HOSTILE
    shown = [frame_at(data, i)[:2] for i in range(len(data["frames"]))]
    assert (hostile_file, 3) in shown
    assert "&lt;img" in text  # <title> and <h1>, escaped


# --------------------------------------------------------------------------
# Pure reductions


def test_flame_graph_keeps_the_largest_sites_holding_99_percent():
    records = [((("/a.py", i), ("/main.py", 1)), 1000 + i, 1) for i in range(10_000)]
    page = html.Page("t")
    page.flame_graph("f", records)
    (section,) = page.data()["sections"]
    tree = section["tree"]
    total = sum(size for _, size, _ in records)
    assert tree[1] == total  # the root holds everything, "other" included
    other = [child for child in tree[3] if child[0] == -2]
    assert len(other) == 1
    kept = total - other[0][1]
    assert 0.99 <= kept / total < 0.9902
    assert any('grouped as "other"' in note for note in section["notes"])
    for node in frames_of(tree):  # a frame is as wide as its children at least
        assert node[1] >= sum(child[1] for child in node[3])


def test_flame_graph_caps_the_number_of_sites_and_says_so():
    records = [((("/a.py", i),), 10, 1) for i in range(html.FLAME_MAX_SITES + 500)]
    page = html.Page("t")
    page.flame_graph("f", records)
    (section,) = page.data()["sections"]
    kept = [c for c in section["tree"][3] if c[0] >= 0]
    assert len(kept) == html.FLAME_MAX_SITES
    assert "The %d largest" % html.FLAME_MAX_SITES in section["notes"][-1]


def test_flame_graph_puts_the_outermost_call_at_the_top():
    page = html.Page("t")
    inner, outer = ("/app/views.py", 7), ("/app/main.py", 2)
    page.flame_graph("f", [((inner, outer), 500, 5), ((outer,), 100, 1)])
    data = page.data()
    root = data["sections"][0]["tree"]
    (top,) = root[3]
    assert frame_at(data, top[0])[:2] == outer
    assert top[1:3] == [600, 6]
    (child,) = top[3]
    assert frame_at(data, child[0])[:2] == inner


def test_flame_tree_numbers_frames_and_orders_children_as_met():
    """Frames are numbered in the order the records meet them (outermost
    call first), children are the largest first and equal ones in the
    order met; frames given as lists are read the same."""
    main, a, b, c = ("/m.py", 1), ("/a.py", 2), ("/b.py", 3), ("/c.py", 4)
    records = [
        ((a, main), 300, 3),
        ([list(b), list(main)], 100, 1),  # as lists (from JSON, say)
        ((c, b, main), 200, 2),
        ((c,), 100, 1),
        ((b,), 400, 4),
    ]
    page = html.Page("t")
    page.flame_graph("f", records, coverage=1.0)
    data = page.data()
    names = [frame_at(data, i)[:2] for i in range(len(data["frames"]))]
    assert names == [b, main, a, c]  # records are taken the largest first

    def shape(node):
        label = "root" if node[0] < 0 else names[node[0]][0]
        return [label, node[1], node[2], [shape(child) for child in node[3]]]

    assert shape(data["sections"][0]["tree"]) == [
        "root",
        1100,
        11,
        [
            [
                "/m.py",
                600,
                6,
                [["/a.py", 300, 3, []], ["/b.py", 300, 3, [["/c.py", 200, 2, []]]]],
            ],
            ["/b.py", 400, 4, []],
            ["/c.py", 100, 1, []],
        ],
    ]


def test_long_series_keep_their_peaks_and_floors():
    points = [(float(i), 100.0 if i % 10 == 0 else 500.0 + i) for i in range(20_000)]
    kept = html.reduce_points(points, 1000)
    assert len(kept) <= 1001
    assert min(y for _, y in kept) == 100.0
    assert max(y for _, y in kept) == max(y for _, y in points)
    assert kept == sorted(kept)


def test_floor_tells_a_sawtooth_from_a_leak():
    saw = html.Series("saw", [(i, 1000 + (i % 10) * 100_000) for i in range(100)])
    leak = html.Series(
        "leak", [(i, 1000 + i * 10_000 + (i % 10) * 50_000) for i in range(100)]
    )
    assert "returns to its floor" in html.describe_floor(saw)
    assert "floor rose" in html.describe_floor(leak)
    page = html.Page("t")
    page.chart("c", [html.Series("saw", saw.points, floor=True)])
    assert "returns to its floor" in page.data()["sections"][0]["notes"][0]


def test_frames_are_coloured_by_where_they_come_from():
    import json as json_module

    stdlib = json_module.__file__
    assert html.frame_category("/home/me/app.py") == "user"
    assert html.frame_category(stdlib) == "stdlib"
    assert html.frame_category("<frozen importlib._bootstrap>") == "stdlib"
    assert (
        html.frame_category("/v/lib/python3.12/site-packages/flask/app.py") == "package"
    )
    assert html.frame_category("<unknown>") == "native"


def test_progress_shows_only_on_a_terminal_after_two_seconds():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    stream = Tty()
    progress = Progress(stream, clock=lambda: now[0])
    progress.update("step 1")
    assert stream.getvalue() == ""
    now[0] = 2.5
    progress.update("step 2")
    progress.done()
    assert "step 2" in stream.getvalue() and stream.getvalue().endswith("done\n")

    quiet = io.StringIO()
    progress = Progress(quiet, clock=lambda: now[0])
    now[0] = 100.0
    progress.update("step")
    progress.done()
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------
# pyleakhunt report


def test_report_of_a_leaking_program_names_its_line_first(leaky_timeline):
    path = report_of(leaky_timeline)
    assert path == os.path.splitext(leaky_timeline)[0] + ".html"
    data = page_data(open(path, encoding="utf-8").read())
    (chart,) = sections(data, "chart")
    names = [s["name"] for s in chart["series"]]
    assert names[0] == "traced memory"
    assert any(n.endswith("leaky.py:%d" % LEAK_LINE) for n in names)
    # The run recorded the process's RSS with every sample: it is plotted,
    # and it is never below what the tracer saw.
    (rss,) = [s for s in chart["series"] if s["kind"] == "rss"]
    assert len(rss["points"]) >= 4
    assert min(v for _, v in rss["points"]) > 0
    assert not any("RSS: not recorded" in note for note in chart["notes"])
    assert any("floor rose" in note for note in chart["notes"])
    (table,) = sections(data, "suspects")
    first = table["rows"][0]
    filename, lineno, _, source = frame_at(data, first["frame"])
    assert (os.path.basename(filename), lineno) == ("leaky.py", LEAK_LINE)
    assert "KEPT.append" in source
    assert first["rate"] > 0 and len(first["spark"]) >= 4
    assert first["spark"][-1] > first["spark"][0]
    live, grown = sections(data, "flame")
    assert "Live memory" in live["title"] and "Growth" in grown["title"]
    leak_frames = [
        i
        for i in range(len(data["frames"]))
        if frame_at(data, i)[:2] == (filename, lineno)
    ]
    assert any(node[0] in leak_frames for node in frames_of(grown["tree"]))


def test_report_of_a_clean_program_says_there_is_no_suspect(clean_timeline):
    path = report_of(clean_timeline)
    data = page_data(open(path, encoding="utf-8").read())
    (table,) = sections(data, "suspects")
    assert table["rows"] == []
    assert table["empty"].startswith("No suspect")
    assert "call sites" in table["empty"] and "samples" in table["empty"]


def _snapshot(path: str, sizes: Dict[Tuple[str, int], int], t: float) -> None:
    sites = [
        RawSite(0, (frame, ("/srv/main.py", 1)), 2, 1, size, size)
        for frame, size in sizes.items()
    ]
    write_snapshot(path, raw(sites, t))


def test_report_of_one_snapshot_and_of_two(tmp_path):
    old, new = str(tmp_path / "old.plhs"), str(tmp_path / "new.plhs")
    _snapshot(old, {("/srv/a.py", 1): 1000, ("/srv/b.py", 2): 5000}, 10.0)
    _snapshot(new, {("/srv/a.py", 1): 9000, ("/srv/b.py", 2): 100}, 70.0)
    one = page_data(open(report_of(new), encoding="utf-8").read())
    (live,) = sections(one, "flame")
    assert live["tree"][1] == 9100
    out = str(tmp_path / "diff.html")
    assert report_of(old, new, output=out) == out
    two = page_data(open(out, encoding="utf-8").read())
    grown, live = sections(two, "flame")
    assert grown["tree"][1] == 8000  # only what grew: b.py shrank
    assert "(1 min 0 s)" in grown["title"]


def test_report_of_a_timeline_with_rss_plots_it(tmp_path):
    path = str(tmp_path / "t.plh")
    with TimelineWriter(path) as writer:
        for i in range(6):
            site = RawSite(0, (("/srv/a.py", 1),), 1, 1, 1000 * (i + 1), 0)
            writer.append(raw([site], 100.0 + i, attrs={"rss_bytes": 10_000_000 + i}))
    data = page_data(open(report_of(path), encoding="utf-8").read())
    (chart,) = sections(data, "chart")
    rss = [s for s in chart["series"] if s["kind"] == "rss"]
    assert rss and rss[0]["points"][0] == [0, 10_000_000]


def test_report_marks_a_leak_the_programs_end_freed(tmp_path):
    # It grew at every sample, and the closing sample found it freed (a
    # list local to main()): still a suspect, as `suspects` says.
    path = str(tmp_path / "t.plh")
    with TimelineWriter(path) as writer:
        for i in range(8):
            site = RawSite(0, (("/srv/a.py", 1),), 1, 1, 1000 * (i + 1), 0)
            writer.append(raw([site], 100.0 + i))
        writer.append(raw([], 108.0, attrs={"closing": True}))
    data = page_data(open(report_of(path), encoding="utf-8").read())
    (table,) = sections(data, "suspects")
    (row,) = table["rows"]
    assert row["freed"] and row["size"] == 0 and row["growth"] == 7000
    (suspect,) = cli.analyse_timeline(path).suspects
    assert suspect.freed_at_exit


def test_report_of_a_bad_file_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.plh"
    bad.write_bytes(b"not a pyleakhunt file")
    assert cli.main(["report", str(bad)]) == cli.EXIT_BAD_FILE
    assert cli.main(["report", str(tmp_path / "missing.plh")]) == cli.EXIT_BAD_FILE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("pyleakhunt: error: ") for e in err)
    assert not (tmp_path / "bad.html").exists()


def test_report_ranks_suspects_as_the_suspects_command_does(leaky_timeline):
    from pyleakhunt.export import html_report

    expected = cli.analyse_timeline(leaky_timeline).suspects
    assert expected
    page = html_report.timeline_page(leaky_timeline, cli.TimelineReader(leaky_timeline))
    (table,) = sections(page.data(), "suspects")
    got = [(r["growth"], r["size"], r["count"]) for r in table["rows"]]
    assert got == [(s.growth_bytes, s.size, s.count) for s in expected]
    rates = [r["rate"] for r in table["rows"]]
    assert rates == pytest.approx([s.growth_bytes_per_s for s in expected], rel=1e-5)


def test_page_can_leave_source_lines_out(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("def f():\n    SECRET = 'token'\n")
    frames = ((str(script), 2),)
    for sources, expected in ((True, "SECRET = 'token'"), (False, "")):
        page = html.Page("t", sources=sources)
        page.flame_graph("f", [(frames, 100, 1)])
        data = page.data()
        (frame,) = [frame_at(data, i) for i in range(len(data["frames"]))]
        assert frame[3] == expected
        assert frame[2].endswith("f")  # named either way


def _reference_suspects(entries: List[RawSnapshot], key_type: str, rule: Any):
    """The suspects of *entries* reduced site by site, the plain way: sites
    with no block and the tracer's own left out, each group's traceback the
    first site (in the order read) to reach the group's largest size."""
    from pyleakhunt.growth import TRACER_FILES, Sample, find_suspects
    from pyleakhunt.snapshot import Traceback, raw_group_key

    samples = []
    biggest: Dict[Any, Tuple[int, Any]] = {}
    for entry in entries:
        figures: Dict[Any, Tuple[int, int, int]] = {}
        for site in entry.sites:
            if site.count == 0 or any(f[0] in TRACER_FILES for f in site.frames):
                continue
            key = raw_group_key(key_type, site.frames)
            size, count, floor = figures.get(key, (0, 0, 0))
            figures[key] = (size + site.size, count + site.count, floor + site.low)
            if site.size > biggest.get(key, (-1, None))[0]:
                biggest[key] = (site.size, site.frames)
        samples.append(Sample(entry.timestamp, figures, bool(entry.sample_bytes)))
    samples.sort(key=lambda sample: sample.timestamp)
    found = find_suspects(samples, {}, rule)
    sizes = {
        s.key: [sample.figures.get(s.key, (0, 0, 0))[0] for sample in samples]
        for s in found
    }
    return [(s, Traceback(biggest[s.key][1]), sizes[s.key]) for s in found]


def test_report_reduces_a_timeline_as_the_site_by_site_rule_does(tmp_path):
    """The report reduces entries column by column, one plan per run of
    entries with the same sites: its suspects (ranking, figures, biggest
    traceback, sparkline) must be those of the plain site-by-site
    reduction, through repeated tables, changed ones, sites with no block,
    the tracer's own sites, groups of several sites and entries out of
    time order; read as RawColumns or as RawSnapshots alike."""
    import random

    from pyleakhunt.export import html_report
    from pyleakhunt.fileformat import iter_timeline
    from pyleakhunt.growth import TRACER_FILES, GrowthRule

    rng = random.Random(7)
    tracer = sorted(TRACER_FILES)[0]
    files = ["/app/a.py", "/app/b.py", "/usr/lib/python3/json/x.py", tracer]
    tracebacks = [
        tuple((rng.choice(files), rng.randint(1, 6)) for _ in range(rng.randint(1, 3)))
        for _ in range(80)
    ]
    # Two sites of one line (a group but for key "traceback") always of one
    # size: the group's traceback is the first site's.
    twins = [(("/app/c.py", 9), ("/app/a.py", 1)), (("/app/c.py", 9), ("/app/b.py", 2))]
    tracebacks = list(dict.fromkeys(tracebacks + twins))
    leaking = {tb: rng.randint(1, 10**6) for tb in tracebacks if rng.random() < 0.4}
    times = [100.0 + i for i in range(30)]
    times[5], times[6] = times[6], times[5]  # written out of order
    path = str(tmp_path / "t.plh")
    with TimelineWriter(path) as writer:
        for i in range(30):
            if i in (10, 20):  # new call sites: the tables change
                tracebacks.append((("/app/new%d.py" % i, 1),))
                leaking[tracebacks[-1]] = 777_777 + i
            sites = []
            for tb in tracebacks:
                size = rng.choice([0, 8, 64, 64, 4096])
                if tb in leaking:
                    size += leaking[tb] * i + rng.randint(0, 99)
                if tb in twins:
                    size = 5000 * i + 10
                count = rng.randint(0 if i in (15, 29) else 1, 9)
                low = rng.randint(0, size) if count else 0
                sites.append(RawSite(0, tb, len(tb), count, size, low))
            writer.append(raw(sites, times[i]))
    rule = GrowthRule(min_growth_bytes=1, min_consistency=0.1)
    entries = list(iter_timeline(path))
    for key_type in ("userline", "lineno", "traceback"):
        want = _reference_suspects(entries, key_type, rule)
        assert len(want) > 10
        rows = [
            (
                s.growth_bytes,
                s.size,
                s.count,
                html._number(s.consistency),
                tuple((f.filename, f.lineno) for f in traceback),
                sizes,
            )
            for s, traceback, sizes in want
        ]
        pages = [
            html_report.timeline_page(path, source, key_type, rule)
            for source in (entries, iter_timeline(path, columns=True))
        ]
        assert pages[0].data() == pages[1].data()
        (table,) = sections(pages[0].data(), "suspects")
        got = [
            (
                row["growth"],
                row["size"],
                row["count"],
                row["steadiness"],
                tuple(frame_at(pages[0].data(), i)[:2] for i in row["traceback"]),
                row["spark"],
            )
            for row in table["rows"]
        ]
        assert got == rows[: html_report.TABLE_SUSPECTS]
