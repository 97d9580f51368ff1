"""Exports: pprof (read back by a protobuf reader and by go tool pprof),
folded stacks, growth profiles, frame names, and top/diff --format."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections import defaultdict
from typing import Any, Dict, List, Tuple

import pytest

import pyleakhunt
from pyleakhunt import cli
from pyleakhunt._raw import RawSite, RawSnapshot
from pyleakhunt.export import (
    StackProfile,
    StackSample,
    encode_pprof,
    folded_lines,
    growth,
    live_memory,
    pprof_bytes,
)
from pyleakhunt.export.names import FrameNamer, module_name, short_filename
from pyleakhunt.fileformat import write_snapshot
from pyleakhunt.snapshot import Snapshot

APP_SOURCE = """\
LOG = []


def handle(request):
    LOG.append(request)
    return render(request)


def render(request):
    return "<p>%s</p>" % request


class View:
    @staticmethod
    def get(request):
        def inner():
            return handle(request)

        return inner()
"""
HANDLE_LINE, RENDER_LINE, GET_LINE, INNER_LINE, DEF_LINE = 5, 10, 19, 17, 4
MAIN = ("/srv/main.py", 7)


@pytest.fixture
def app(tmp_path) -> str:
    path = tmp_path / "app.py"
    path.write_text(APP_SOURCE)
    return str(path)


def snapshot_of(sites: List[RawSite], **fields: Any) -> Snapshot:
    fields.setdefault("pid", 4242)
    fields.setdefault("timestamp", 1_700_000_000.0)
    return Snapshot._from_raw(RawSnapshot(5, sites, **fields))


def app_sites(app: str, leak: int = 3000, render: int = 1000) -> List[RawSite]:
    leak_frames = ((app, HANDLE_LINE), (app, INNER_LINE), (app, GET_LINE), MAIN)
    render_frames = ((app, RENDER_LINE), (app, 6), MAIN)
    return [
        RawSite(0, leak_frames, None, 3, leak, leak),
        RawSite(0, render_frames, None, 2, render, render),
    ]


# --------------------------------------------------------------------------
# A minimal protobuf reader, independent of the writer


def read_varint(data: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def read_message(data: bytes) -> Dict[int, List[Any]]:
    fields: Dict[int, List[Any]] = defaultdict(list)
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        else:
            raise AssertionError("unexpected wire type %d" % wire)
        fields[field].append(value)
    assert pos == len(data)
    return fields


def ints(values: List[Any]) -> List[int]:
    """A repeated integer field, packed or not."""
    out = []
    for value in values:
        if isinstance(value, int):
            out.append(value)
            continue
        pos = 0
        while pos < len(value):
            number, pos = read_varint(value, pos)
            out.append(number)
    return out


def one(fields: Dict[int, List[Any]], number: int, default: Any = 0) -> Any:
    values = fields.get(number, [])
    assert len(values) <= 1
    return values[0] if values else default


def decode_pprof(data: bytes) -> Dict[str, Any]:
    """The parts of a gzipped profile.proto the tests look at."""
    profile = read_message(gzip.decompress(data))
    strings = [s.decode("utf-8") for s in profile[6]]
    functions = {}
    for raw in profile[5]:
        f = read_message(raw)
        functions[one(f, 1)] = (strings[one(f, 2)], strings[one(f, 4)], one(f, 5))
    locations = {}
    for raw in profile[4]:
        loc = read_message(raw)
        (line,) = [read_message(x) for x in loc[4]]
        name, filename, _start = functions[one(line, 1)]
        locations[one(loc, 1)] = (name, filename, one(line, 2), one(loc, 2))
    samples = []
    for raw in profile[2]:
        sample = read_message(raw)
        labels = {}
        for label_raw in sample.get(3, []):
            label = read_message(label_raw)
            key = strings[one(label, 1)]
            labels[key] = strings[one(label, 2)] if one(label, 2) else one(label, 3)
        samples.append(
            {
                "frames": [locations[i] for i in ints(sample[1])],
                "values": ints(sample[2]),
                "labels": labels,
            }
        )

    def value_type(raw: bytes) -> Tuple[str, str]:
        vt = read_message(raw)
        return (strings[one(vt, 1)], strings[one(vt, 2)])

    return {
        "strings": strings,
        "sample_types": [value_type(raw) for raw in profile[1]],
        "samples": samples,
        "functions": functions,
        "mappings": [read_message(raw) for raw in profile[3]],
        "period_type": value_type(one(profile, 11, b"")),
        "period": one(profile, 12),
        "comments": [strings[i] for i in ints(profile.get(13, []))],
        "default_sample_type": strings[one(profile, 14)],
        "time_nanos": one(profile, 9),
        "duration_nanos": one(profile, 10),
    }


# --------------------------------------------------------------------------
# pprof


def test_pprof_holds_one_sample_per_site_with_space_and_objects(app):
    profile = decode_pprof(pprof_bytes(snapshot_of(app_sites(app))))
    assert profile["strings"][0] == ""
    assert profile["sample_types"] == [
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    assert profile["default_sample_type"] == "inuse_space"
    values = sorted(sample["values"] for sample in profile["samples"])
    assert values == [[2, 1000], [3, 3000]]
    assert profile["time_nanos"] == 1_700_000_000 * 10**9


def test_pprof_locations_run_from_the_allocation_to_the_root(app):
    profile = decode_pprof(pprof_bytes(snapshot_of(app_sites(app))))
    leak = max(profile["samples"], key=lambda s: s["values"][1])
    assert [(name, line) for name, _f, line, _m in leak["frames"]] == [
        ("app.handle", HANDLE_LINE),
        ("app.View.get.<locals>.inner", INNER_LINE),
        ("app.View.get", GET_LINE),
        ("main:7", 7),
    ]
    assert leak["frames"][0][1] == app
    # Every location is in the one mapping, which needs no symbolization.
    assert {frame[3] for frame in leak["frames"]} == {1}
    (mapping,) = profile["mappings"]
    assert mapping[7] == [1] and mapping[9] == [1]


def test_pprof_functions_carry_their_def_line(app):
    profile = decode_pprof(pprof_bytes(snapshot_of(app_sites(app))))
    starts = {name: start for name, _file, start in profile["functions"].values()}
    assert starts["app.handle"] == DEF_LINE
    assert starts["main:7"] == 0


def test_exact_pprof_says_so_and_has_period_one(app):
    profile = decode_pprof(pprof_bytes(snapshot_of(app_sites(app))))
    assert profile["period_type"] == ("space", "bytes")
    assert profile["period"] == 1
    assert any(c.startswith("exact") for c in profile["comments"])
    assert any("pid 4242" in c for c in profile["comments"])


def test_estimated_pprof_is_marked_and_has_the_sampling_period(app):
    snapshot = snapshot_of(app_sites(app), sample_bytes=512 * 1024)
    profile = decode_pprof(pprof_bytes(snapshot))
    assert profile["period"] == 512 * 1024
    (comment,) = [c for c in profile["comments"] if c.startswith("estimated")]
    assert "512 KiB" in comment


def test_pprof_labels_tagged_memory_with_its_endpoint(app):
    frames = ((app, HANDLE_LINE),)
    sites = [
        RawSite(0, frames, None, 1, 100, 100, tag=1),
        RawSite(0, frames, None, 1, 200, 200, tag=0),
        RawSite(7, frames, None, 1, 300, 300),
    ]
    profile = decode_pprof(pprof_bytes(snapshot_of(sites, tags={1: "/cart"})))
    labels = sorted(
        (s["values"][1], sorted(s["labels"].items())) for s in profile["samples"]
    )
    assert labels == [
        (100, [("endpoint", "/cart")]),
        (200, []),
        (300, [("domain", 7)]),
    ]


def test_pprof_of_real_tracing_matches_the_snapshot():
    pyleakhunt.start(5)
    kept = allocate_records(300)
    snapshot = pyleakhunt.take_snapshot(traces=False)
    pyleakhunt.stop()
    profile = decode_pprof(pprof_bytes(snapshot))
    ours = [
        s
        for s in profile["samples"]
        if s["frames"][0][1] == __file__ and s["frames"][0][2] == ALLOC_LINE
    ]
    assert {s["frames"][0][0] for s in ours} == {"test_export.allocate_records"}
    expected = sum(
        site.size for site in snapshot.sites if site.frames[0] == (__file__, ALLOC_LINE)
    )
    assert sum(s["values"][1] for s in ours) == expected >= 300 * 1000
    assert sum(s["values"][1] for s in profile["samples"]) == sum(
        site.size for site in snapshot.sites
    )
    assert len(kept) == 300


def allocate_records(n):
    return [bytearray(1000) for _ in range(n)]


ALLOC_LINE = allocate_records.__code__.co_firstlineno + 1


def test_snapshot_to_pprof_and_to_folded_write_files(app, tmp_path):
    snapshot = snapshot_of(app_sites(app))
    snapshot.to_pprof(tmp_path / "out.pb.gz")
    snapshot.to_folded(str(tmp_path / "out.folded"), value="count")
    data = (tmp_path / "out.pb.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data) == encode_pprof(snapshot)
    lines = (tmp_path / "out.folded").read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["3", "2"]


# --------------------------------------------------------------------------
# go tool pprof


def go_pprof(tmp_path, *args: str) -> str:
    env = dict(os.environ, PPROF_TMPDIR=str(tmp_path), HOME=str(tmp_path))
    return subprocess.run(
        ["go", "tool", "pprof", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout


@pytest.mark.skipif(
    shutil.which("go") is None,
    reason="go is not installed (apt-get install golang-go); CI installs it",
)
def test_go_tool_pprof_reads_the_profile_and_ranks_the_sites(app, tmp_path):
    path = tmp_path / "heap.pb.gz"
    sites = app_sites(app, leak=3 * 1024 * 1024, render=1024 * 1024)
    snapshot_of(sites, sample_bytes=512 * 1024).to_pprof(path)
    top = go_pprof(tmp_path, "-top", str(path))
    assert "Type: inuse_space" in top
    rows = [line.split() for line in top.splitlines()]
    entries = [row for row in rows if row and row[-1].startswith("app.")]
    assert [row[-1] for row in entries[:2]] == ["app.handle", "app.render"]
    assert entries[0][0] == "3MB" and entries[1][0] == "1MB"
    objects = go_pprof(tmp_path, "-top", "-sample_index=inuse_objects", str(path))
    assert "Type: inuse_objects" in objects
    comments = go_pprof(tmp_path, "-comments", str(path))
    assert "estimated" in comments


# --------------------------------------------------------------------------
# Folded stacks


def test_folded_lines_run_from_the_root_to_the_allocation(app):
    lines = folded_lines(snapshot_of(app_sites(app)))
    assert lines == [
        "main:7 (/srv/main.py:7);app.View.get (%(app)s:19);"
        "app.View.get.<locals>.inner (%(app)s:17);app.handle (%(app)s:5) 3000"
        % {"app": app},
        "main:7 (/srv/main.py:7);app.handle (%(app)s:6);app.render (%(app)s:10) 1000"
        % {"app": app},
    ]


def test_folded_counts_and_merges_identical_stacks(app):
    sites = app_sites(app)
    sites.append(RawSite(0, sites[1].frames, None, 5, 50, 50, tag=3))
    lines = folded_lines(snapshot_of(sites), value="count")
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["7", "3"]


def test_folded_frames_never_contain_the_separator():
    profile = StackProfile([StackSample((("/x/we;ird.py", 3), ("<unknown>", 0)), 9, 1)])
    (line,) = folded_lines(profile)
    stack, value = line.rsplit(" ", 1)
    assert value == "9"
    assert stack.count(";") == 1


def test_folded_refuses_an_unknown_value(app):
    with pytest.raises(ValueError, match="bytes, count"):
        folded_lines(snapshot_of(app_sites(app)), value="blocks")


# --------------------------------------------------------------------------
# Growth


def test_growth_keeps_only_sites_that_grew_valued_by_the_growth(app):
    old = snapshot_of(app_sites(app, leak=1000, render=5000))
    new_sites = app_sites(app, leak=4000, render=2000)
    new_sites.append(RawSite(0, (MAIN,), None, 1, 500, 500))
    new = snapshot_of(new_sites, timestamp=1_700_000_060.0)
    profile = growth(old, new)
    assert {s.frames[0]: s.size for s in profile.samples} == {
        (app, HANDLE_LINE): 3000,
        MAIN: 500,
    }
    decoded = decode_pprof(pprof_bytes(profile))
    assert decoded["duration_nanos"] == 60 * 10**9
    assert any("growth" in c for c in decoded["comments"])


def test_live_memory_skips_nothing_but_empty_sites(app):
    sites = app_sites(app) + [RawSite(0, (MAIN,), None, 0, 0, 0)]
    assert len(live_memory(snapshot_of(sites)).samples) == 2


# --------------------------------------------------------------------------
# Frame names


def test_frame_names_follow_python_qualified_names(app):
    namer = FrameNamer()
    assert namer.name(app, HANDLE_LINE).function == "app.handle"
    assert namer.name(app, INNER_LINE).function == "app.View.get.<locals>.inner"
    # The def line runs in the enclosing scope (it creates the function).
    assert namer.name(app, DEF_LINE).function == "app.<module>"
    assert namer.name(app, 1).function == "app.<module>"


def test_frames_without_source_are_named_by_file_and_line():
    namer = FrameNamer()
    assert namer.name("<string>", 3).function == "string:3"
    assert namer.name("<unknown>", 0).function == "unknown:0"
    assert namer.name("<frozen no_such_module>", 5).function == "no_such_module:5"
    assert namer.name("/gone/shop/cart.py", 12).function == "cart:12"


def test_frozen_modules_are_named_from_the_standard_library():
    import importlib._bootstrap as bootstrap

    line = bootstrap._call_with_frames_removed.__code__.co_firstlineno + 1
    name = FrameNamer().name("<frozen importlib._bootstrap>", line)
    assert name.function == "importlib._bootstrap._call_with_frames_removed"


def test_module_names_come_from_site_packages_or_packages(tmp_path):
    lib = "/usr/lib/python3/dist-packages/requests/models.py"
    assert module_name(lib) == "requests.models"
    assert short_filename(lib) == "requests/models.py"
    assert module_name("/opt/py/lib/python3.12/json/__init__.py") == "json"
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cart.py").write_text("")
    assert module_name(str(package / "cart.py")) == "shop.cart"


# --------------------------------------------------------------------------
# top and diff --format


@pytest.fixture
def snapshot_files(app, tmp_path) -> Tuple[str, str]:
    old = RawSnapshot(5, app_sites(app, leak=1000, render=5000), pid=1)
    new = RawSnapshot(5, app_sites(app, leak=4000, render=2000), pid=1)
    paths = str(tmp_path / "old.plh"), str(tmp_path / "new.plh")
    write_snapshot(paths[0], old)
    write_snapshot(paths[1], new)
    return paths


def test_top_writes_pprof_to_a_file(snapshot_files, tmp_path, capsys):
    out = str(tmp_path / "top.pb.gz")
    assert cli.main(["top", snapshot_files[1], "--format", "pprof", "-o", out]) == 0
    assert capsys.readouterr().out == ""
    values = [s["values"] for s in decode_pprof(open(out, "rb").read())["samples"]]
    assert sorted(values) == [[2, 2000], [3, 4000]]


def test_top_writes_folded_stacks_to_stdout(snapshot_files, capsys):
    assert cli.main(["top", snapshot_files[1], "--format", "folded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["4000", "2000"]


def test_diff_exports_the_growth_only(app, snapshot_files, capsys):
    code = cli.main(["diff", *snapshot_files, "--format", "folded"])
    assert code == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.endswith(";app.handle (%s:5) 3000" % app)


def test_format_json_is_the_same_as_json(snapshot_files, tmp_path, capsys):
    cli.main(["top", snapshot_files[1], "--json"])
    by_flag = capsys.readouterr().out
    out = str(tmp_path / "top.json")
    assert cli.main(["top", snapshot_files[1], "--format", "json", "-o", out]) == 0
    assert open(out).read() == by_flag


@pytest.mark.parametrize(
    "extra",
    [
        ["--json", "--format", "pprof"],
        ["--format", "folded", "--key", "filename"],
        ["--format", "pprof", "--cumulative"],
    ],
)
def test_conflicting_output_options_are_usage_errors(snapshot_files, extra, capsys):
    assert cli.main(["top", snapshot_files[1], *extra, "-o", os.devnull]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyleakhunt: error: ") and err.count("\n") == 1
