"""calloc through the tracer: zeroed memory, recorded at the calling line
with its whole size, in every domain, on both sides of the size up to
which a calloc goes through the malloc hook (512 bytes, hooks.c)."""

import ctypes
import sys

import pytest

import pyleakhunt

DOMAINS = {
    "raw": ("PyMem_RawMalloc", "PyMem_RawCalloc", "PyMem_RawFree"),
    "mem": ("PyMem_Malloc", "PyMem_Calloc", "PyMem_Free"),
    "obj": ("PyObject_Malloc", "PyObject_Calloc", "PyObject_Free"),
}

# (nelem, elsize): small ones, the largest small one, and larger ones.
SHAPES = [(3, 40), (1, 1), (512, 1), (1, 513), (7, 100), (1000, 10)]


def functions(domain):
    """malloc, calloc and free of `domain`, called with the GIL held (a
    handle of our own, so that no other test's argtypes change)."""
    api = ctypes.PyDLL(None)
    malloc, calloc, free = (getattr(api, name) for name in DOMAINS[domain])
    malloc.restype = calloc.restype = ctypes.c_void_p
    malloc.argtypes = [ctypes.c_size_t]
    calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    free.restype = None
    free.argtypes = [ctypes.c_void_p]
    return malloc, calloc, free


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize("nelem, elsize", SHAPES)
def test_a_calloc_gives_zeroed_memory_where_a_dirty_block_was_freed(
    tracing, domain, nelem, elsize
):
    malloc, calloc, free = functions(domain)
    size = nelem * elsize
    for _ in range(20):
        dirty = malloc(size)
        ctypes.memset(dirty, 0xAB, size)
        free(dirty)  # the allocator's next block of this size, most likely
        block = calloc(nelem, elsize)
        assert block
        assert ctypes.string_at(block, size) == bytes(size)
        free(block)


def sizes_at(snapshot, line):
    """The sizes of the blocks recorded at `line` of this file (ctypes
    makes a small object or two there as well)."""
    return [
        trace.size
        for trace in snapshot.traces
        if trace.traceback[0].filename == __file__ and trace.traceback[0].lineno == line
    ]


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize("nelem, elsize", [(3, 40), (512, 1), (7, 100), (1000, 10)])
def test_a_calloc_is_recorded_at_its_line_with_its_whole_size(
    tracing, domain, nelem, elsize
):
    malloc, calloc, free = functions(domain)
    line = sys._getframe().f_lineno + 1
    block = calloc(nelem, elsize)
    try:
        held = sizes_at(pyleakhunt.take_snapshot(), line)
    finally:
        free(block)
    assert held.count(nelem * elsize) == 1
    assert nelem * elsize not in sizes_at(pyleakhunt.take_snapshot(), line)


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_a_calloc_too_large_to_count_fails_and_records_nothing(tracing, domain):
    malloc, calloc, free = functions(domain)
    line = sys._getframe().f_lineno + 1
    assert calloc(sys.maxsize, 16) is None
    assert all(size < 1000 for size in sizes_at(pyleakhunt.take_snapshot(), line))
