"""Extensions that report their own memory with PyTraceMalloc_Track.

numpy (and any extension that manages its own buffers) tells tracemalloc
about them through ``PyTraceMalloc_Track(domain, ptr, size)``.  pyleakhunt
receives those calls by redirecting the extensions' GOT slots while it
traces (src/extension_track.c).  The test extension (tests/ext/trackext.c)
is compiled here with the running Python's compiler and headers, under a
fresh module name for each test that must import it for the first time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Tuple

import pytest

import pyleakhunt
from pyleakhunt import _core

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ext" / "trackext.c"
DOMAIN = 4242  # the test extension's own domain
NUMPY_DOMAIN = 389047  # numpy's, as tracemalloc shows it

INFO = _core._ext_track_info()
pytestmark = pytest.mark.skipif(
    not INFO["supported"], reason=f"not supported here: {INFO['reason']}"
)

#: How each copy of the test extension is linked.  "lazy" calls through
#: PLT slots bound on first use; "now" is built with -fno-plt and full
#: RELRO, so its slots are GLOB_DAT entries on read-only pages.
LINK_FLAGS = {
    "lazy": ["-Wl,-z,lazy"],
    "now": ["-fno-plt", "-Wl,-z,now", "-Wl,-z,relro"],
}


def _compile(directory: Path, name: str, mode: str) -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = directory / f"{name}{suffix}"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"no C compiler ({compiler[0]}) to build the test extension")
    include = sysconfig.get_paths()["include"]
    command = compiler + [
        "-shared",
        "-fPIC",
        "-O1",
        "-Wall",
        f"-I{include}",
        f"-DLH_MODNAME={name}",
        *LINK_FLAGS[mode],
        "-o",
        str(target),
        str(SOURCE),
        "-pthread",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot build the test extension: {done.stderr}")
    return target


@pytest.fixture(scope="session")
def build_ext(tmp_path_factory) -> Callable[[str, str], Path]:
    """Build (once) a copy of the test extension named *name*."""
    directory = tmp_path_factory.mktemp("trackext")
    built: Dict[str, Path] = {}

    def build(name: str, mode: str = "lazy") -> Path:
        if name not in built:
            built[name] = _compile(directory, name, mode)
        return built[name]

    return build


def _import(path: Path) -> ModuleType:
    """Import an extension from *path*: dlopen() happens here."""
    name = path.name.split(".")[0]
    assert name not in sys.modules, "each test imports a copy of its own"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def _domain_stats(snapshot: pyleakhunt.Snapshot, domain: int) -> List:
    only = snapshot.filter_traces([pyleakhunt.DomainFilter(True, domain)])
    return only.statistics("lineno")


def _line_of(marker: str) -> int:
    """The line of this file that holds *marker*."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


# ---- blocks reported by an extension ---------------------------------------


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_extension_imported_after_start_is_recorded_with_its_line(build_ext, mode):
    path = build_ext(f"_lh_after_{mode}", mode)
    pyleakhunt.start(1)
    ext = _import(path)  # after start(): found through our dlopen()
    blocks = [ext.alloc(DOMAIN, 100_000) for _ in range(5)]  # MARK-after
    stats = _domain_stats(pyleakhunt.take_snapshot(), DOMAIN)
    assert [(s.size, s.count) for s in stats] == [(500_000, 5)]
    frame = stats[0].traceback[0]
    assert frame.filename == __file__
    assert frame.lineno == _line_of("MARK-after")

    for block in blocks:
        ext.release(DOMAIN, block)
    assert _domain_stats(pyleakhunt.take_snapshot(), DOMAIN) == []
    # Aggregated snapshots see them too, and per-domain statistics.
    ext.alloc(DOMAIN, 777)
    aggregated = pyleakhunt.take_snapshot(traces=False)
    assert sum(s.size for s in _domain_stats(aggregated, DOMAIN)) == 777


def test_extension_loaded_before_start_is_recorded(build_ext):
    ext = _import(build_ext("_lh_before"))
    pyleakhunt.start(1)
    block = ext.alloc(DOMAIN, 300_000)
    stats = _domain_stats(pyleakhunt.take_snapshot(), DOMAIN)
    assert [(s.size, s.count) for s in stats] == [(300_000, 1)]
    ext.release(DOMAIN, block)
    assert _domain_stats(pyleakhunt.take_snapshot(), DOMAIN) == []


def test_track_in_domain_zero_joins_the_python_heap(build_ext):
    ext = _import(build_ext("_lh_domain0"))
    pyleakhunt.start(1)
    before = pyleakhunt.get_traced_memory()[0]
    block = ext.alloc(0, 250_000)
    assert pyleakhunt.get_traced_memory()[0] - before >= 250_000
    ext.release(0, block)
    assert pyleakhunt.get_traced_memory()[0] - before < 250_000


def test_a_raw_block_also_reported_is_counted_once(build_ext):
    """numpy 2.5 takes memory with PyMem_RawMalloc and reports it too."""
    ext = _import(build_ext("_lh_raw"))
    pyleakhunt.start(1)
    first = pyleakhunt.take_snapshot()
    blocks = [ext.raw_alloc(DOMAIN, 200_000) for _ in range(3)]  # MARK-raw
    second = pyleakhunt.take_snapshot()
    growth = sum(d.size_diff for d in second.compare_to(first, "filename"))
    assert 600_000 <= growth < 610_000  # not 1,200,000
    assert _domain_stats(second, DOMAIN) == []
    mine = [
        s
        for s in _domain_stats(second, 0)
        if s.traceback[0].lineno == _line_of("MARK-raw")
    ]
    # The three blocks, and the list comprehension's own objects.
    assert len(mine) == 1 and 600_000 <= mine[0].size < 602_000
    for block in blocks:
        ext.raw_release(DOMAIN, block)
    third = pyleakhunt.take_snapshot()
    assert sum(d.size_diff for d in third.compare_to(first, "filename")) < 10_000


def test_track_without_the_gil_from_threads(build_ext):
    ext = _import(build_ext("_lh_threads"))
    pyleakhunt.start(1)
    stop = threading.Event()
    churn: List[object] = []

    def allocate_with_the_gil() -> None:
        # The lock's fast side, racing the threads without the GIL.
        while not stop.is_set():
            churn.append([str(i) for i in range(50)])
            del churn[:-10]

    other = threading.Thread(target=allocate_with_the_gil)
    other.start()
    try:
        kept, failures = ext.track_in_threads(DOMAIN, 1000, 4, 4000)
    finally:
        stop.set()
        other.join()
    assert failures == 0
    assert len(kept) == 4 * 2000
    stats = _domain_stats(pyleakhunt.take_snapshot(), DOMAIN)
    assert [(s.size, s.count) for s in stats] == [(8000 * 1000, 8000)]
    # No GIL, no stack to read: tracemalloc's "<unknown>" frame.
    assert stats[0].traceback[0].filename == "<unknown>"
    for block in kept:
        ext.release(DOMAIN, block)
    assert _domain_stats(pyleakhunt.take_snapshot(), DOMAIN) == []


# ---- restoring the slots, and the stdlib tracemalloc -----------------------


def _slots() -> Dict[Tuple[str, str, int], int]:
    return {
        (obj, sym, slot): value for obj, sym, slot, value in _core._ext_track_slots()
    }


def _page_permissions(address: int) -> str:
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if start <= address < end:
                return perms
    raise AssertionError(f"{address:#x} is not mapped")


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_stop_restores_every_slot(build_ext, mode):
    path = build_ext(f"_lh_restore_{mode}", mode)
    hooks = set(INFO["hooks"].values())
    before = _slots()
    assert not hooks & set(before.values())
    assert any(sym == "dlopen" for _, sym, _ in before), "interpreter's dlopen"

    pyleakhunt.start(1)
    _import(path)
    during = _slots()
    new = {key: value for key, value in during.items() if key not in before}
    assert {sym for _, sym, _ in new} == {
        "PyTraceMalloc_Track",
        "PyTraceMalloc_Untrack",
    }
    assert all(value == INFO["hooks"][sym] for (_, sym, _), value in during.items())
    pyleakhunt.stop()

    after = _slots()
    assert {key: after[key] for key in before} == before
    assert not hooks & set(after.values())
    if mode == "now":
        # Full RELRO: the slots' pages are read-only again.
        for _, _, slot in new:
            assert _page_permissions(slot).startswith("r-")
    assert not _core._ext_track_info()["active"]


def _scans() -> int:
    return _core._ext_track_info()["objects_scanned"]


def _assert_recorded(ext: ModuleType, size: int) -> None:
    """A block *ext* reports is in the snapshot, alone in its domain."""
    block = ext.alloc(DOMAIN, size)
    stats = _domain_stats(pyleakhunt.take_snapshot(), DOMAIN)
    ext.release(DOMAIN, block)
    assert [(s.size, s.count) for s in stats] == [(size, 1)]


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_a_restart_redirects_every_slot_without_reading_the_objects_again(
    build_ext, mode
):
    # The pytest plugin starts and stops the tracer around every test:
    # reading every loaded object's relocations each time cost about a
    # millisecond a test.
    ext = _import(build_ext(f"_lh_restart_{mode}", mode))
    before = _slots()
    pyleakhunt.start(1)
    pyleakhunt.stop()
    scanned = _scans()

    pyleakhunt.start(1)
    assert _scans() == scanned, "a restart read the objects again"
    assert all(value == INFO["hooks"][sym] for (_, sym, _), value in _slots().items())
    assert _core._ext_track_info()["patched_slots"] >= 3
    _assert_recorded(ext, 123_456)
    pyleakhunt.stop()

    after = _slots()
    assert {key: after[key] for key in before} == before
    assert _core._ext_track_info()["patched_slots"] == 0
    if mode == "now":
        # Full RELRO: the extension's slots' pages are read-only again.
        name = f"_lh_restart_{mode}" + sysconfig.get_config_var("EXT_SUFFIX")
        for obj, _, slot in before:
            if obj.endswith(name):
                assert _page_permissions(slot).startswith("r-")


def test_an_extension_imported_between_stop_and_start_is_redirected(build_ext):
    pyleakhunt.start(1)
    pyleakhunt.stop()
    ext = _import(build_ext("_lh_between"))  # while nothing traces
    scanned = _scans()
    pyleakhunt.start(1)
    assert _scans() > scanned, "the new object was not read"
    _assert_recorded(ext, 54_321)
    pyleakhunt.stop()
    assert not set(INFO["hooks"].values()) & set(_slots().values())


def test_an_object_unloaded_between_stop_and_start_makes_start_read_all_again(
    build_ext,
):
    # After an unload, another object may sit where the unloaded one was:
    # the slots found earlier can no longer be trusted.
    import ctypes

    ext = _import(build_ext("_lh_unload_kept"))
    pyleakhunt.start(1)
    pyleakhunt.stop()
    library = ctypes.CDLL(str(build_ext("_lh_unloaded")))
    _ctypes = sys.modules["_ctypes"]
    _ctypes.dlclose(library._handle)
    scanned = _scans()
    pyleakhunt.start(1)
    assert _scans() - scanned >= 2, "start() did not read every object again"
    _assert_recorded(ext, 99_999)
    pyleakhunt.stop()
    assert not set(INFO["hooks"].values()) & set(_slots().values())


def test_stdlib_tracemalloc_receives_the_calls_after_stop(build_ext):
    pyleakhunt.start(1)
    ext = _import(build_ext("_lh_stdlib"))
    pyleakhunt.stop()
    tracemalloc.start()
    try:
        block = ext.alloc(DOMAIN, 123_456)
        snapshot = tracemalloc.take_snapshot()
        ext.release(DOMAIN, block)
    finally:
        tracemalloc.stop()
    only = snapshot.filter_traces([tracemalloc.DomainFilter(True, DOMAIN)])
    assert [s.size for s in only.statistics("filename")] == [123_456]


def test_both_tracers_receive_the_calls_while_both_trace(build_ext):
    ext = _import(build_ext("_lh_both"))
    tracemalloc.start()  # first: pyleakhunt then wraps it (design.md)
    pyleakhunt.start(1)
    try:
        block = ext.alloc(DOMAIN, 65_000)
        theirs = tracemalloc.take_snapshot()
        ours = pyleakhunt.take_snapshot()
        ext.release(DOMAIN, block)
    finally:
        pyleakhunt.stop()
        tracemalloc.stop()
    assert [s.size for s in _domain_stats(ours, DOMAIN)] == [65_000]
    only = theirs.filter_traces([tracemalloc.DomainFilter(True, DOMAIN)])
    assert [s.size for s in only.statistics("filename")] == [65_000]


def test_calls_return_what_tracemalloc_says_when_not_tracing(build_ext):
    ext = _import(build_ext("_lh_results"))
    pyleakhunt.start(1)
    assert ext.track(DOMAIN, 0x1000, 10) == 0  # recorded by us
    assert ext.untrack(DOMAIN, 0x1000) == 0
    pyleakhunt.stop()
    assert ext.track(DOMAIN, 0x1000, 10) == -2  # nobody traces


# ---- numpy -----------------------------------------------------------------

NUMPY_SCRIPT = textwrap.dedent(
    """
    import sys, tracemalloc
    import pyleakhunt

    def growth(tracer, import_first):
        if import_first:
            import numpy
        tracer.start()
        import numpy as np
        first = tracer.take_snapshot()
        kept = [np.ones(50_000) for _ in range(60)]
        second = tracer.take_snapshot()
        total = sum(d.size_diff for d in second.compare_to(first, "filename"))
        only = [tracer.DomainFilter(True, {domain})]
        arrays = second.filter_traces(only).compare_to(
            first.filter_traces(only), "filename")
        tracer.stop()
        del kept
        return total, sum(d.count_diff for d in arrays), np.__version__

    import_first = sys.argv[1] == "before"
    ours = growth(pyleakhunt, import_first)  # the first import, if after
    theirs = growth(tracemalloc, True)
    print(ours[0], ours[1], theirs[0], theirs[1], ours[2])
    """
).format(domain=NUMPY_DOMAIN)


@pytest.mark.parametrize("numpy_import", ["before", "after"])
def test_numpy_arrays_grow_as_under_tracemalloc(numpy_import):
    if importlib.util.find_spec("numpy") is None:
        pytest.skip(
            "numpy is not installed for this Python (the test extra installs "
            "it: numpy 2.2 on 3.10, 2.4 on 3.11, 2.5 on 3.12 and later)"
        )
    done = subprocess.run(
        [sys.executable, "-c", NUMPY_SCRIPT, numpy_import],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(pyleakhunt.__file__).parents[1])},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ours, our_arrays, theirs, their_arrays, version = done.stdout.split()
    ours, theirs = int(ours), int(theirs)
    assert theirs >= 60 * 400_000, f"numpy {version}: {theirs}"
    assert abs(ours - theirs) <= 0.02 * theirs, f"numpy {version}"
    assert int(our_arrays) == int(their_arrays) == 60, f"numpy {version}"
