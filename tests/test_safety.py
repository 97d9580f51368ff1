"""The tracer never hurts the program it watches.

Threads (with and without the GIL), start/stop storms, fork, the tracer's
own memory running out, interpreter shutdown, living next to the stdlib
tracemalloc, and the C API for foreign allocations.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output.
"""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
import zlib

import pytest

import pyleakhunt
from pyleakhunt import DomainFilter, _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNKNOWN = (("<unknown>", 0),)
HAS_FORK = hasattr(os, "fork")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def run_python(code, *, timeout=60, args=(), extra_path=()):
    """Run *code* in a child interpreter that imports this checkout."""
    env = dict(os.environ)
    path = [ROOT, *extra_path]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.pop("PYTHONTRACEMALLOC", None)
    command = [sys.executable, "-X", "faulthandler", *args, "-c"]
    command.append(textwrap.dedent(code))
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"child interpreter still running after {timeout} s (deadlock?)\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        )


def assert_clean(proc, returncode=0, stdout_has=("OK",), stderr_empty=True):
    """The child exited with *returncode* without a crash or a traceback."""
    report = (
        f"return code {proc.returncode}\n--- stdout\n{proc.stdout}\n"
        f"--- stderr\n{proc.stderr}"
    )
    assert "Fatal Python error" not in proc.stderr, report
    assert "Traceback" not in proc.stderr, report
    assert "Exception ignored" not in proc.stderr, report
    assert proc.returncode == returncode, report
    for text in stdout_has:
        assert text in proc.stdout, report
    if stderr_empty:
        assert proc.stderr.strip() == "", report


# Declarations shared by the child scripts: the RAW allocator called through
# ctypes.CDLL, which releases the GIL around the call, and through
# ctypes.pythonapi, which keeps it.
CHILD_PRELUDE = """
import ctypes, os, sys, threading, time
import pyleakhunt
from pyleakhunt import _core

_libc_view = ctypes.CDLL(None)
raw_malloc_nogil = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(
    ("PyMem_RawMalloc", _libc_view))
raw_free_nogil = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(
    ("PyMem_RawFree", _libc_view))
raw_malloc_gil = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(
    ("PyMem_RawMalloc", ctypes.pythonapi))

UNKNOWN = (("<unknown>", 0),)

def frames(trace):
    return tuple((f.filename, f.lineno) for f in trace.traceback)

def check_snapshot_consistent(slack=256 * 1024):
    # The snapshot is one copy taken under the lock: per-site and per-block
    # figures must agree exactly, and get_traced_memory() must be close.
    before = pyleakhunt.get_traced_memory()[0]
    snap = pyleakhunt.take_snapshot()
    traces = snap.traces
    block_total = sum(t.size for t in traces)
    site_total = sum(s.size for s in snap.sites)
    assert block_total == site_total, (block_total, site_total)
    assert sum(s.count for s in snap.sites) == len(traces)
    assert abs(block_total - before) <= slack, (block_total, before)
    assert before < 1 << 40, before  # no underflow of the size_t total
    return snap

def wait_child(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "timeout"
"""


def child(body):
    return CHILD_PRELUDE + textwrap.dedent(body)


# In-process versions of the same ctypes functions.
_LIBC_VIEW = ctypes.CDLL(None)
raw_malloc_nogil = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(
    ("PyMem_RawMalloc", _LIBC_VIEW)
)
raw_free_nogil = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(("PyMem_RawFree", _LIBC_VIEW))
raw_malloc_gil = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(
    ("PyMem_RawMalloc", ctypes.pythonapi)
)
raw_free_gil = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)(
    ("PyMem_RawFree", ctypes.pythonapi)
)


def frames_of(trace):
    return tuple((frame.filename, frame.lineno) for frame in trace.traceback)


def traces_of_size(snapshot, size, domain=0):
    return [t for t in snapshot.traces if t.size == size and t.domain == domain]


def run_threads(targets, timeout=30):
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a worker thread is stuck"


def lineno():
    """Line number of the caller."""
    return sys._getframe(1).f_lineno


def capi(prototype):
    """Map the PyLeakHunt_CAPI struct; *prototype* is ctypes.CFUNCTYPE (calls
    release the GIL) or ctypes.PYFUNCTYPE (calls keep it)."""
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    address = get_pointer(_core._C_API, b"pyleakhunt._core._C_API")
    assert address

    uint, uintptr, size = ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t

    class API(ctypes.Structure):
        _fields_ = [
            ("version", ctypes.c_int),
            ("track", prototype(ctypes.c_int, uint, uintptr, size)),
            ("untrack", prototype(ctypes.c_int, uint, uintptr)),
            ("is_tracing", prototype(ctypes.c_int)),
        ]

    return API.from_address(address)


FAKE = 0x5A00_0000  # foreign "addresses": never dereferenced


def domain_traces(snapshot, domain):
    return [t for t in snapshot.traces if t.domain == domain]


CAPI_PROBE = r"""
#include "pyleakhunt.h"

static const PyLeakHunt_CAPI *api;

/* Fill the stack below the caller with `byte`, where the frame of the next
   function it calls will be: that function then finds this byte in any
   variable or padding it leaves uninitialised. */
__attribute__((noinline)) static void
fill_stack(int byte)
{
    volatile unsigned char area[16384];
    for (size_t i = 0; i < sizeof(area); i++) {
        area[i] = (unsigned char)byte;
    }
}

static PyObject *
probe_track(PyObject *self, PyObject *args)
{
    unsigned int domain;
    unsigned long long ptr;
    Py_ssize_t size;
    int byte = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "IKn|i", &domain, &ptr, &size, &byte)) {
        return NULL;
    }
    fill_stack(byte);
    return PyLong_FromLong(api->track(domain, (uintptr_t)ptr, (size_t)size));
}

static PyObject *
probe_untrack(PyObject *self, PyObject *args)
{
    unsigned int domain;
    unsigned long long ptr;
    int byte = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "IK|i", &domain, &ptr, &byte)) {
        return NULL;
    }
    fill_stack(byte);
    return PyLong_FromLong(api->untrack(domain, (uintptr_t)ptr));
}

/* churn(n): n PyMem_RawMalloc/PyMem_RawFree pairs and n track/untrack
   pairs in domain 9, all in C with the GIL released: the tracer's lock is
   taken back to back, the way a busy C library would. */
static PyObject *
probe_churn(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    long failures = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "n", &n)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        void *p = PyMem_RawMalloc(64 + (size_t)(i & 1023));
        if (p == NULL) {
            failures++;
            continue;
        }
        ((volatile char *)p)[0] = 1;
        uintptr_t fake = (uintptr_t)p;
        if (api->track(9, fake, 100) == -1) {
            failures++;
        }
        api->untrack(9, fake);
        PyMem_RawFree(p);
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(failures);
}

static PyObject *
probe_is_tracing(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromLong(api->is_tracing());
}

static PyMethodDef methods[] = {
    {"track", probe_track, METH_VARARGS, NULL},
    {"untrack", probe_untrack, METH_VARARGS, NULL},
    {"is_tracing", probe_is_tracing, METH_NOARGS, NULL},
    {"churn", probe_churn, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "lhcapi_probe", NULL, -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_lhcapi_probe(void)
{
    api = PyLeakHunt_Import();
    if (api == NULL) {
        PyErr_SetString(PyExc_ImportError, "PyLeakHunt_Import() failed");
        return NULL;
    }
    return PyModule_Create(&module);
}
"""


@pytest.fixture(scope="module")
def capi_probe_dir(tmp_path_factory):
    """A tiny C extension built against src/pyleakhunt.h, warnings as errors."""
    directory = tmp_path_factory.mktemp("capi_probe")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    source = directory / "lhcapi_probe.c"
    source.write_text(CAPI_PROBE)
    command = [
        *compiler,
        "-shared",
        "-fPIC",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        os.path.join(ROOT, "src"),
        "-I",
        sysconfig.get_paths()["include"],
        str(source),
        "-o",
        str(directory / ("lhcapi_probe" + suffix)),
    ]
    try:
        build = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("no C compiler")
    assert build.returncode == 0, build.stderr
    return str(directory)


# --------------------------------------------------------------------------
# 1. Threads
# --------------------------------------------------------------------------


def test_threads_allocating_while_another_thread_starts_and_stops_tracing():
    proc = run_python(
        child(
            """
            import zlib
            stop_workers = threading.Event()
            errors = []

            def python_allocs():
                try:
                    keep = []
                    while not stop_workers.is_set():
                        keep.append([i for i in range(40)])
                        keep.append({i: str(i) for i in range(15)})
                        keep.append(bytes(100))
                        keep.append(bytes(3000))  # > 512: RawMalloc in pymalloc
                        b = bytearray(16)
                        b.extend(b"x" * 5000)     # realloc
                        keep.append(b)
                        if len(keep) > 400:
                            del keep[:200]
                except BaseException as exc:
                    errors.append(repr(exc))

            def raw_allocs_without_gil():
                try:
                    while not stop_workers.is_set():
                        ptrs = [raw_malloc_nogil(1000 + i) for i in range(20)]
                        for p in ptrs:
                            raw_free_nogil(p)
                except BaseException as exc:
                    errors.append(repr(exc))

            def zlib_without_gil():
                data = zlib.compress(os.urandom(20000) * 20)
                try:
                    while not stop_workers.is_set():
                        assert len(zlib.decompress(data)) == 400000
                except BaseException as exc:
                    errors.append(repr(exc))

            workers = [threading.Thread(target=f) for f in
                       (python_allocs, python_allocs, python_allocs,
                        raw_allocs_without_gil, raw_allocs_without_gil,
                        zlib_without_gil)]
            for w in workers:
                w.start()

            def toggler():
                try:
                    deadline = time.monotonic() + 0.8
                    i = 0
                    while i < 300 or time.monotonic() < deadline:
                        i += 1
                        pyleakhunt.start(1 + i % 7)
                        if i % 3 == 0:
                            pyleakhunt.start(30)  # change the limit while tracing
                        if i % 10 == 0:
                            pyleakhunt.take_snapshot(traces=i % 20 == 0)
                            pyleakhunt.get_traced_memory()
                            pyleakhunt.get_stats()
                        if i % 25 == 0:
                            pyleakhunt.clear_traces()
                        pyleakhunt.stop()
                except BaseException as exc:
                    errors.append(repr(exc))

            t = threading.Thread(target=toggler)
            t.start()
            t.join(60)
            assert not t.is_alive(), "toggler stuck"
            stop_workers.set()
            for w in workers:
                w.join(60)
                assert not w.is_alive(), "worker stuck"
            assert not errors, errors

            # Tracing still works, exactly.
            pyleakhunt.start(1)
            p = raw_malloc_gil(777_777); line = sys._getframe().f_lineno
            snap = check_snapshot_consistent()
            found = [t for t in snap.traces if t.size == 777_777]
            assert len(found) == 1, found
            assert frames(found[0]) == (("<string>", line),), frames(found[0])
            raw_free_nogil(p)
            obj = bytes(99_999); line = sys._getframe().f_lineno
            assert pyleakhunt.get_object_traceback(obj)[-1].lineno == line
            snap = pyleakhunt.take_snapshot()
            assert not [t for t in snap.traces if t.size == 777_777]
            assert pyleakhunt.get_stats()["lost_blocks"] == 0
            pyleakhunt.stop()
            print("OK")
            """
        )
    )
    assert_clean(proc)


def test_large_objects_from_threads_are_traced_once_with_their_exact_size():
    # Objects over 512 bytes: pymalloc hands them to PyMem_RawMalloc, so the
    # RAW hook runs inside the OBJ hook; the block must be recorded once,
    # with the object's size and the Python line that created it.
    nthreads, per_thread = 4, 100
    size = sys.getsizeof(bytes(5000))
    kept = []
    lock = threading.Lock()

    def worker():
        mine = [bytes(5000) for _ in range(per_thread)]
        with lock:
            kept.extend(mine)

    line = worker.__code__.co_firstlineno + 1
    pyleakhunt.start(1)
    before = pyleakhunt.get_stats()["alloc_events"]
    run_threads([worker] * nthreads)
    assert pyleakhunt.get_stats()["alloc_events"] - before < 3 * nthreads * per_thread
    found = traces_of_size(pyleakhunt.take_snapshot(), size)
    assert len(found) == nthreads * per_thread
    assert {frames_of(t) for t in found} == {((__file__, line),)}
    assert all(pyleakhunt.get_object_traceback(obj)[-1].lineno == line for obj in kept)
    kept.clear()
    assert not traces_of_size(pyleakhunt.take_snapshot(), size)


def test_raw_allocations_made_without_the_gil_are_unknown_and_forgotten_when_freed():
    nthreads, nblocks = 4, 50
    sizes = [123_457 + 2 * i for i in range(nthreads)]
    churn_sizes = [223_457 + 2 * i for i in range(nthreads)]
    kept = [[] for _ in range(nthreads)]

    def worker(i):
        def run():
            for _ in range(nblocks):
                kept[i].append(raw_malloc_nogil(sizes[i]))
                # Churn: allocated and freed, all without the GIL.
                raw_free_nogil(raw_malloc_nogil(churn_sizes[i]))

        return run

    pyleakhunt.start(5)
    try:
        run_threads([worker(i) for i in range(nthreads)])
        assert all(p for ptrs in kept for p in ptrs)
        snap = pyleakhunt.take_snapshot()
        for i in range(nthreads):
            found = traces_of_size(snap, sizes[i])
            assert len(found) == nblocks
            assert {frames_of(t) for t in found} == {UNKNOWN}
            assert not traces_of_size(snap, churn_sizes[i])
        unknown = [s for s in snap.statistics("traceback") if frames_of(s) == UNKNOWN]
        assert len(unknown) == 1
        assert unknown[0].size >= sum(sizes) * nblocks
    finally:
        # Freed without the GIL too, from other threads.
        def free_all(i):
            return lambda: [raw_free_nogil(p) for p in kept[i]]

        run_threads([free_all(i) for i in range(nthreads)])
    snap = pyleakhunt.take_snapshot()
    for i in range(nthreads):
        assert not traces_of_size(snap, sizes[i])
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


def slow_entries():
    return pyleakhunt.get_stats()["lock_slow_entries"]


def test_the_gil_holder_takes_the_lock_without_the_slow_side():
    pyleakhunt.start(1)
    before = slow_entries()
    kept = [[i] for i in range(10_000)]
    del kept
    assert slow_entries() - before < 10


def test_raw_allocations_without_the_gil_take_the_slow_side():
    pyleakhunt.start(1)
    before = slow_entries()

    def worker():
        for _ in range(100):
            raw_free_nogil(raw_malloc_nogil(100_003))

    run_threads([worker])
    assert slow_entries() - before >= 200


def test_tables_stay_exact_while_threads_without_the_gil_storm_the_lock():
    # Thousands of slow entries a second turn the lock symmetric (the GIL
    # holder then fences) and back; no block may be lost or counted twice.
    stop = threading.Event()
    size = 100_019

    def storm():
        while not stop.is_set():
            for p in [raw_malloc_nogil(size) for _ in range(20)]:
                raw_free_nogil(p)

    pyleakhunt.start(1)
    before = slow_entries()
    threads = [threading.Thread(target=storm, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        kept = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            kept.append([bytearray(333), {"k": len(kept)}])
            if len(kept) > 5000:
                kept.clear()
        kept, line = [bytearray(4_321) for _ in range(1_000)], lineno()
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    # Enough to cross the symmetric threshold (200 a second), even under
    # ASan, where the storm managed 644 in one CI run.
    assert slow_entries() - before > 300
    snap = pyleakhunt.take_snapshot()
    assert len([t for t in snap.traces if t.size == size]) == 0
    mine = [t for t in snap.traces if frames_of(t) == ((__file__, line),)]
    assert len(mine) >= 1_000
    assert sum(s.size for s in snap.sites) == sum(t.size for t in snap.traces)
    assert pyleakhunt.get_stats()["lost_blocks"] == 0
    del kept


def test_raw_allocation_with_the_gil_gets_the_callers_traceback():
    pyleakhunt.start(1)
    p, line = raw_malloc_gil(654_321), lineno()
    try:
        found = traces_of_size(pyleakhunt.take_snapshot(), 654_321)
        assert [frames_of(t) for t in found] == [((__file__, line),)]
    finally:
        raw_free_gil(p)
    assert not traces_of_size(pyleakhunt.take_snapshot(), 654_321)


def test_raw_hooks_in_a_thread_python_never_saw_neither_wait_for_the_gil():
    # A C thread with no thread state calls PyMem_RawMalloc and
    # PyMem_RawFree while the main thread holds the GIL (PYFUNCTYPE keeps it
    # across pthread_join).  A RAW hook that took the GIL, or made a thread
    # state (PyGILState_Ensure), would deadlock here.
    proc = run_python(
        child(
            """
            import faulthandler
            faulthandler.dump_traceback_later(20, exit=True)
            libc = ctypes.CDLL(None)
            ptr_to = lambda f: ctypes.cast(f, ctypes.c_void_p).value
            create = ctypes.PYFUNCTYPE(
                ctypes.c_int, ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p,
                ctypes.c_void_p, ctypes.c_void_p)(("pthread_create", libc))
            join = ctypes.PYFUNCTYPE(
                ctypes.c_int, ctypes.c_ulong, ctypes.POINTER(ctypes.c_void_p)
            )(("pthread_join", libc))

            def in_c_thread(function, arg):
                # function(arg) as a thread's start routine, joined with
                # the GIL held; returns what it returned.
                tid, result = ctypes.c_ulong(), ctypes.c_void_p()
                assert create(ctypes.byref(tid), None, ptr_to(function), arg) == 0
                assert join(tid.value, ctypes.byref(result)) == 0
                return result.value

            pyleakhunt.start(5)
            size = 765_431
            p = in_c_thread(ctypes.pythonapi.PyMem_RawMalloc, size)
            assert p
            found = [t for t in pyleakhunt.take_snapshot().traces if t.size == size]
            assert [frames(t) for t in found] == [UNKNOWN], found
            in_c_thread(ctypes.pythonapi.PyMem_RawFree, p)
            assert not [t for t in pyleakhunt.take_snapshot().traces if t.size == size]
            assert pyleakhunt.get_stats()["lost_blocks"] == 0
            pyleakhunt.stop()
            print("OK")
            """
        ),
        timeout=60,
    )
    assert_clean(proc)


def test_zlib_windows_allocated_in_threads_without_the_gil_are_unknown():
    # inflate() allocates its 32 KiB window lazily, inside the call that
    # zlib makes with the GIL released, through PyMem_RawMalloc.
    compressed = zlib.compress(os.urandom(100_000) * 4)
    expected = zlib.decompress(compressed)[:60_000]
    objs = []
    lock = threading.Lock()

    def worker():
        d = zlib.decompressobj()
        out = d.decompress(compressed[:60_000])
        assert expected.startswith(out) and len(out) > 40_000
        with lock:
            objs.append(d)

    def unknown_windows(snapshot):
        # 32 KiB with the system zlib; at least that with any other build.
        return [
            t
            for t in snapshot.traces
            if t.domain == 0 and t.size >= 32768 and frames_of(t) == UNKNOWN
        ]

    pyleakhunt.start(1)
    baseline = len(unknown_windows(pyleakhunt.take_snapshot()))
    run_threads([worker] * 4)
    assert len(unknown_windows(pyleakhunt.take_snapshot())) == baseline + 4
    objs.clear()
    gc.collect()
    assert len(unknown_windows(pyleakhunt.take_snapshot())) == baseline


def test_zlib_and_hashlib_in_threads_give_correct_results_while_traced():
    import hashlib

    payload = os.urandom(50_000) * 40  # 2 MB
    digest = hashlib.sha256(payload).hexdigest()
    compressed = zlib.compress(payload, 6)
    errors = []

    def worker():
        try:
            for _ in range(3):
                assert hashlib.sha256(payload).hexdigest() == digest
                assert hashlib.blake2b(payload).digest()
                assert zlib.decompress(zlib.compress(payload, 1)) == payload
                assert zlib.decompress(compressed) == payload
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    pyleakhunt.start(3)
    run_threads([worker] * 4)
    assert not errors, errors
    marker, line = bytearray(77_777), lineno()
    assert pyleakhunt.get_object_traceback(marker)[-1].lineno == line
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


# --------------------------------------------------------------------------
# 2. stop() while others allocate; start/stop storms
# --------------------------------------------------------------------------


def test_stop_is_safe_while_other_threads_allocate():
    proc = run_python(
        child(
            """
            stop_workers = threading.Event()
            errors = []

            def python_allocs():
                try:
                    keep = []
                    while not stop_workers.is_set():
                        keep.append([str(i) for i in range(30)])
                        keep.append(bytes(4000))
                        if len(keep) > 300:
                            del keep[:150]
                except BaseException as exc:
                    errors.append(repr(exc))

            def raw_allocs():
                try:
                    while not stop_workers.is_set():
                        for p in [raw_malloc_nogil(700) for _ in range(50)]:
                            raw_free_nogil(p)
                except BaseException as exc:
                    errors.append(repr(exc))

            workers = [threading.Thread(target=f) for f in
                       (python_allocs, python_allocs, raw_allocs, raw_allocs)]
            for w in workers:
                w.start()
            for i in range(200):
                pyleakhunt.start(5)
                time.sleep(0.0005)   # let the others run with tracing on
                pyleakhunt.stop()
                assert not pyleakhunt.is_tracing()
                assert pyleakhunt.get_traced_memory() == (0, 0)
            stop_workers.set()
            for w in workers:
                w.join(60)
                assert not w.is_alive(), "worker stuck"
            assert not errors, errors
            pyleakhunt.start(1)
            x = bytes(12345); line = sys._getframe().f_lineno
            assert pyleakhunt.get_object_traceback(x)[-1].lineno == line
            check_snapshot_consistent()
            pyleakhunt.stop()
            print("OK")
            """
        )
    )
    assert_clean(proc)


def test_start_and_stop_while_c_code_allocates_without_the_gil(capi_probe_dir):
    proc = run_python(
        child(
            """
            import lhcapi_probe
            stop_workers = threading.Event()
            failures = []

            def c_churn():
                while not stop_workers.is_set():
                    failures.append(lhcapi_probe.churn(5000))

            workers = [threading.Thread(target=c_churn) for _ in range(3)]
            for w in workers:
                w.start()
            for i in range(300):
                pyleakhunt.start(1 + i % 4)
                if i % 10 == 0:
                    check_snapshot_consistent(slack=10**6)
                pyleakhunt.stop()
            # A last stretch of tracing with the C threads running: every
            # block they tracked, they untracked; every one they allocated,
            # they freed.
            pyleakhunt.start(1)
            time.sleep(0.1)
            stop_workers.set()
            for w in workers:
                w.join(60)
                assert not w.is_alive(), "worker stuck"
            assert not any(failures), failures
            snap = check_snapshot_consistent()
            assert not [t for t in snap.traces if t.domain == 9]
            assert not [t for t in snap.traces if frames(t) == UNKNOWN
                        and 64 <= t.size < 64 + 1024]
            assert pyleakhunt.get_stats()["lost_blocks"] == 0
            x, line = bytes(12345), sys._getframe().f_lineno
            assert pyleakhunt.get_object_traceback(x)[-1].lineno == line
            pyleakhunt.stop()
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


def test_start_stop_1000_times_in_a_row_then_tracing_still_works():
    pyleakhunt.start(1)
    pyleakhunt.take_snapshot()
    pyleakhunt.stop()
    memory_after_one = _core.get_tracemalloc_memory()
    for i in range(1000):
        pyleakhunt.start(1 + i % 5)
        assert pyleakhunt.is_tracing()
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing()
    # The tracer's own memory does not grow with the cycles.
    assert _core.get_tracemalloc_memory() == memory_after_one
    pyleakhunt.start(1)
    data, line = [bytes(200) for _ in range(500)], lineno()
    assert pyleakhunt.get_object_traceback(data[0])[-1].lineno == line
    stats = pyleakhunt.take_snapshot().statistics("lineno")
    mine = [s for s in stats if s.traceback[-1].lineno == line]
    assert mine and mine[0].count >= 500


def test_tracer_memory_does_not_drift_over_snapshot_cycles():
    for _ in range(200):
        pyleakhunt.start(1)
        pyleakhunt.take_snapshot(traces=True)
        pyleakhunt.take_snapshot(traces=False)
        pyleakhunt.stop()
    assert _core.get_tracemalloc_memory() == 0


# --------------------------------------------------------------------------
# 3. fork
# --------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
def test_forked_child_keeps_tracing_with_consistent_tables():
    proc = run_python(
        child(
            """
            import traceback
            pyleakhunt.start(5)

            class Marker:
                pass

            def parent_allocates():
                return [Marker() for _ in range(200)]

            parent_objs = parent_allocates()
            parent_tb = pyleakhunt.get_object_traceback(parent_objs[7])
            assert parent_tb is not None
            parent_line = parent_tb[-1].lineno
            big_parent = bytes(300_000)
            sys.stdout.flush()

            pid = os.fork()
            if pid == 0:
                try:
                    assert pyleakhunt.is_tracing()
                    # Objects of the parent are still known, with their site.
                    tb = pyleakhunt.get_object_traceback(parent_objs[7])
                    assert tb is not None and tb[-1].lineno == parent_line, tb
                    assert pyleakhunt.get_object_traceback(big_parent) is not None
                    snap = check_snapshot_consistent()
                    sizes = [t.size for t in snap.traces]
                    assert any(s >= 300_000 for s in sizes)
                    # New allocations in the child are traced correctly.
                    def child_allocates():
                        return bytearray(424_242)
                    obj = child_allocates(); line = sys._getframe().f_lineno
                    tb = pyleakhunt.get_object_traceback(obj)
                    assert tb[-1].lineno == child_allocates.__code__.co_firstlineno + 1
                    assert tb[-2].lineno == line
                    p = raw_malloc_gil(515_151); line = sys._getframe().f_lineno
                    found = [t for t in pyleakhunt.take_snapshot().traces
                             if t.size == 515_151]
                    assert [frames(t)[-1] for t in found] == [("<string>", line)]
                    raw_free_nogil(p)
                    check_snapshot_consistent()
                    # Stop and start again in the child.
                    pyleakhunt.stop()
                    pyleakhunt.start(1)
                    x = bytes(5000); line = sys._getframe().f_lineno
                    assert pyleakhunt.get_object_traceback(x)[-1].lineno == line
                    check_snapshot_consistent()
                    print("CHILD OK", flush=True)
                    os._exit(0)
                except BaseException:
                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(1)
            code = wait_child(pid, 30)
            assert code == 0, code
            # The parent is unaffected.
            tb = pyleakhunt.get_object_traceback(parent_objs[7])
            assert tb[-1].lineno == parent_line
            check_snapshot_consistent()
            print("OK")
            """
        )
    )
    assert_clean(proc, stdout_has=("CHILD OK", "OK"))


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
def test_fork_while_other_threads_allocate_does_not_deadlock_the_child():
    proc = run_python(
        child(
            """
            import traceback
            stop_workers = threading.Event()

            def raw_allocs():
                # Each ctypes call releases the GIL; the C loop of the next
                # test keeps the lock far busier.
                while not stop_workers.is_set():
                    for p in [raw_malloc_nogil(64 + i) for i in range(64)]:
                        raw_free_nogil(p)

            def python_allocs():
                keep = []
                while not stop_workers.is_set():
                    keep.append({i: bytes(i) for i in range(40)})
                    if len(keep) > 100:
                        del keep[:50]

            pyleakhunt.start(3)
            workers = [threading.Thread(target=f, daemon=True)
                       for f in (raw_allocs, raw_allocs, raw_allocs, python_allocs)]
            for w in workers:
                w.start()
            time.sleep(0.05)
            results = []
            for i in range(40):
                pid = os.fork()
                if pid == 0:
                    try:
                        x = [bytes(100) for _ in range(200)]
                        line = sys._getframe().f_lineno - 1
                        assert pyleakhunt.get_object_traceback(x[0])[-1].lineno == line
                        p = raw_malloc_nogil(100_001)
                        raw_free_nogil(p)
                        check_snapshot_consistent()
                        pyleakhunt.take_snapshot(traces=False)
                        os._exit(0)
                    except BaseException:
                        traceback.print_exc()
                        sys.stderr.flush()
                        os._exit(1)
                results.append(wait_child(pid, 15))
                if results[-1] != 0:
                    break
            stop_workers.set()
            for w in workers:
                w.join(30)
            assert results == [0] * 40, results
            check_snapshot_consistent()
            print("OK")
            """
        ),
        args=("-W", "ignore::DeprecationWarning"),
        timeout=120,
    )
    assert_clean(proc)


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="ASan's own allocator is not fork-safe (GCC 12's libasan): a child "
    "forked while another thread is inside malloc can hang in the sanitizer's "
    "lock, whatever the tracer does",
)
def test_fork_while_c_code_allocates_without_the_gil_does_not_deadlock_the_child(
    capi_probe_dir,
):
    # Threads that allocate in a C loop with the GIL released hold the
    # tracer's lock a good part of the time, including when the main thread
    # forks; the lock must be free in the child all the same.
    proc = run_python(
        child(
            """
            import traceback
            import lhcapi_probe
            stop_workers = threading.Event()
            failures = []

            def c_churn():
                while not stop_workers.is_set():
                    failures.append(lhcapi_probe.churn(20000))

            pyleakhunt.start(3)
            workers = [threading.Thread(target=c_churn) for _ in range(3)]
            for w in workers:
                w.start()
            time.sleep(0.05)
            results = []
            for i in range(30):
                pid = os.fork()
                if pid == 0:
                    try:
                        x = [bytes(100) for _ in range(200)]
                        line = sys._getframe().f_lineno - 1
                        assert pyleakhunt.get_object_traceback(x[0])[-1].lineno == line
                        assert lhcapi_probe.churn(1000) == 0
                        check_snapshot_consistent()
                        os._exit(0)
                    except BaseException:
                        traceback.print_exc()
                        sys.stderr.flush()
                        os._exit(1)
                results.append(wait_child(pid, 10))
                if results[-1] != 0:
                    break
            stop_workers.set()
            for w in workers:
                w.join(30)
                assert not w.is_alive()
            assert results == [0] * 30, results
            assert not any(failures), failures
            snap = check_snapshot_consistent()
            assert not [t for t in snap.traces if t.domain == 9]
            print("OK")
            """
        ),
        args=("-W", "ignore::DeprecationWarning"),
        extra_path=(capi_probe_dir,),
        timeout=120,
    )
    assert_clean(proc)


# --------------------------------------------------------------------------
# 4. The tracer's own memory runs out
# --------------------------------------------------------------------------


def fresh_function(body, name="f", params=""):
    """A function whose lines are new allocation sites."""
    namespace = {}
    source = f"def {name}({params}):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    exec(compile(source, f"<fresh {name} {id(namespace)}>", "exec"), namespace)
    return namespace[name]


def test_program_keeps_working_when_the_tracer_cannot_record_new_sites():
    pyleakhunt.start(3)
    assert pyleakhunt.get_stats()["lost_blocks"] == 0
    make = fresh_function(
        """
        data = [str(i) * 3 for i in range(20000)]
        table = {i: bytes(600) for i in range(500)}
        return data, table
        """
    )
    try:
        _core._fail_after(0)
        data, table = make()
        # The program's values are right, whatever the tracer lost.
        assert len(data) == 20000 and data[12345] == "123451234512345"
        assert sum(len(v) for v in table.values()) == 500 * 600
        lost = pyleakhunt.get_stats()["lost_blocks"]
        assert lost >= 20000, lost
        assert pyleakhunt.get_object_traceback(data[5]) is None
        try:
            pyleakhunt.take_snapshot()  # may not have the memory to copy
        except MemoryError:
            pass
    finally:
        _core._fail_after(-1)
    snap = pyleakhunt.take_snapshot()
    assert snap.lost_blocks >= lost
    assert pyleakhunt.take_snapshot(traces=False).lost_blocks >= lost
    # Recording works again, and the tables are consistent.
    obj, line = bytearray(31_313), lineno()
    assert pyleakhunt.get_object_traceback(obj)[-1].lineno == line
    current = pyleakhunt.get_traced_memory()[0]
    total = sum(t.size for t in pyleakhunt.take_snapshot().traces)
    assert abs(current - total) < 256 * 1024, (current, total)
    del data, table
    # Freeing the blocks it never recorded does not corrupt the accounting.
    current = pyleakhunt.get_traced_memory()[0]
    assert current < 1 << 40, current
    assert abs(current - sum(t.size for t in pyleakhunt.take_snapshot().traces)) < (
        256 * 1024
    )


def test_program_keeps_working_when_the_block_table_cannot_grow():
    pyleakhunt.start(1)
    grow = fresh_function(
        """
        out = []
        for i in range(n):
            out.append(bytes(20))
        return out
        """,
        params="n",
    )
    grow(5000)  # the sites and the table exist: only growing needs memory
    capacity = pyleakhunt.get_stats()["block_table_capacity"]
    try:
        _core._fail_after(0)
        blocks = grow(90000)
        assert len(blocks) == 90000
        assert all(b == bytes(20) for b in blocks[::997])
        stats = pyleakhunt.get_stats()
        assert stats["lost_blocks"] > 0
        assert stats["block_table_capacity"] == capacity
        assert stats["live_blocks"] <= capacity
    finally:
        _core._fail_after(-1)
    snap = pyleakhunt.take_snapshot()
    assert snap.lost_blocks > 0
    assert sum(s.count for s in snap.sites) == len(snap.traces)
    del blocks
    current = pyleakhunt.get_traced_memory()[0]
    assert current < 1 << 40, current
    # The table grows again once memory is back.
    more = grow(90000)
    stats = pyleakhunt.get_stats()
    assert stats["block_table_capacity"] > capacity
    assert stats["live_blocks"] >= 90000
    assert pyleakhunt.get_object_traceback(more[-1]) is not None


@pytest.mark.parametrize("successes", [1, 2, 3, 5, 8, 13, 40, 100])
def test_failures_at_any_point_leave_consistent_tables(successes):
    pyleakhunt.start(4)
    # 200 lines, 200 new sites, and loops that realloc and free.
    lines = ["out = []"]
    lines += [f"out.append([{k}] * ({k} % 9))" for k in range(200)]
    lines += [
        "for i in range(300):",
        "    out.append(str(i) + 'x')",
        "    out.append(bytearray(i % 50))",
        "del out[::3]",
        "return out",
    ]
    make = fresh_function("\n".join(lines), name=f"f{successes}")
    try:
        _core._fail_after(successes)
        values = make()
    finally:
        _core._fail_after(-1)
    assert values == make()  # the same as when nothing fails
    assert len(values) == 533
    assert pyleakhunt.get_stats()["lost_blocks"] > 0
    snap = pyleakhunt.take_snapshot()
    assert snap.lost_blocks > 0
    assert sum(s.count for s in snap.sites) == len(snap.traces)
    assert sum(s.size for s in snap.sites) == sum(t.size for t in snap.traces)
    del values
    gc.collect()
    current = pyleakhunt.get_traced_memory()[0]
    assert current < 1 << 40, current
    assert abs(current - sum(t.size for t in pyleakhunt.take_snapshot().traces)) < (
        256 * 1024
    )
    obj, line = bytes(4242), lineno()
    assert pyleakhunt.get_object_traceback(obj)[-1].lineno == line


def test_capi_track_reports_failure_when_the_tracer_is_out_of_memory():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(1)
    lost = pyleakhunt.get_stats()["lost_blocks"]
    try:
        _core._fail_after(0)
        result = api.track(5, 0x7000_0000, 4096)
    finally:
        _core._fail_after(-1)
    assert result == -1
    assert pyleakhunt.get_stats()["lost_blocks"] >= lost + 1
    snap = pyleakhunt.take_snapshot()
    assert not [t for t in snap.traces if t.domain == 5]
    assert snap.lost_blocks >= lost + 1
    assert api.untrack(5, 0x7000_0000) == 0


# --------------------------------------------------------------------------
# 5. Interpreter shutdown with tracing on
# --------------------------------------------------------------------------


SHUTDOWN_SCRIPTS = {
    "normal_exit": (
        """
        pyleakhunt.start(25)
        class C:
            pass
        data = [bytes(100) for _ in range(1000)]
        objs = [C() for _ in range(1000)]
        p = raw_malloc_nogil(5000)   # never freed
        print("OK")
        """,
        0,
    ),
    "daemon_threads_still_allocating": (
        """
        import zlib
        pyleakhunt.start(10)
        def python_allocs():
            keep = []
            while True:
                keep.append({i: str(i) * 20 for i in range(30)})
                keep.append(bytes(2000))
                if len(keep) > 200:
                    del keep[:100]
        def raw_allocs():
            while True:
                for p in [raw_malloc_nogil(4096) for _ in range(32)]:
                    raw_free_nogil(p)
        def zlib_work():
            data = zlib.compress(os.urandom(10000) * 30)
            while True:
                zlib.decompress(data)
        for f in (python_allocs, python_allocs, raw_allocs, raw_allocs, zlib_work):
            threading.Thread(target=f, daemon=True).start()
        time.sleep(0.3)
        print("OK")
        """,
        0,
    ),
    "daemon_thread_starting_and_stopping_tracing": (
        """
        def toggler():
            while True:
                pyleakhunt.start(3)
                x = [bytes(50) for _ in range(100)]
                pyleakhunt.stop()
        def raw_allocs():
            while True:
                raw_free_nogil(raw_malloc_nogil(3000))
        threading.Thread(target=toggler, daemon=True).start()
        threading.Thread(target=raw_allocs, daemon=True).start()
        time.sleep(0.3)
        print("OK")
        """,
        0,
    ),
    "sys_exit_inside_tracing": (
        """
        pyleakhunt.start(5)
        def deep(n):
            if n == 0:
                keep = [bytes(1000) for _ in range(100)]
                print("OK", flush=True)
                sys.exit(3)
            return deep(n - 1)
        deep(20)
        """,
        3,
    ),
    "os_exit_while_tracing": (
        """
        pyleakhunt.start(5)
        def raw_allocs():
            while True:
                raw_free_nogil(raw_malloc_nogil(100))
        threading.Thread(target=raw_allocs, daemon=True).start()
        data = [bytes(1000) for _ in range(100)]
        print("OK", flush=True)
        os._exit(7)
        """,
        7,
    ),
    "raise_system_exit_after_a_thread_allocated": (
        """
        pyleakhunt.start(2)
        def work():
            global data
            data = [str(i) for i in range(10000)]
        t = threading.Thread(target=work)
        t.start()
        t.join()
        print("OK", flush=True)
        raise SystemExit(0)
        """,
        0,
    ),
}


@pytest.mark.parametrize("name", sorted(SHUTDOWN_SCRIPTS))
def test_interpreter_shutdown_with_tracing_on_is_clean(name):
    body, returncode = SHUTDOWN_SCRIPTS[name]
    proc = run_python(child(body), timeout=60)
    assert_clean(proc, returncode=returncode)


@pytest.mark.parametrize("tracemalloc_too", [False, True])
def test_interpreter_shutdown_while_c_code_allocates_without_the_gil(
    capi_probe_dir, tracemalloc_too
):
    # The C threads never take the GIL back while the interpreter finalizes:
    # they keep calling the allocator (and the C API) through all of it.
    proc = run_python(
        child(
            f"""
            import lhcapi_probe, tracemalloc
            pyleakhunt.start(5)
            if {tracemalloc_too}:
                tracemalloc.start(5)   # above pyleakhunt: it stays installed
            def c_churn():
                while True:
                    lhcapi_probe.churn(10**9)
            for _ in range(3):
                threading.Thread(target=c_churn, daemon=True).start()
            data = [bytes(100) for _ in range(1000)]
            time.sleep(0.2)
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


# --------------------------------------------------------------------------
# 6. Coexistence with the stdlib tracemalloc
# --------------------------------------------------------------------------


COEXIST_PRELUDE = """
import tracemalloc

def alloc():
    return [bytearray(1000) for _ in range(200)]
ALLOC_LINE = alloc.__code__.co_firstlineno + 1

def both_see(obj):
    lh = pyleakhunt.get_object_traceback(obj)
    tm = tracemalloc.get_object_traceback(obj)
    assert lh is not None and lh[-1].lineno == ALLOC_LINE, lh
    assert tm is not None and tm[-1].lineno == ALLOC_LINE, tm

import gc, warnings
HAS_REF_TRACER = sys.version_info >= (3, 13)
# Scripts that start tracemalloc after pyleakhunt get this warning (3.13+);
# e and f check it where it is due.
warnings.filterwarnings("ignore", message="another tracer .* reference tracer")

def reuse_from_free_list():
    # As CPython's test_new_reference: the second list is the first one's
    # memory, taken back from the free list without an allocation; only
    # the reference tracer (3.13+) tells a tracer where it was made.
    gc.collect()
    obj = []
    obj = None
    obj = []
    return obj, sys._getframe().f_lineno - 1

def see_reuse(*tracers):
    obj, line = reuse_from_free_list()
    for tracer in tracers:
        tb = tracer.get_object_traceback(obj)
        assert tb is not None and tb[-1].lineno == line, (tracer, tb, line)

def ref_tracer_warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if "reference tracer" in str(w.message)]
"""

COEXIST_SCRIPTS = {
    "a_lh_tm_tmstop_lhstop": """
        pyleakhunt.start(3)
        tracemalloc.start(3)
        x = alloc()
        both_see(x[0])
        assert pyleakhunt.get_traced_memory()[0] >= 200 * 1000
        assert tracemalloc.get_traced_memory()[0] >= 200 * 1000
        assert pyleakhunt.take_snapshot().statistics("lineno")
        tracemalloc.stop()
        y = alloc()
        assert pyleakhunt.get_object_traceback(y[0])[-1].lineno == ALLOC_LINE
        check_snapshot_consistent()
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing()
        z = alloc()
        assert pyleakhunt.get_object_traceback(z[0]) is None
        print("OK")
        """,
    "b_lh_tm_lhstop_refused": """
        pyleakhunt.start(3)
        tracemalloc.start(3)
        try:
            pyleakhunt.stop()
        except RuntimeError as exc:
            message = str(exc)
        else:
            raise AssertionError("stop() under tracemalloc was not refused")
        assert "tracemalloc" in message and "first" in message, message
        # Refused: both still trace.
        assert pyleakhunt.is_tracing() and tracemalloc.is_tracing()
        x = alloc()
        both_see(x[0])
        pyleakhunt.get_traced_memory()
        tracemalloc.stop()
        y = alloc()
        assert pyleakhunt.get_object_traceback(y[0])[-1].lineno == ALLOC_LINE
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing()
        print("OK")
        """,
    "c_tm_lh_lhstop_tmstop": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        x = alloc()
        both_see(x[0])
        check_snapshot_consistent()
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing() and tracemalloc.is_tracing()
        y = alloc()
        assert tracemalloc.get_object_traceback(y[0])[-1].lineno == ALLOC_LINE
        assert pyleakhunt.get_object_traceback(y[0]) is None
        tracemalloc.stop()
        print("OK")
        """,
    "d_tm_lh_tmstop_abandoned": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        x = alloc()
        tracemalloc.stop()
        # The program keeps running normally.
        y = alloc()
        assert len(y) == 200 and bytes(y[5]) == bytes(1000)
        try:
            pyleakhunt.get_traced_memory()
        except RuntimeError as exc:
            message = str(exc)
        else:
            raise AssertionError("stale pyleakhunt tables were used")
        assert "removed" in message and "hooks" in message, message
        assert not pyleakhunt.is_tracing()
        try:
            pyleakhunt.take_snapshot()
        except RuntimeError:
            pass
        else:
            raise AssertionError("take_snapshot() worked without tracing")
        pyleakhunt.stop()   # harmless
        z = [dict(a=i) for i in range(1000)]
        # Tracing can start again.
        pyleakhunt.start(1)
        w = alloc()
        assert pyleakhunt.get_object_traceback(w[0])[-1].lineno == ALLOC_LINE
        check_snapshot_consistent()
        pyleakhunt.stop()
        print("OK")
        """,
    "d_tm_lh_tmstop_snapshot_is_the_first_call": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        tracemalloc.stop()
        y = alloc()
        try:
            pyleakhunt.take_snapshot()
        except RuntimeError as exc:
            assert "removed" in str(exc), exc
        else:
            raise AssertionError("a snapshot of stale tables was taken")
        assert not pyleakhunt.is_tracing()
        print("OK")
        """,
    "e_tm_lh_both_follow_free_list_reuse": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        if HAS_REF_TRACER:
            # pyleakhunt took the slot and forwards to tracemalloc's tracer.
            assert not ref_tracer_warnings(lambda: see_reuse(pyleakhunt, tracemalloc))
        pyleakhunt.stop()
        if HAS_REF_TRACER:
            see_reuse(tracemalloc)  # the slot went back to tracemalloc
        tracemalloc.stop()
        print("OK")
        """,
    "f_lh_tm_slot_taken_back_with_a_warning": """
        pyleakhunt.start(3)
        tracemalloc.start(3)  # takes the reference tracer slot from us
        if HAS_REF_TRACER:
            see_reuse(tracemalloc)
            found = ref_tracer_warnings(pyleakhunt.get_traced_memory)
            assert len(found) == 1, found
            assert "tracemalloc" in str(found[0].message)
            # Taken back, shared: both follow reuse, and no second warning.
            assert not ref_tracer_warnings(lambda: see_reuse(pyleakhunt, tracemalloc))
        else:
            assert not ref_tracer_warnings(pyleakhunt.get_traced_memory)
        tracemalloc.stop()  # empties the slot and gives our hooks back
        if HAS_REF_TRACER:
            ref_tracer_warnings(pyleakhunt.get_traced_memory)  # takes it again
            see_reuse(pyleakhunt)
        pyleakhunt.stop()
        print("OK")
        """,
    "exit_with_tracemalloc_above_pyleakhunt": """
        pyleakhunt.start(3)
        tracemalloc.start(3)
        x = alloc()
        both_see(x[0])
        print("OK")
        """,
    "exit_with_pyleakhunt_above_tracemalloc": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        x = alloc()
        both_see(x[0])
        print("OK")
        """,
}


@pytest.mark.parametrize("name", sorted(COEXIST_SCRIPTS))
def test_coexistence_with_stdlib_tracemalloc(name):
    proc = run_python(child(COEXIST_PRELUDE + textwrap.dedent(COEXIST_SCRIPTS[name])))
    assert_clean(proc)


# --------------------------------------------------------------------------
# 7. The C API capsule
# --------------------------------------------------------------------------


def test_capi_capsule_has_version_1_and_reports_tracing():
    api = capi(ctypes.CFUNCTYPE)
    assert api.version == 1
    assert api.is_tracing() == 0
    pyleakhunt.start(1)
    assert api.is_tracing() == 1
    pyleakhunt.stop()
    assert api.is_tracing() == 0


def test_capi_returns_minus_2_when_not_tracing():
    for prototype in (ctypes.CFUNCTYPE, ctypes.PYFUNCTYPE):
        api = capi(prototype)
        assert api.track(5, FAKE, 100) == -2
        assert api.untrack(5, FAKE) == -2
        assert api.track(0, FAKE, 100) == -2
    pyleakhunt.start(1)
    pyleakhunt.stop()
    api = capi(ctypes.CFUNCTYPE)
    assert api.track(5, FAKE, 100) == -2
    assert api.untrack(5, FAKE) == -2


def test_capi_blocks_tracked_without_the_gil_are_unknown_in_their_domain():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(5)
    for i in range(10):
        assert api.track(5, FAKE + 64 * i, 1000 + i) == 0
    snap = pyleakhunt.take_snapshot()
    traces = domain_traces(snap, 5)
    assert sorted(t.size for t in traces) == [1000 + i for i in range(10)]
    assert {frames_of(t) for t in traces} == {UNKNOWN}
    only = snap.filter_traces([DomainFilter(True, 5)])
    assert len(only.traces) == 10
    stats = only.statistics("traceback")
    assert [(s.count, s.size) for s in stats] == [(10, sum(range(1000, 1010)))]
    without = snap.filter_traces([DomainFilter(False, 5)])
    assert not domain_traces(without, 5)
    assert len(without.traces) == len(snap.traces) - 10
    for i in range(10):
        assert api.untrack(5, FAKE + 64 * i) == 0
    assert not domain_traces(pyleakhunt.take_snapshot(), 5)


def test_capi_blocks_tracked_with_the_gil_get_the_callers_traceback():
    api = capi(ctypes.PYFUNCTYPE)
    pyleakhunt.start(1)
    result, line = api.track(5, FAKE, 4321), lineno()
    assert result == 0
    traces = domain_traces(pyleakhunt.take_snapshot(), 5)
    assert [(t.size, frames_of(t)) for t in traces] == [(4321, ((__file__, line),))]
    assert api.untrack(5, FAKE) == 0
    assert not domain_traces(pyleakhunt.take_snapshot(), 5)


def test_capi_traced_memory_includes_foreign_blocks():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(1)
    size = 10**9  # nothing is allocated: the block is only declared
    before = pyleakhunt.get_traced_memory()[0]
    assert api.track(9, FAKE, size) == 0
    current, peak = pyleakhunt.get_traced_memory()
    assert abs(current - before - size) < 64 * 1024
    assert peak >= current
    snap = pyleakhunt.take_snapshot(traces=False)
    assert [(s.count, s.size) for s in snap.sites if s.domain == 9] == [(1, size)]
    assert api.untrack(9, FAKE) == 0
    assert abs(pyleakhunt.get_traced_memory()[0] - before) < 64 * 1024


def test_capi_retracking_a_pointer_replaces_its_size():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(1)
    before = pyleakhunt.get_traced_memory()[0]
    assert api.track(5, FAKE, 10**8) == 0
    assert api.track(5, FAKE, 3 * 10**8) == 0
    traces = domain_traces(pyleakhunt.take_snapshot(), 5)
    assert [t.size for t in traces] == [3 * 10**8]
    assert abs(pyleakhunt.get_traced_memory()[0] - before - 3 * 10**8) < 64 * 1024
    # The same address in another domain is another block.
    assert api.track(6, FAKE, 7) == 0
    snap = pyleakhunt.take_snapshot()
    assert [t.size for t in domain_traces(snap, 6)] == [7]
    assert [t.size for t in domain_traces(snap, 5)] == [3 * 10**8]
    assert api.untrack(5, FAKE) == 0
    snap = pyleakhunt.take_snapshot()
    assert not domain_traces(snap, 5)
    assert [t.size for t in domain_traces(snap, 6)] == [7]
    assert api.untrack(6, FAKE) == 0
    # Untracking an unknown pointer is harmless.
    assert api.untrack(5, FAKE + 8) == 0
    assert abs(pyleakhunt.get_traced_memory()[0] - before) < 64 * 1024


def test_capi_track_and_untrack_from_many_threads_without_the_gil():
    api = capi(ctypes.CFUNCTYPE)
    nthreads, per_thread = 6, 1000
    pyleakhunt.start(1)
    results = []

    def worker(t):
        def run():
            base = FAKE + t * 0x100_0000
            codes = [api.track(5, base + 16 * i, 10 + t) for i in range(per_thread)]
            codes += [api.untrack(5, base + 16 * i) for i in range(0, per_thread, 2)]
            results.append(codes)

        return run

    run_threads([worker(t) for t in range(nthreads)])
    assert all(code == 0 for codes in results for code in codes)
    traces = domain_traces(pyleakhunt.take_snapshot(), 5)
    assert len(traces) == nthreads * per_thread // 2
    assert sum(t.size for t in traces) == sum(
        (10 + t) * per_thread // 2 for t in range(nthreads)
    )
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


def test_capi_python_domain_blocks_and_stop_forgets_foreign_blocks():
    api = capi(ctypes.PYFUNCTYPE)
    pyleakhunt.start(1)
    # Domain 0 is the Python heap: the block joins the ordinary table.
    result, line = api.track(0, FAKE, 999_983), lineno()
    assert result == 0
    found = traces_of_size(pyleakhunt.take_snapshot(), 999_983)
    assert [frames_of(t) for t in found] == [((__file__, line),)]
    assert api.untrack(0, FAKE) == 0
    assert not traces_of_size(pyleakhunt.take_snapshot(), 999_983)
    assert api.track(5, FAKE, 100) == 0
    pyleakhunt.stop()
    pyleakhunt.start(1)
    assert not domain_traces(pyleakhunt.take_snapshot(), 5)


def test_capi_header_works_from_a_c_extension(capi_probe_dir):
    proc = run_python(
        child(
            """
            import lhcapi_probe                 # imports pyleakhunt._core itself
            assert lhcapi_probe.is_tracing() == 0
            assert lhcapi_probe.track(7, 0x1000, 64) == -2
            pyleakhunt.start(1)
            assert lhcapi_probe.is_tracing() == 1
            r = lhcapi_probe.track(7, 0x1000, 4096); line = sys._getframe().f_lineno
            assert r == 0
            found = [t for t in pyleakhunt.take_snapshot().traces if t.domain == 7]
            assert [(t.size, frames(t)) for t in found] == [
                (4096, (("<string>", line),))], found
            assert lhcapi_probe.untrack(7, 0x1000) == 0
            found = [t for t in pyleakhunt.take_snapshot().traces if t.domain == 7]
            assert not found, ("untrack() left the block", found)
            pyleakhunt.stop()
            assert lhcapi_probe.untrack(7, 0x1000) == -2
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


def test_capi_block_identity_does_not_depend_on_the_callers_stack(capi_probe_dir):
    # A block is (domain, address): whatever bytes the caller's stack
    # holds, re-tracking replaces it and untracking removes it.
    proc = run_python(
        child(
            """
            import lhcapi_probe
            pyleakhunt.start(1)
            def domain(d):
                return sorted(t.size for t in pyleakhunt.take_snapshot().traces
                              if t.domain == d)
            before = pyleakhunt.get_traced_memory()[0]
            assert lhcapi_probe.track(7, 0x2000, 10**9, 0x11) == 0
            assert lhcapi_probe.track(7, 0x2000, 2 * 10**9, 0x22) == 0
            assert domain(7) == [2 * 10**9], ("re-track did not replace", domain(7))
            assert lhcapi_probe.untrack(7, 0x2000, 0x33) == 0
            assert domain(7) == [], ("untrack did not remove", domain(7))
            after = pyleakhunt.get_traced_memory()[0]
            assert abs(after - before) < 64 * 1024, (before, after)
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


# --------------------------------------------------------------------------
# 8. get_stats()
# --------------------------------------------------------------------------


def test_get_stats_event_counters_increase_with_allocations_and_frees():
    pyleakhunt.start(1)
    first = pyleakhunt.get_stats()
    data = [bytes(64) for _ in range(5000)]
    second = pyleakhunt.get_stats()
    assert second["alloc_events"] - first["alloc_events"] >= 5000
    assert second["live_blocks"] - first["live_blocks"] >= 4900
    del data
    third = pyleakhunt.get_stats()
    assert third["free_events"] - second["free_events"] >= 5000
    assert abs(third["live_blocks"] - first["live_blocks"]) < 200


def test_get_stats_live_blocks_matches_the_snapshot():
    pyleakhunt.start(1)
    keep = [str(i) * 2 for i in range(3000)]
    # The snapshot first: get_stats() itself may make a site after it has
    # counted them (3.14 grows its result dict on a line of its own).
    snap = pyleakhunt.take_snapshot()
    stats = pyleakhunt.get_stats()
    assert abs(stats["live_blocks"] - len(snap.traces)) < 100
    assert stats["unique_tracebacks"] >= len(snap.sites)
    assert len(keep) == 3000


def test_get_stats_counts_unique_tracebacks_and_tracer_memory():
    pyleakhunt.start(1)
    before = pyleakhunt.get_stats()
    assert before["tracer_memory"] > 0
    fns = [fresh_function(f"return [{k}] * 2", name=f"h{k}") for k in range(50)]
    values = [f() for f in fns]
    after = pyleakhunt.get_stats()
    assert after["unique_tracebacks"] - before["unique_tracebacks"] >= 50
    assert after["tracer_memory"] >= before["tracer_memory"]
    assert after["tracer_memory"] == pytest.approx(
        _core.get_tracemalloc_memory(), rel=0.1
    )
    assert after["lost_blocks"] == 0
    assert after["tracing"] is True
    assert values[49] == [49, 49]


def test_get_stats_lost_blocks_is_zero_in_normal_operation():
    pyleakhunt.start(10)
    junk = [{i: [i] * 3} for i in range(20000)]
    junk.clear()
    pyleakhunt.take_snapshot()
    stats = pyleakhunt.get_stats()
    assert stats["lost_blocks"] == 0
    assert pyleakhunt.take_snapshot().lost_blocks == 0
