"""The target's own offsets: _Py_DebugOffsets at the start of _PyRuntime
(CPython 3.13+).

Two kinds of tests.  The synthetic ones hand the scanner a memory image
that holds only a table, so they run on every Python (the scanner reads
any supported version, whatever runs it).  The others patch the table in
a real core of the Python running the tests, and need 3.13+.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from census_victims import clean_env, patch_core, run_cli
from test_census_bad_input import assert_one_line_error

from pyleakhunt.census import _scan, census_core, open_core

#: Where the synthetic table is put.
RUNTIME = 0x7F0000001000
#: PY_VERSION_HEX of a final release 3.<minor>.<micro>.
FINAL = 0xF0

needs_table = pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="_Py_DebugOffsets exists from CPython 3.13; this Python has none",
)


def hexversion(minor: int, micro: int, level: int = FINAL) -> int:
    return (3 << 24) | (minor << 16) | (micro << 8) | level


def table(
    minor: int,
    *,
    cookie: bytes = b"xdebugpy",
    version: int = 0,
    free_threaded: int = 0,
    values: dict = None,
) -> bytes:
    """A _Py_DebugOffsets of 3.<minor> that gives the row's offsets, except
    those in *values*."""
    layout = _scan.debug_map(minor)
    data = bytearray(layout["table_size"])
    data[0:8] = cookie
    struct.pack_into("<Q", data, layout["version"], version or hexversion(minor, 2))
    struct.pack_into("<Q", data, layout["free_threaded"], free_threaded)
    for name, entry in layout.items():
        if isinstance(entry, tuple):
            position, row_value = entry
            value = (values or {}).get(name, row_value)
            struct.pack_into("<Q", data, position, value)
    return bytes(data)


def image(minor: int, data: bytes, runtime: int = RUNTIME) -> _scan.Image:
    return _scan.Image([(RUNTIME, data, _scan.SEG_WRITABLE)], minor, runtime, 0, {})


# --------------------------------------------------------------------------
# Synthetic tables: every Python


@pytest.mark.parametrize("minor", [13, 14, 15])
def test_the_offsets_the_table_gives_replace_the_rows(minor):
    changed = {"tuple_items": 40, "interp_next": 7000, "tstate_frame": 96}
    target = image(minor, table(minor, values=changed)).target()
    offsets = target["debug_offsets"]
    assert {name: offsets[name] for name in changed} == changed
    assert target["hexversion"] == hexversion(minor, 2)
    # every field of the version's table was read, not just the changed
    expected = {n for n, e in _scan.debug_map(minor).items() if isinstance(e, tuple)}
    assert set(offsets) == expected


def test_fields_added_to_the_table_later_are_read_where_they_exist():
    assert "set_table" not in image(13, table(13)).target()["debug_offsets"]
    assert "set_table" in image(14, table(14)).target()["debug_offsets"]
    assert "heap_cached_keys" in image(15, table(15)).target()["debug_offsets"]


def test_no_table_is_read_before_3_13():
    target = image(12, b"\0" * 4096).target()
    assert target["debug_offsets"] == {}
    assert target["hexversion"] == 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"cookie": b"xdebugpz"}, 'cookie "xdebugpy"'),
        ({"version": hexversion(12, 1)}, "say Python 3.12.1, not the 3.14"),
        ({"version": hexversion(14, 0, 0xB4)}, "pre-release of Python 3.14"),
        ({"free_threaded": 1}, "free-threaded build"),
        ({"values": {"interp_gc": 1 << 40}}, "interp_gc = 1099511627776, not a"),
    ],
)
def test_a_table_that_does_not_match_is_refused_with_one_sentence(kwargs, words):
    with pytest.raises(ValueError) as caught:
        image(14, table(14, **kwargs))
    message = str(caught.value)
    assert words in message
    assert "\n" not in message


def test_a_runtime_outside_the_image_is_refused():
    with pytest.raises(ValueError, match="_PyRuntime is not in the memory image"):
        image(14, table(14), runtime=RUNTIME + (1 << 20))


@pytest.mark.parametrize(
    "minor, micro, collector",
    [
        (14, 0, "incremental"),
        (14, 4, "incremental"),
        (14, 5, "generational"),
        (14, 10, "generational"),
        (13, 0, "generational"),
        (15, 0, "generational"),
    ],
)
def test_the_collector_is_decided_by_the_targets_patch_release(minor, micro, collector):
    data = table(minor, version=hexversion(minor, micro))
    assert image(minor, data).target()["collector"] == collector


# --------------------------------------------------------------------------
# The table of a real core


def _patched_core(core: str, tmp_path, field: str, data: bytes) -> str:
    """A copy of *core* with *data* written over one field of its table."""
    layout = _scan.debug_map(sys.version_info.minor)
    position = 0 if field == "cookie" else layout[field]
    position = position[0] if isinstance(position, tuple) else position
    with open_core(core) as session:
        runtime = session.image.interpreter.runtime
    return patch_core(core, str(tmp_path / f"{field}.core"), {runtime + position: data})


@needs_table
def test_a_core_says_its_version_and_offsets(core_census):
    runtime = core_census.runtime
    assert runtime["hexversion"] == sys.hexversion
    offsets = runtime["debug_offsets"]
    assert {"runtime_interp_head", "interp_gc", "tstate_frame", "tuple_items"} <= set(
        offsets
    )
    assert runtime["collector"] in ("generational", "incremental")


@needs_table
def test_an_offset_changed_in_the_cores_table_is_followed(victim_core, tmp_path):
    """The census reads the target's table, not the row: an interpreter
    whose table puts the gc state elsewhere is walked there (here, in
    the wrong place, so the census refuses the core)."""
    changed = _patched_core(victim_core, tmp_path, "tuple_items", struct.pack("<Q", 48))
    with open_core(changed) as session:
        assert session.scan.target()["debug_offsets"]["tuple_items"] == 48
    moved = _patched_core(victim_core, tmp_path, "interp_gc", struct.pack("<Q", 8))
    result = run_cli(moved, "--no-holders")
    assert_one_line_error(result, 3, "the gc lists do not hold Python objects")


@needs_table
def test_a_core_whose_cookie_is_damaged_is_refused(victim_core, tmp_path):
    damaged = _patched_core(victim_core, tmp_path, "cookie", b"XDEBUGPY")
    assert_one_line_error(run_cli(damaged), 3, 'cookie "xdebugpy"')


@needs_table
def test_a_core_whose_table_is_of_another_version_is_refused(victim_core, tmp_path):
    other = hexversion(sys.version_info.minor - 1, 4)
    patched = _patched_core(victim_core, tmp_path, "version", struct.pack("<Q", other))
    minor = sys.version_info.minor
    assert_one_line_error(
        run_cli(patched), 3, f"say Python 3.{minor - 1}.4, not the 3.{minor}"
    )


@needs_table
def test_a_census_of_a_core_reports_the_runtime_in_json(victim_core):
    census = census_core(victim_core, holders=0)
    assert census.to_dict()["runtime"]["hexversion"] == sys.hexversion


#: A process that damages its own _Py_DebugOffsets cookie (nothing in
#: CPython reads it but out-of-process tools), says so, and waits.
_DAMAGED_COOKIE = """
import ctypes, sys
runtime = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
ctypes.memmove(runtime, b"XDEBUGPY", 8)
print("ready", flush=True)
sys.stdin.read()
"""


@needs_table
def test_a_live_process_whose_table_is_damaged_is_refused_with_exit_4():
    process = subprocess.Popen(
        [sys.executable, "-c", _DAMAGED_COOKIE],
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        result = run_cli("--pid", str(process.pid), "--no-holders")
        assert_one_line_error(result, 4, 'cookie "xdebugpy"')
        assert process.poll() is None, "the process is left running"
    finally:
        process.stdin.close()
        process.wait(timeout=30)
