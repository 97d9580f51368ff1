"""How start() and stop() swap CPython's allocators (src/allocswap.c).

Other threads call them while the swap happens (RAW without the GIL, MEM and
OBJ from subinterpreters with a GIL of their own), so each field is written
with one atomic store, in CPython's own struct, and RAW's ctx never changes.
The crashes this prevents are tested in
tests/integration/test_safety_start_stop.py and test_safety_subinterpreters.py.
"""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest

import pyleakhunt
from pyleakhunt import _core

PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ = 0, 1, 2


class Allocator(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_void_p)
        for name in ("ctx", "malloc", "calloc", "realloc", "free")
    ]


def raw_allocator() -> tuple:
    get = ctypes.pythonapi.PyMem_GetAllocator
    get.argtypes = (ctypes.c_int, ctypes.POINTER(Allocator))
    get.restype = None
    allocator = Allocator()
    get(PYMEM_DOMAIN_RAW, ctypes.byref(allocator))
    return tuple(getattr(allocator, name) for name, _ in Allocator._fields_)


@pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="the RAW struct is found on Linux x86-64 only; elsewhere before "
    "3.12 start() falls back to PyMem_SetAllocator",
)
def test_the_raw_allocator_is_written_in_place_on_linux_x86_64():
    assert _core._swap_in_place(PYMEM_DOMAIN_RAW) is True


def test_mem_and_obj_are_written_in_place_where_subinterpreters_have_a_gil():
    # From 3.12 an isolated subinterpreter's threads call them under a GIL
    # of their own; before, one GIL serializes every caller.
    in_place = sys.version_info >= (3, 12)
    assert _core._swap_in_place(PYMEM_DOMAIN_MEM) is in_place
    assert _core._swap_in_place(PYMEM_DOMAIN_OBJ) is in_place


def test_an_unknown_domain_is_refused():
    with pytest.raises(ValueError, match="no allocator domain 3"):
        _core._swap_in_place(3)


@pytest.mark.parametrize("sample_bytes", [None, 4096])
def test_start_keeps_the_raw_ctx_and_stop_restores_the_functions(sample_bytes):
    assert not pyleakhunt.is_tracing()
    before = raw_allocator()
    pyleakhunt.start(1, sample_bytes=sample_bytes)
    try:
        during = raw_allocator()
    finally:
        pyleakhunt.stop()
    assert during[0] == before[0]  # ctx, which the RAW hooks ignore
    assert all(ours != theirs for ours, theirs in zip(during[1:], before[1:]))
    assert raw_allocator() == before


def test_raw_allocations_are_traced_after_an_in_place_swap():
    malloc = ctypes.pythonapi.PyMem_RawMalloc
    malloc.argtypes, malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
    free = ctypes.pythonapi.PyMem_RawFree
    free.argtypes, free.restype = (ctypes.c_void_p,), None

    def blocks_of_54321():
        return [t for t in pyleakhunt.take_snapshot().traces if t.size == 54321]

    pyleakhunt.start(1)
    try:
        block = malloc(54321)
        assert len(blocks_of_54321()) == 1
        free(block)
        assert blocks_of_54321() == []
    finally:
        pyleakhunt.stop()
