"""The gc lists, as the target has them: the generational collector
(3.10-3.13, 3.14.5+, 3.15) and the incremental one of 3.14.0-3.14.4, and a
core taken while a collection ran.

A real core of the Python running the tests is patched: a mark on one gc
link, the collecting flag, or (on 3.14) the patch release in the target's
_Py_DebugOffsets.
"""

from __future__ import annotations

import struct
import sys

import pytest
from census_victims import patch_core, read_core

from pyleakhunt.census import _scan, census_core, open_core

COLLECTION_WARNING = "a garbage collection was running"


def _first_list_with_objects(core: str, heads) -> int:
    """The head of a gc list that holds objects (its _gc_next is not
    itself)."""
    for head in heads[:3]:
        (next_,) = struct.unpack("<Q", read_core(core, head, 8))
        if next_ & ~1 != head:
            return head
    raise AssertionError("every gc list is empty")


def _marked(core: str, tmp_path, extra=None):
    """A copy of *core* with bit 0 set in the first link of a gc list."""
    base = census_core(core, holders=0)
    head = _first_list_with_objects(core, base.runtime["gc_heads"])
    (next_,) = struct.unpack("<Q", read_core(core, head, 8))
    patches = {head: struct.pack("<Q", next_ | 1), **(extra or {})}
    return base, patch_core(core, str(tmp_path / "marked.core"), patches)


def test_the_lists_are_walked_in_the_targets_gc_state(core_census):
    heads = core_census.runtime["gc_heads"]
    assert len(heads) == 4 and all(heads)
    # three lists side by side (struct gc_generation: 24 bytes each)
    assert heads[1] - heads[0] == heads[2] - heads[1] == 24
    assert core_census.runtime["collector"] == "generational"
    assert not any(COLLECTION_WARNING in w for w in core_census.warnings)


def test_a_marked_link_of_a_generational_target_means_a_collection_ran(
    victim_core, tmp_path
):
    """Bit 0 of _gc_next is set by the generational collector only while
    it collects: the census still walks the list (the bit is no part of
    the address), and warns."""
    base, marked = _marked(victim_core, tmp_path)
    census = census_core(marked, holders=0)
    assert census.stats["marked_links"] == 1
    assert census.stats["gc_objects"] == base.stats["gc_objects"]
    assert census.stats["broken_lists"] == 0
    assert any(COLLECTION_WARNING in w for w in census.warnings)


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 14),
    reason="the incremental collector shipped only in CPython 3.14.0-3.14.4; "
    "the table of another minor version cannot say 3.14",
)
def test_on_an_incremental_314_the_same_bit_is_an_old_space_and_no_mark(
    victim_core, tmp_path
):
    """The same core, saying it is 3.14.4: the bit is the incremental
    collector's old-space flag, set at all times: no warning."""
    with open_core(victim_core) as session:
        runtime = session.image.interpreter.runtime
    position = _scan.debug_map(14)["version"]
    version = (3 << 24) | (14 << 16) | (4 << 8) | 0xF0
    base, marked = _marked(
        victim_core, tmp_path, {runtime + position: struct.pack("<Q", version)}
    )
    census = census_core(marked, holders=0)
    assert census.runtime["collector"] == "incremental"
    assert census.stats["marked_links"] == 0
    assert census.stats["gc_objects"] == base.stats["gc_objects"]
    assert not any(COLLECTION_WARNING in w for w in census.warnings)


@pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="the offset of gc.collecting comes from _Py_DebugOffsets (3.13+)",
)
def test_the_collecting_flag_of_the_target_warns(victim_core, core_census, tmp_path):
    offsets = core_census.runtime["debug_offsets"]
    with open_core(victim_core) as session:
        runtime = session.image.interpreter.runtime
        (interp,) = struct.unpack(
            "<Q", session.scan.read(runtime + offsets["runtime_interp_head"], 8)
        )
    collecting = interp + offsets["interp_gc"] + offsets["gc_collecting"]
    patched = patch_core(
        victim_core, str(tmp_path / "collecting.core"), {collecting: b"\1\0\0\0"}
    )
    census = census_core(patched, holders=0)
    assert census.runtime["collecting"] is True
    assert any(COLLECTION_WARNING in w for w in census.warnings)
