"""Tests for pyleakhunt.fileformat (snapshot and timeline files).

Only ``pyleakhunt.fileformat`` and ``pyleakhunt._raw`` are imported: these
tests do not need the C extension.  The helpers below re-implement the
container layout from docs/file-format.md so that tests can craft hostile
files with valid checksums.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import random
import struct
import sys
import time
import tracemalloc
import warnings
import zlib
from array import array
from typing import List, Tuple

import pytest

from pyleakhunt import fileformat as ff
from pyleakhunt._raw import RawSite, RawSnapshot

FILE_HEADER = struct.Struct("<8sHB5x")
ENTRY_HEADER = struct.Struct("<4sQI")
SECTION_HEADER = struct.Struct("<BBQQ")
META = struct.Struct("<IIqQQQdQ")

META_ID, STRINGS, FRAMES, TRACEBACKS, SITES, TAGS, ATTRS, BLOCKS = range(1, 9)

# --------------------------------------------------------------------------
# Sample data
# --------------------------------------------------------------------------


def make_aggregated(**overrides: object) -> RawSnapshot:
    tb1 = (("/app/main.py", 10), ("/usr/lib/python3/json/__init__.py", 0))
    tb2 = (("/app/worker.py", 7),)
    sites = [
        RawSite(0, tb1, 2, 3, 300, 200, 0),
        RawSite(0, tb2, None, 1, 2**40, 2**39, 1),
        RawSite(5, tb1, 7, 2**33, 2**64 - 1, 0, 2),
        RawSite(-1, (), 0, 0, 0),
    ]
    fields = dict(
        traceback_limit=25,
        sites=sites,
        tags={1: "GET /users", 2: "POST /upload", -3: ""},
        sample_bytes=2**20,
        lost_blocks=2**35,
        pid=4242,
        timestamp=1700000000.123456,
        attrs={"test_attr": "new", "nested": {"a": [1, 2.5, None, True, "é"]}},
    )
    fields.update(overrides)
    return RawSnapshot(**fields)  # type: ignore[arg-type]


def make_full(n_blocks: int = 50, seed: int = 1) -> RawSnapshot:
    rnd = random.Random(seed)
    snap = make_aggregated(attrs={}, tags={})
    snap.block_sites = array("I", (rnd.randrange(4) for _ in range(n_blocks)))
    snap.block_sizes = array("Q", (rnd.randrange(1, 5000) for _ in range(n_blocks)))
    return snap


def dumps(snap: RawSnapshot) -> bytes:
    buf = io.BytesIO()
    ff.write_snapshot(buf, snap)
    return buf.getvalue()


def timeline_bytes(snaps: List[RawSnapshot]) -> bytes:
    buf = io.BytesIO()
    writer = ff.TimelineWriter(buf)
    for snap in snaps:
        writer.append(snap)
    writer.close()
    return buf.getvalue()


def loads(data: bytes) -> RawSnapshot:
    return ff.read_snapshot(io.BytesIO(data))


# --------------------------------------------------------------------------
# Container helpers (the layout documented in docs/file-format.md)
# --------------------------------------------------------------------------


def split_file(data: bytes) -> Tuple[bytes, List[bytes]]:
    """Return (file header, [entry payloads]) of a valid file."""
    header, pos, payloads = data[:16], 16, []
    while pos < len(data):
        _marker, length, _crc = ENTRY_HEADER.unpack_from(data, pos)
        pos += ENTRY_HEADER.size
        payloads.append(data[pos : pos + length])
        pos += length
    return header, payloads


def entry(payload: bytes, crc: int = -1) -> bytes:
    if crc < 0:
        crc = zlib.crc32(payload)
    return ENTRY_HEADER.pack(b"SNAP", len(payload), crc) + payload


def build_file(header: bytes, payloads: List[bytes]) -> bytes:
    return header + b"".join(entry(p) for p in payloads)


Section = Tuple[int, int, int, bytes]  # id, flags, raw length, stored bytes


def split_payload(payload: bytes) -> List[Section]:
    pos, out = 0, []
    while pos < len(payload):
        sid, flags, stored, raw_len = SECTION_HEADER.unpack_from(payload, pos)
        pos += SECTION_HEADER.size
        out.append((sid, flags, raw_len, payload[pos : pos + stored]))
        pos += stored
    return out


def build_payload(sections: List[Section]) -> bytes:
    return b"".join(
        SECTION_HEADER.pack(sid, flags, len(data), raw_len) + data
        for sid, flags, raw_len, data in sections
    )


def decoded_sections(snap: RawSnapshot) -> dict:
    """Map section id -> decoded content for the entry of *snap*."""
    _header, (payload,) = split_file(dumps(snap))
    out = {}
    for sid, flags, _raw_len, data in split_payload(payload):
        out[sid] = zlib.decompress(data) if flags & 1 else data
    return out


def file_from_sections(contents: dict, kind: bytes = b"S") -> bytes:
    """Build a snapshot file from {section id: decoded content} (uncompressed)."""
    sections = [(sid, 0, len(c), c) for sid, c in contents.items()]
    header = FILE_HEADER.pack(ff.MAGIC, ff.FORMAT_VERSION, kind[0])
    return build_file(header, [build_payload(sections)])


def assert_format_error(data: bytes, *fragments: str) -> ff.FileFormatError:
    with pytest.raises(ff.FileFormatError) as info:
        ff.read_any(io.BytesIO(data))
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_file_format_error_is_a_value_error() -> None:
    assert issubclass(ff.FileFormatError, ValueError)
    assert issubclass(ff.PickleImportWarning, UserWarning)
    assert len(ff.MAGIC) == 8 and ff.FORMAT_VERSION >= 1


def test_aggregated_snapshot_round_trips_every_field(tmp_path) -> None:
    snap = make_aggregated()
    path = tmp_path / "agg.plh"
    ff.write_snapshot(path, snap)
    back = ff.read_snapshot(path)
    assert back == snap
    assert not back.is_full
    assert back.sites[1].total_nframe is None
    assert back.sites[2].size == 2**64 - 1
    assert back.attrs["test_attr"] == "new"
    assert all(type(frame) is tuple for s in back.sites for frame in s.frames)


def test_full_snapshot_round_trips_block_arrays(tmp_path) -> None:
    snap = make_full(1000)
    ff.write_snapshot(str(tmp_path / "full.plh"), snap)
    back = ff.read_snapshot(str(tmp_path / "full.plh"))
    assert back == snap
    assert back.block_sites.typecode == "I"
    assert back.block_sizes.typecode == "Q"


def test_full_snapshot_accepts_other_array_typecodes_and_lists() -> None:
    snap = make_full(10)
    expected = loads(dumps(snap))
    snap.block_sites = list(snap.block_sites)
    snap.block_sizes = array("L", snap.block_sizes)
    assert loads(dumps(snap)) == expected


def test_block_values_of_every_width_round_trip() -> None:
    snap = make_aggregated(sites=[RawSite(0, (), None, 1, 1)] * 70000)
    snap.block_sites = array("I", [0, 255, 256, 65535, 65536, 69999])
    snap.block_sizes = array("Q", [0, 255, 2**16, 2**32, 2**64 - 1, 7])
    assert loads(dumps(snap)) == snap


def test_full_snapshot_with_no_blocks_stays_full() -> None:
    snap = make_aggregated(block_sites=array("I"), block_sizes=array("Q"))
    back = loads(dumps(snap))
    assert back.is_full and len(back.block_sites) == 0


def test_empty_snapshot_round_trips() -> None:
    snap = RawSnapshot(traceback_limit=1, sites=[])
    assert loads(dumps(snap)) == snap


def test_unicode_and_surrogate_escaped_filenames_round_trip() -> None:
    odd = os.fsdecode(b"/tmp/\xff\xfe-latin1.py")  # lone surrogates
    names = ["/home/zoë/日本語.py", odd, "", "a\x00b", "\ud800"]
    sites = [RawSite(0, ((n, i),), 1, 1, 1) for i, n in enumerate(names)]
    snap = make_aggregated(sites=sites, tags={7: odd})
    assert loads(dumps(snap)) == snap


def test_negative_and_zero_numbers_round_trip() -> None:
    sites = [RawSite(-(2**63), (("f", -1), ("f", 0)), 0, 0, 0, 0, 2**63 - 1)]
    snap = make_aggregated(sites=sites, traceback_limit=-5, timestamp=-0.5)
    assert loads(dumps(snap)) == snap


def test_special_timestamps_round_trip() -> None:
    assert loads(dumps(make_aggregated(timestamp=math.inf))).timestamp == math.inf
    assert math.isnan(loads(dumps(make_aggregated(timestamp=math.nan))).timestamp)


def test_attrs_round_trip_exactly() -> None:
    attrs = {
        "test_attr": "new",
        "int": 2**70,
        "float": 0.1,
        "neg_zero": -0.0,
        "list": [[], {}, [1, [2, [3]]]],
        "surrogate": "\udcff",
        "unicode": "ℵ",
        "": None,
    }
    back = loads(dumps(make_aggregated(attrs=attrs)))
    assert back.attrs == attrs
    assert list(back.attrs) == list(attrs)
    assert math.copysign(1, back.attrs["neg_zero"]) == -1


def test_frames_and_strings_are_interned() -> None:
    tb = tuple((f"/very/long/path/to/some/module_{i}.py", i) for i in range(50))
    sites = [RawSite(d, tb, 50, 1, 1, 0, d) for d in range(200)]
    size = len(dumps(make_aggregated(sites=sites, attrs={})))
    single = len(dumps(make_aggregated(sites=sites[:1], attrs={})))
    assert size < single + 2000


def test_write_to_file_object_leaves_it_open() -> None:
    buf = io.BytesIO()
    ff.write_snapshot(buf, make_aggregated())
    assert not buf.closed
    buf.seek(0)
    assert ff.read_snapshot(buf) == make_aggregated()


def test_read_from_file_object_at_an_offset() -> None:
    data = b"junk" + dumps(make_aggregated())
    buf = io.BytesIO(data)
    buf.seek(4)
    assert ff.read_snapshot(buf) == make_aggregated()


# --------------------------------------------------------------------------
# Invalid input on write
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        {"x": {1, 2}},
        {"x": (1, 2)},
        {"x": b"bytes"},
        {"x": object()},
        {"x": {1: "int key"}},
        {"x": [1, {"y": 1j}]},
        {"x": ff.FileFormatError},
    ],
)
def test_non_json_attrs_are_refused_with_type_error(tmp_path, attrs) -> None:
    path = tmp_path / "x.plh"
    with pytest.raises(TypeError, match="attrs"):
        ff.write_snapshot(path, make_aggregated(attrs=attrs))
    assert not path.exists()


def test_circular_attrs_are_refused() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError, match="deeper"):
        dumps(make_aggregated(attrs={"loop": loop}))


def test_non_str_attr_names_are_refused() -> None:
    with pytest.raises(TypeError, match="key"):
        dumps(make_aggregated(attrs={1: "x"}))


@pytest.mark.parametrize(
    "overrides",
    [
        {"sites": [RawSite(0, (), None, -1, 0)]},
        {"sites": [RawSite(0, (), None, 0, 2**64)]},
        {"sites": [RawSite(2**63, (), None, 0, 0)]},
        {"sites": [RawSite(0, (("f", 2**63),), None, 0, 0)]},
        {"pid": -1},
        {"sample_bytes": 2**64},
        {"block_sites": array("I", [4]), "block_sizes": array("Q", [1])},
        {"block_sites": array("I", [0]), "block_sizes": array("Q", [])},
        {"block_sites": array("I", [0]), "block_sizes": None},
        {"block_sites": [-1], "block_sizes": [1]},
    ],
)
def test_out_of_range_values_are_refused_with_value_error(overrides) -> None:
    with pytest.raises(ValueError):
        dumps(make_aggregated(**overrides))


def test_non_int_header_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="sample_bytes"):
        dumps(make_aggregated(sample_bytes=1.5))
    with pytest.raises(TypeError, match="traceback_limit"):
        dumps(make_aggregated(traceback_limit=None))


def test_non_str_filename_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps(make_aggregated(sites=[RawSite(0, ((b"f", 1),), None, 1, 1)]))


# --------------------------------------------------------------------------
# Timelines
# --------------------------------------------------------------------------


def series(n: int) -> List[RawSnapshot]:
    return [make_aggregated(timestamp=1000.0 + i, lost_blocks=i) for i in range(n)]


def test_timeline_append_then_read_and_iterate(tmp_path) -> None:
    path = tmp_path / "t.plht"
    snaps = series(5)
    with ff.TimelineWriter(path) as writer:
        for snap in snaps:
            writer.append(snap)
            # flushed after each append: readable while the writer is open
            assert ff.read_timeline(path)[-1] == snap
    assert writer.closed
    assert ff.read_timeline(path) == snaps
    assert list(ff.iter_timeline(path)) == snaps
    assert ff.read_any(path) == snaps


def test_timeline_entries_share_repeated_tables_and_decode_changed_ones() -> None:
    first = make_aggregated(timestamp=1.0)
    same = make_aggregated(timestamp=2.0)  # same sites, other figures
    same.sites = [site._replace(count=site.count + 1) for site in same.sites]
    moved = make_aggregated(timestamp=3.0)  # same frames, another order
    moved.sites = list(reversed(moved.sites))
    renamed = make_aggregated(timestamp=4.0)  # a new file name
    renamed.sites = [
        site._replace(frames=(("/new.py", 1),) + site.frames) for site in renamed.sites
    ]
    snaps = [first, same, moved, renamed, same]
    data = timeline_bytes(snaps)
    for read in (ff.read_timeline, lambda src: list(ff.iter_timeline(src))):
        entries = read(io.BytesIO(data))
        assert entries == snaps
        tbs = [[site.frames for site in entry.sites] for entry in entries]
        # a repeated table: the very same traceback objects
        assert all(map(lambda a, b: a is b, tbs[0], tbs[1]))
        # the same frames in another table: equal values, decoded anew
        assert tbs[2] == list(reversed(tbs[0]))
        assert tbs[2][-1] is not tbs[0][0]
        assert tbs[4][0] is not tbs[1][0] and tbs[4] == tbs[1]


def test_a_timeline_compresses_a_table_repeated_from_the_entry_before_once(
    monkeypatch,
) -> None:
    first = make_aggregated(timestamp=1.0)
    same = make_aggregated(timestamp=2.0)  # same tables, other figures
    same.sites = [site._replace(count=site.count + 1) for site in same.sites]
    renamed = make_aggregated(timestamp=3.0)  # a new file name: new tables
    renamed.sites = [
        site._replace(frames=(("/new.py", 1),) + site.frames) for site in renamed.sites
    ]
    snaps = [first, same, same, renamed]
    # Entry by entry as a lone writer would encode each, nothing reused.
    alone = ff._file_header(ff.KIND_TIMELINE) + b"".join(map(ff._encode_entry, snaps))
    compress = zlib.compress
    calls = []
    monkeypatch.setattr(
        ff.zlib, "compress", lambda *a, **k: calls.append(1) or compress(*a, **k)
    )
    buf = io.BytesIO()
    writer = ff.TimelineWriter(buf)
    per_entry = []
    for snap in snaps:
        before = len(calls)
        writer.append(snap)
        per_entry.append(len(calls) - before)
    assert buf.getvalue() == alone
    assert per_entry[1] < per_entry[0] and per_entry[2] < per_entry[0]
    assert per_entry[3] > per_entry[2]
    assert ff.read_timeline(io.BytesIO(buf.getvalue())) == snaps


def test_timeline_entries_read_as_columns_are_the_same_snapshots() -> None:
    first = make_aggregated(timestamp=1.0)
    same = make_aggregated(timestamp=2.0)  # same sites, other figures
    same.sites = [site._replace(count=site.count + 1) for site in same.sites]
    moved = make_aggregated(timestamp=3.0)  # same frames, another order
    moved.sites = list(reversed(moved.sites))
    fewer = make_aggregated(timestamp=4.0)  # a prefix of the sites
    fewer.sites = fewer.sites[:-1]
    snaps = [first, same, moved, same, fewer, first]
    entries = list(ff.iter_timeline(io.BytesIO(timeline_bytes(snaps)), columns=True))
    assert [entry.to_snapshot() for entry in entries] == snaps
    for entry, snap in zip(entries, snaps):
        assert len(entry.traceback_index) == len(entry.sizes) == len(snap.sites)
        assert list(entry.sizes) == [site.size for site in snap.sites]
    # A column stored as in the previous entry is the previous one's values;
    # a changed one is decoded anew.
    assert entries[1].traceback_index is entries[0].traceback_index
    assert entries[1].tracebacks is entries[0].tracebacks
    assert list(entries[2].traceback_index) != list(entries[0].traceback_index)
    assert entries[4].traceback_index is not entries[3].traceback_index


def test_empty_timeline_has_no_entries(tmp_path) -> None:
    path = tmp_path / "t.plht"
    ff.TimelineWriter(path).close()
    assert ff.read_timeline(path) == []
    assert list(ff.iter_timeline(path)) == []


def test_timeline_mode_a_appends_and_creates(tmp_path) -> None:
    path = tmp_path / "t.plht"
    snaps = series(4)
    with ff.TimelineWriter(path, mode="a") as writer:  # creates
        writer.append(snaps[0])
    for snap in snaps[1:]:
        with ff.TimelineWriter(path, "a") as writer:
            writer.append(snap)
    assert ff.read_timeline(path) == snaps
    with ff.TimelineWriter(path, "w") as writer:
        writer.append(snaps[3])
    assert ff.read_timeline(path) == snaps[3:]


def test_timeline_mode_a_drops_a_truncated_last_entry(tmp_path) -> None:
    path = tmp_path / "t.plht"
    data = timeline_bytes(series(3))
    path.write_bytes(data[:-5])
    with ff.TimelineWriter(path, "a") as writer:
        writer.append(series(4)[3])
    assert ff.read_timeline(path) == series(4)[:2] + series(4)[3:]


def test_timeline_mode_a_refuses_a_snapshot_file(tmp_path) -> None:
    path = tmp_path / "s.plh"
    ff.write_snapshot(path, make_aggregated())
    before = path.read_bytes()
    with pytest.raises(ff.FileFormatError, match="snapshot file"):
        ff.TimelineWriter(path, "a")
    assert path.read_bytes() == before


def test_timeline_writer_rejects_bad_mode_and_closed_append(tmp_path) -> None:
    with pytest.raises(ValueError):
        ff.TimelineWriter(tmp_path / "t", mode="r")
    writer = ff.TimelineWriter(tmp_path / "t")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.append(make_aggregated())


def test_timeline_writer_on_file_object_leaves_it_open() -> None:
    buf = io.BytesIO()
    with ff.TimelineWriter(buf) as writer:
        writer.append(make_aggregated())
    assert not buf.closed
    assert ff.read_timeline(io.BytesIO(buf.getvalue())) == [make_aggregated()]


def test_timeline_can_hold_full_snapshots() -> None:
    snaps = [make_full(20, seed=i) for i in range(3)]
    assert ff.read_timeline(io.BytesIO(timeline_bytes(snaps))) == snaps


def test_read_snapshot_refuses_a_timeline_and_vice_versa(tmp_path) -> None:
    timeline = timeline_bytes(series(2))
    with pytest.raises(ff.FileFormatError, match="read_timeline"):
        ff.read_snapshot(io.BytesIO(timeline))
    snapshot = dumps(make_aggregated())
    with pytest.raises(ff.FileFormatError, match="read_snapshot"):
        ff.read_timeline(io.BytesIO(snapshot))
    with pytest.raises(ff.FileFormatError, match="read_snapshot"):
        list(ff.iter_timeline(io.BytesIO(snapshot)))
    assert ff.read_any(io.BytesIO(snapshot)) == [make_aggregated()]


def test_truncated_timeline_tail_handling() -> None:
    snaps = series(3)
    data = timeline_bytes(snaps)
    last_start = len(timeline_bytes(snaps[:2]))
    for cut in range(last_start + 1, len(data)):
        truncated = data[:cut]
        with pytest.raises(ff.FileFormatError, match="allow_truncated_tail"):
            ff.read_timeline(io.BytesIO(truncated))
        got = []
        with pytest.raises(ff.FileFormatError, match="truncated"):
            for snap in ff.iter_timeline(io.BytesIO(truncated)):
                got.append(snap)
        assert got == snaps[:2]
        tail = ff.iter_timeline(io.BytesIO(truncated), allow_truncated_tail=True)
        assert list(tail) == snaps[:2]


def test_allow_truncated_tail_does_not_hide_corruption() -> None:
    data = bytearray(timeline_bytes(series(3)))
    data[-1] ^= 0xFF  # the last entry is complete but corrupt
    stream = ff.iter_timeline(io.BytesIO(bytes(data)), allow_truncated_tail=True)
    with pytest.raises(ff.FileFormatError, match="CRC"):
        list(stream)


def test_iter_timeline_streams_one_entry_at_a_time() -> None:
    class Counting(io.BytesIO):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.max_pos = 0

        def read(self, n: int = -1) -> bytes:
            out = super().read(n)
            self.max_pos = max(self.max_pos, self.tell())
            return out

    data = timeline_bytes(series(3))
    src = Counting(data)
    first = next(ff.iter_timeline(src))
    assert first == series(1)[0]
    assert src.max_pos < len(data)


# --------------------------------------------------------------------------
# Corruption classes
# --------------------------------------------------------------------------


def test_empty_file_is_rejected() -> None:
    assert_format_error(b"", "empty")


def test_bad_magic_is_rejected() -> None:
    assert_format_error(b"GIF89a" + bytes(20), "not a pyleakhunt file")
    assert_format_error(b'{"json": 1}', "not a pyleakhunt file")


def test_truncated_file_header_is_rejected() -> None:
    data = dumps(make_aggregated())
    for cut in range(1, 16):
        assert_format_error(data[:cut], "header")


def test_newer_version_is_rejected_with_upgrade_hint() -> None:
    data = bytearray(dumps(make_aggregated()))
    data[8:10] = struct.pack("<H", ff.FORMAT_VERSION + 1)
    assert_format_error(bytes(data), "version", "upgrade")
    data[8:10] = b"\0\0"
    assert_format_error(bytes(data), "version")


def test_a_version_1_file_reads_with_every_low_unknown(tmp_path) -> None:
    # Version 1 had each site's peak where version 2 has its low: a peak
    # read as a floor would be above the site's size.
    data = bytearray(dumps(make_aggregated()))
    data[8:10] = struct.pack("<H", 1)
    snap = loads(bytes(data))
    assert [site.low for site in snap.sites] == [0, 0, 0, 0]
    want = [site._replace(low=0) for site in make_aggregated().sites]
    assert snap.sites == want
    path = tmp_path / "old.plh"
    with ff.TimelineWriter(str(path)) as writer:
        writer.append(make_aggregated())
    old = bytearray(path.read_bytes())
    old[8:10] = struct.pack("<H", 1)
    path.write_bytes(bytes(old))
    assert [s.low for s in ff.read_timeline(str(path))[0].sites] == [0, 0, 0, 0]
    with pytest.raises(ff.FileFormatError, match="version 1 timeline"):
        ff.TimelineWriter(str(path), mode="a")


def test_unknown_file_kind_is_rejected() -> None:
    data = bytearray(dumps(make_aggregated()))
    data[10] = ord("X")
    assert_format_error(bytes(data), "kind")


def test_truncated_snapshot_file_is_rejected() -> None:
    data = dumps(make_full(30))
    for cut in range(16, len(data), 7):
        assert_format_error(data[:cut], "truncated")


def test_bad_entry_marker_is_rejected() -> None:
    data = bytearray(dumps(make_aggregated()))
    data[16:20] = b"XXXX"
    assert_format_error(bytes(data), "marker", "offset 16")


def test_checksum_mismatch_is_rejected() -> None:
    data = bytearray(dumps(make_aggregated()))
    data[40] ^= 1
    assert_format_error(bytes(data), "CRC")


def test_trailing_data_after_snapshot_is_rejected() -> None:
    assert_format_error(dumps(make_aggregated()) + b"\0", "trailing")


def test_huge_entry_length_fails_fast_without_allocating(tmp_path) -> None:
    header = dumps(make_aggregated())[:16]
    for length in (2**39, 2**60, 2**64 - 1):
        path = tmp_path / "huge.plht"
        path.write_bytes(header + ENTRY_HEADER.pack(b"SNAP", length, 0) + b"x" * 10)
        # unbuffered: a naive f.read(length) would try to allocate `length`
        with open(path, "rb", buffering=0) as f:
            with pytest.raises(ff.FileFormatError):
                ff.read_any(f)


def test_huge_section_length_is_rejected() -> None:
    _h, (payload,) = split_file(dumps(make_aggregated()))
    sections = split_payload(payload)
    bad = bytearray(build_payload(sections))
    bad[2:10] = struct.pack("<Q", 2**62)
    assert_format_error(file_from_payload(bytes(bad)), "stored length")


def file_from_payload(payload: bytes, kind: bytes = b"S") -> bytes:
    header = FILE_HEADER.pack(ff.MAGIC, ff.FORMAT_VERSION, kind[0])
    return build_file(header, [payload])


def test_unknown_required_section_is_rejected() -> None:
    contents = decoded_sections(make_aggregated())
    contents[0x42] = b"future"
    assert_format_error(file_from_sections(contents), "unknown required section")


def test_unknown_optional_section_is_skipped() -> None:
    contents = decoded_sections(make_aggregated())
    contents[0x80] = b"future extension"
    contents[0xFF] = b""
    assert loads(file_from_sections(contents)) == make_aggregated()


def test_uncompressed_sections_are_accepted() -> None:
    contents = decoded_sections(make_full(40))
    assert loads(file_from_sections(contents)) == make_full(40)


def test_longer_meta_section_is_accepted() -> None:
    contents = decoded_sections(make_aggregated())
    contents[META_ID] += b"future fields"
    assert loads(file_from_sections(contents)) == make_aggregated()


def test_duplicate_section_is_rejected() -> None:
    _h, (payload,) = split_file(dumps(make_aggregated()))
    sections = split_payload(payload)
    bad = build_payload(sections + sections[1:2])
    assert_format_error(file_from_payload(bad), "duplicate section")


def test_missing_meta_section_is_rejected() -> None:
    contents = decoded_sections(make_aggregated())
    del contents[META_ID]
    assert_format_error(file_from_sections(contents), "missing META")


def test_unknown_section_flags_are_rejected() -> None:
    _h, (payload,) = split_file(dumps(make_aggregated()))
    sections = [(s, f | 0x10, r, d) for s, f, r, d in split_payload(payload)]
    assert_format_error(file_from_payload(build_payload(sections)), "flags")


def test_lying_decompressed_length_is_rejected() -> None:
    _h, (payload,) = split_file(dumps(make_full(500)))
    sections = split_payload(payload)
    index = next(i for i, s in enumerate(sections) if s[0] == BLOCKS)
    sid, flags, raw_len, data = sections[index]
    assert flags & 1
    for fake, message in [
        (raw_len - 1, "more than the declared"),
        (raw_len + 1, "truncated"),
        (0, "more than the declared"),
        (2**30, "impossible"),
        (2**63, "exceeds the limit"),
    ]:
        sections[index] = (sid, flags, fake, data)
        bad = file_from_payload(build_payload(sections))
        assert_format_error(bad, message)


def test_corrupt_zlib_stream_is_rejected() -> None:
    _h, (payload,) = split_file(dumps(make_full(500)))
    sections = split_payload(payload)
    index = next(i for i, s in enumerate(sections) if s[0] == BLOCKS)
    sid, flags, raw_len, data = sections[index]
    sections[index] = (sid, flags, raw_len, data[:2] + b"\xff" * (len(data) - 2))
    assert_format_error(file_from_payload(build_payload(sections)), "zlib")
    sections[index] = (sid, flags, raw_len, data + b"garbage")
    assert_format_error(file_from_payload(build_payload(sections)), "garbage")


def test_zlib_bomb_is_bounded() -> None:
    bomb = zlib.compress(bytes(50_000_000), 9)  # ~50 kB expanding to 50 MB
    contents = decoded_sections(make_aggregated())
    payload = build_payload(
        [(sid, 0, len(c), c) for sid, c in contents.items() if sid != ATTRS]
        + [(ATTRS, 1, 1000, bomb)]
    )
    tracemalloc.start()
    try:
        assert_format_error(file_from_payload(payload), "more than the declared")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_count_of_2_to_the_60_sites_fails_fast() -> None:
    contents = decoded_sections(make_aggregated())
    contents[SITES] = struct.pack("<Q", 2**60) + contents[SITES][8:]
    tracemalloc.start()
    start = time.process_time()  # CPU time: other processes do not count
    try:
        assert_format_error(file_from_sections(contents), "site count", "limit")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < 0.5
    assert peak < 1_000_000


@pytest.mark.parametrize(
    "sid, count",
    [(STRINGS, 10**6), (FRAMES, 10**6), (TRACEBACKS, 10**6), (TAGS, 10**6)],
)
def test_count_larger_than_the_data_is_rejected(sid, count) -> None:
    contents = decoded_sections(make_aggregated())
    contents[sid] = struct.pack("<Q", count) + contents[sid][8:]
    assert_format_error(file_from_sections(contents), "count")


def test_huge_block_count_is_rejected() -> None:
    contents = decoded_sections(make_full(10))
    meta = bytearray(contents[META_ID])
    meta[48:56] = struct.pack("<Q", 2**40)
    contents[META_ID] = bytes(meta)
    assert_format_error(file_from_sections(contents), "block count")
    meta[48:56] = struct.pack("<Q", 10**6)
    contents[META_ID] = bytes(meta)
    assert_format_error(file_from_sections(contents), "BLOCKS")


def test_invalid_column_width_is_rejected() -> None:
    contents = decoded_sections(make_aggregated())
    sites = bytearray(contents[SITES])
    sites[8] = 3  # width byte of the first column
    contents[SITES] = bytes(sites)
    assert_format_error(file_from_sections(contents), "width")


def test_out_of_range_indexes_are_rejected() -> None:
    snap = make_full(10)
    contents = decoded_sections(snap)
    # the block-site column: width 1, then 10 site indexes (< 4)
    blocks = bytearray(contents[BLOCKS])
    blocks[1] = 4
    contents[BLOCKS] = bytes(blocks)
    assert_format_error(file_from_sections(contents), "block sites", "out of range")

    contents = decoded_sections(snap)
    frames = bytearray(contents[FRAMES])
    frames[9] = 200  # filename index of the first frame
    contents[FRAMES] = bytes(frames)
    assert_format_error(file_from_sections(contents), "frame filenames")


def test_invalid_utf8_string_is_rejected() -> None:
    contents = decoded_sections(
        make_aggregated(sites=[RawSite(0, (("ab", 1),), 1, 1, 1)])
    )
    strings = contents[STRINGS]
    contents[STRINGS] = strings[:-2] + b"\xff\xfe"
    assert_format_error(file_from_sections(contents), "UTF-8")


def test_invalid_attrs_json_is_rejected() -> None:
    contents = decoded_sections(make_aggregated())
    for bad, message in [
        (b"{not json", "JSON"),
        (b"[1, 2]", "not an object"),
        (b"\xff", "JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b'{"a":' + b"[" * 150 + b"]" * 150 + b"}", "deeper"),
    ]:
        contents[ATTRS] = bad
        assert_format_error(file_from_sections(contents), message)


def test_blocks_must_match_the_full_flag() -> None:
    contents = decoded_sections(make_full(5))
    del contents[BLOCKS]
    assert_format_error(file_from_sections(contents), "without BLOCKS")
    contents = decoded_sections(make_aggregated())
    contents[BLOCKS] = b"\x01\x01"
    assert_format_error(file_from_sections(contents), "aggregated")


def test_unexpected_bytes_at_end_of_a_section_are_rejected() -> None:
    contents = decoded_sections(make_aggregated())
    contents[SITES] += b"\0"
    assert_format_error(file_from_sections(contents), "unexpected bytes")


def test_error_messages_give_section_and_offset() -> None:
    contents = decoded_sections(make_aggregated())
    contents[SITES] = struct.pack("<Q", 2**60) + contents[SITES][8:]
    error = assert_format_error(file_from_sections(contents))
    message = str(error)
    assert "entry 0 at offset 16" in message
    assert "section SITES at offset" in message


# --------------------------------------------------------------------------
# Fuzzing
# --------------------------------------------------------------------------


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    op = rnd.randrange(7)
    if not buf:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(20)))
    pos = rnd.randrange(len(buf))
    if op == 0:  # bit flips
        for _ in range(rnd.randrange(1, 4)):
            p = rnd.randrange(len(buf))
            buf[p] ^= 1 << rnd.randrange(8)
    elif op == 1:  # truncation
        del buf[pos:]
    elif op == 2:  # random insertion
        buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 9)))
    elif op == 3:  # deletion
        del buf[pos : pos + rnd.randrange(1, 9)]
    elif op == 4:  # huge length-like field
        value = rnd.choice([2**60, 2**64 - 1, 2**32, 2**31 - 1, 0, 10**9])
        buf[pos : pos + 8] = struct.pack("<Q", value)
    elif op == 5:  # set a byte
        buf[pos] = rnd.choice([0, 1, 2, 3, 4, 8, 0x7F, 0x80, 0xFF])
    else:  # duplicate a range
        end = min(len(buf), pos + rnd.randrange(1, 64))
        buf[pos:pos] = buf[pos:end]
    return bytes(buf)


def _mutate_structurally(rnd: random.Random, data: bytes) -> bytes:
    """Mutate decoded section content or section headers, fixing the CRCs.

    Random bytes almost never get past the CRC-32; this reaches the decoders.
    """
    header, payloads = split_file(data)
    which = rnd.randrange(len(payloads))
    sections = split_payload(payloads[which])
    i = rnd.randrange(len(sections))
    sid, flags, raw_len, stored = sections[i]
    if rnd.random() < 0.2:  # lie in the section header
        choice = rnd.randrange(3)
        if choice == 0:
            raw_len = rnd.choice([0, 1, raw_len - 1, raw_len + 1, 2**62, 2**64 - 1])
        elif choice == 1:
            flags = rnd.choice([0, 1, 2, 0xFF])
        else:
            sid = rnd.choice([0, 9, 0x7F, 0x80, META_ID, BLOCKS, ATTRS])
        sections[i] = (sid, flags, max(0, raw_len), stored)
    else:
        content = zlib.decompress(stored) if flags & 1 else stored
        content = _mutate(rnd, content)
        if rnd.random() < 0.5:
            sections[i] = (sid, 1, len(content), zlib.compress(content, 1))
        else:
            sections[i] = (sid, 0, len(content), content)
    payloads[which] = build_payload(sections)
    return build_file(header, payloads)


def _check_loads_or_format_error(data: bytes, case: str) -> None:
    try:
        snaps = ff.read_any(io.BytesIO(data))
    except ff.FileFormatError:
        pass
    except Exception as exc:  # pragma: no cover - reported as a failure
        pytest.fail(f"{case}: {type(exc).__name__}: {exc}")
    else:
        for snap in snaps:
            # Whatever loads is a valid snapshot: it can be written again.
            again = dumps(snap)
            assert dumps(loads(again)) == again, case
    try:
        list(ff.iter_timeline(io.BytesIO(data), allow_truncated_tail=True))
    except ff.FileFormatError:
        pass
    except Exception as exc:  # pragma: no cover - reported as a failure
        pytest.fail(f"{case} (iter_timeline): {type(exc).__name__}: {exc}")


def test_fuzzed_files_load_or_raise_file_format_error() -> None:
    seeds = [
        dumps(make_aggregated()),
        dumps(make_full(300)),
        dumps(make_aggregated(attrs={}, tags={})),
        timeline_bytes([make_aggregated(), make_full(20), make_aggregated()]),
    ]
    rnd = random.Random(20240601)
    # CPU time: wall time on a loaded machine is not what this bounds (under
    # ASan, 1.6 s of CPU took 9.4 s of wall time beside other jobs).
    start = time.process_time()
    cases = 0
    for _round in range(600):
        for n, seed in enumerate(seeds):
            mutated = _mutate(rnd, seed)
            if rnd.random() < 0.3:
                mutated = _mutate(rnd, mutated)
            _check_loads_or_format_error(mutated, f"raw mutation of seed {n}")
            structural = _mutate_structurally(rnd, seed)
            _check_loads_or_format_error(structural, f"structural, seed {n}")
            cases += 2
    assert cases >= 4000
    assert time.process_time() - start < 8


# --------------------------------------------------------------------------
# tracemalloc pickles
# --------------------------------------------------------------------------


def _allocate() -> list:
    return [bytearray(100 + i) for i in range(50)]


def _make_tracemalloc_pickle(path) -> tracemalloc.Snapshot:
    tracemalloc.start(5)
    try:
        keep = [_allocate() for _ in range(3)]
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    del keep
    snapshot.dump(str(path))
    return snapshot


def test_read_snapshot_refuses_a_tracemalloc_pickle(tmp_path) -> None:
    path = tmp_path / "snap.pickle"
    _make_tracemalloc_pickle(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pickle warning: nothing unpickled
        with pytest.raises(ff.FileFormatError) as info:
            ff.read_snapshot(path)
    assert str(info.value) == (
        "this looks like a tracemalloc pickle; use "
        "pyleakhunt.fileformat.import_tracemalloc_pickle(path) on a trusted file"
    )
    with pytest.raises(ff.FileFormatError, match="import_tracemalloc_pickle"):
        ff.read_timeline(path)


def test_import_tracemalloc_pickle_warns_and_converts(tmp_path) -> None:
    path = tmp_path / "snap.pickle"
    original = _make_tracemalloc_pickle(path)
    with pytest.warns(ff.PickleImportWarning, match="execute"):
        snap = ff.import_tracemalloc_pickle(path)

    traces = original.traces._traces
    assert snap.is_full
    assert snap.traceback_limit == original.traceback_limit == 5
    assert len(snap.block_sites) == len(traces)
    assert list(snap.block_sizes) == [t[1] for t in traces]
    assert sum(s.count for s in snap.sites) == len(traces)
    assert sum(s.size for s in snap.sites) == sum(t[1] for t in traces)
    for trace, site_index in zip(traces, snap.block_sites):
        site = snap.sites[site_index]
        assert (site.domain, site.frames, site.total_nframe) == (
            trace[0],
            trace[2],
            trace[3],
        )
    keys = {(s.domain, s.frames, s.total_nframe) for s in snap.sites}
    assert len(keys) == len(snap.sites)  # identical traces were grouped
    assert len(snap.sites) < len(traces)
    # the allocation site of _allocate() holds the 150 bytearrays
    here = [s for s in snap.sites if s.frames[0][0] == __file__]
    assert max(s.count for s in here) >= 150
    # and the result can be saved in the safe format
    assert loads(dumps(snap)) == snap


def test_import_tracemalloc_pickle_refuses_foreign_classes(tmp_path) -> None:
    target = tmp_path / "should-not-exist"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(target),))

    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(Evil(), protocol=4))
    with pytest.warns(ff.PickleImportWarning):
        with pytest.raises(ff.FileFormatError, match="refusing"):
            ff.import_tracemalloc_pickle(path)
    assert not target.exists()


def test_import_tracemalloc_pickle_rejects_garbage(tmp_path) -> None:
    path = tmp_path / "bad.pickle"
    path.write_bytes(b"\x80\x04garbage")
    with pytest.warns(ff.PickleImportWarning):
        with pytest.raises(ff.FileFormatError):
            ff.import_tracemalloc_pickle(path)


# --------------------------------------------------------------------------
# Size and speed sanity
# --------------------------------------------------------------------------


def test_large_full_snapshot_is_compact_and_fast() -> None:
    n = 300_000
    rnd = random.Random(3)
    snap = make_full(0)
    snap.block_sites = array("I", [b % 4 for b in rnd.randbytes(n)])
    snap.block_sizes = array("Q", [16 * (b % 64 + 1) for b in rnd.randbytes(n)])
    start = time.process_time()  # CPU time: other processes do not count
    data = dumps(snap)
    back = loads(data)
    elapsed = time.process_time() - start
    assert back == snap
    assert len(data) < n * 2  # versus 12 bytes per block uncompressed
    assert elapsed < 1.0 or sys.gettrace() is not None
