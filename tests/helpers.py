"""Helpers shared by the tests in tests/unit and tests/integration.

One home for what several test files need: running the command line in a
child process, running code in a child interpreter, the "one error line"
check, waiting for a condition (never for a fixed time), the ctypes views of
the RAW allocator and of the C API capsule, and reading a rendered report
page.  tests/conftest.py's directory is on sys.path (pytest's rootdir-less
"prepend" import mode), so test files say ``from helpers import ...``.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

from pyleakhunt import _core
from pyleakhunt.process.proc import ProcFS

#: The checkout: child processes import pyleakhunt from here.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNKNOWN = (("<unknown>", 0),)
HAS_FORK = hasattr(os, "fork")


def _sanitizer_without_fork_locks() -> bool:
    """True under an AddressSanitizer runtime that does not wrap fork().

    Such a runtime (GCC 12's libasan, for one) leaves its allocator's locks
    as they were at fork(): a child forked while another thread was inside
    malloc() can hang in its first malloc(), whatever the program does.
    Newer runtimes take those locks around fork(), as glibc's malloc does.
    """
    process = ctypes.CDLL(None)
    if not hasattr(process, "__asan_init"):
        return False
    libc = ctypes.CDLL("libc.so.6")
    address = ctypes.cast(process.fork, ctypes.c_void_p).value
    return address == ctypes.cast(libc.fork, ctypes.c_void_p).value


#: Whether this process runs under an AddressSanitizer runtime (CI's
#: sanitizer run preloads one), where the extension is several times slower.
UNDER_ASAN = hasattr(ctypes.CDLL(None), "__asan_init")

#: Why a fork while other threads allocate cannot be tested here, or None.
FORK_WITH_THREADS_PROBLEM = (
    "this AddressSanitizer runtime does not lock its allocator around fork(),"
    " so a child forked while another thread allocates can hang in malloc()"
    if HAS_FORK and _sanitizer_without_fork_locks()
    else None
)

T = TypeVar("T")


# --------------------------------------------------------------------------
# Child processes


def child_pythonpath(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """A copy of *env* (default: os.environ) whose PYTHONPATH starts with
    the checkout, so that a child process imports this pyleakhunt."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def run_cli(
    *argv: str, cwd: Optional[str] = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python -m pyleakhunt ARGV`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "pyleakhunt", *argv],
        cwd=cwd,
        env=child_pythonpath(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_error_line(err: str, *words: str) -> None:
    """*err* is one ``pyleakhunt: error: ...`` line holding every one of
    *words*, and no traceback."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyleakhunt: error: "), err
    for word in words:
        assert word in lines[0], err


def python_from_a_copy(directory: str) -> Tuple[str, Dict[str, str]]:
    """A Python (its path, and what to add to its environment) that runs
    from a copy, in *directory*, of the file that holds Python's code:
    libpython when it is shared, else the executable (Debian's).  Removing
    *directory* then stands for an upgrade under a running process: its
    /proc/PID/maps say "(deleted)"."""
    mapped = ProcFS().mapped_files(os.getpid())
    libpython = next((m.path for m in mapped if "libpython" in m.path), None)
    if libpython is not None:
        shutil.copy(libpython, directory)
        return sys.executable, {"LD_LIBRARY_PATH": directory}
    return shutil.copy(os.path.realpath(sys.executable), directory), {}


def wait_until(
    condition: Callable[[], T], timeout: float = 15.0, poll: float = 0.02
) -> Optional[T]:
    """Poll *condition* until it returns a true value (returned) or *timeout*
    seconds pass (then its last value, false)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll)


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Like wait_until, but fail the test, naming *what*, on time-out."""
    value = wait_until(condition, timeout, poll=0.05)
    if not value:
        pytest.fail(f"timed out waiting for {what}")
    return value


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fresh_web_state(leaked: List[Any]) -> Iterator[None]:
    """A web test starts and ends with no endpoint recorded, *leaked* (what
    its app keeps) empty, and no report listener left open."""
    from pyleakhunt.web import attribution, page

    attribution.reset()
    leaked.clear()
    try:
        yield
    finally:
        for listener in list(page._listeners):  # a test that failed midway
            listener.close()
        attribution.reset()
        leaked.clear()


# --------------------------------------------------------------------------
# A rendered report page


def recorded_timeline(directory: str, name: str, source: str, batches: int = 40) -> str:
    """Run *source* as script *name* under ``pyleakhunt run``; its timeline."""
    os.makedirs(directory, exist_ok=True)
    script = os.path.join(directory, name)
    with open(script, "w") as f:
        f.write(source)
    out = os.path.join(directory, "timelines")
    result = run_cli("run", "--interval", "0.05", "-o", out, script, str(batches))
    assert result.returncode == 0, result.stderr
    (timeline,) = [os.path.join(out, n) for n in os.listdir(out)]
    return timeline


def report_of(*inputs: str, output: Optional[str] = None) -> str:
    """``pyleakhunt report`` of *inputs*; the path of the HTML file."""
    argv = ["report", *inputs] + (["-o", output] if output else [])
    result = run_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress when stderr is not a terminal
    path = result.stdout.strip()
    assert os.path.isfile(path)
    return path


def page_data(text: str) -> Dict[str, Any]:
    """The JSON a rendered page draws from."""
    match = re.search(
        r'<script type="application/json" id="plh-data">(.*?)</script>', text, re.S
    )
    assert match, "no data in the page"
    return json.loads(match.group(1))


def sections(data: Dict[str, Any], kind: str) -> List[Dict[str, Any]]:
    """The sections of one *kind* of a page's data."""
    return [s for s in data["sections"] if s["type"] == kind]


# --------------------------------------------------------------------------
# Child interpreters for the safety tests (tests/integration/test_safety_*.py)


def run_python(code, *, timeout=60, args=(), extra_path=(), env_extra=None):
    """Run *code* in a child interpreter that imports this checkout.

    *env_extra* adds (or, with a value of None, removes) environment
    variables of the child.
    """
    env = dict(os.environ)
    for name, value in (env_extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
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

def wait_until(condition, what, timeout=60):
    # Wait for a condition (workers have run), never for a fixed time.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.001)

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

def exit_code_of_forked(check, timeout=30):
    # Fork; the child runs check() and exits 0, or prints why it failed.
    pid = os.fork()
    if pid:
        return wait_child(pid, timeout)
    code = 1
    try:
        check()
        code = 0
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
"""


def child(body):
    return CHILD_PRELUDE + textwrap.dedent(body)


#: For a child script: makes, runs and destroys a subinterpreter of a kind,
#: on each version (make, run, KINDS, and CODE to run there).
SUBINTERPRETERS = """
import gc
import sys
try:
    import _interpreters as _I  # 3.13+
except ImportError:
    import _xxsubinterpreters as _I  # 3.10 to 3.12

def make(kind):
    if sys.version_info >= (3, 13):
        return _I.create(kind)
    if sys.version_info >= (3, 12):
        return _I.create(isolated=kind == "isolated")
    return _I.create()  # legacy only

def run(interp, code):
    failed = _I.run_string(interp, code)
    assert failed is None, failed

KINDS = ["legacy"] + (["isolated"] if sys.version_info >= (3, 12) else [])

# Allocates, frees, and keeps 100,000 strs of about 60 B in the
# subinterpreter's __main__.
CODE = '''
import json
data = {i: (i, str(i)) for i in range(5000)}
text = json.dumps(data)
del data, text
kept = ["x" * 10 + str(i) for i in range(100000)]
'''
"""


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

/* raw_free_spin(n): n calls of PyMem_RawFree(NULL) with the GIL released,
   as fast as they go: each reads the RAW domain's free function anew, so
   a thread that swaps the allocator meanwhile is caught mid-write if its
   write can be seen half done. */
static PyObject *
probe_raw_free_spin(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    (void)self;
    if (!PyArg_ParseTuple(args, "n", &n)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        PyMem_RawFree(NULL);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
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
    {"raw_free_spin", probe_raw_free_spin, METH_VARARGS, NULL},
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


def fresh_function(body, name="f", params=""):
    """A function whose lines are new allocation sites."""
    namespace = {}
    source = f"def {name}({params}):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    exec(compile(source, f"<fresh {name} {id(namespace)}>", "exec"), namespace)
    return namespace[name]


def browser_env() -> dict:
    """The environment for chromedriver and Chromium: ours without
    LD_PRELOAD (the ASan run preloads its runtime into every child, and
    chromedriver aborts under it)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
