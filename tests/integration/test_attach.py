"""pyleakhunt attach: tracing a running process, and refusing when unsafe.

The tests start their own target processes.  Those that attach for real
need ptrace, and gdb (the method on 3.10 to 3.13, and --method gdb) or
Python 3.14+ (sys.remote_exec, PEP 768); they skip with the reason when one
is missing.  The tests parametrized by METHODS run with each.  The refusals
are all checked before the target is touched, so most of them need
neither.  The 100-cycle endurance test runs only with
PYLEAKHUNT_SLOW_TESTS=1.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import http.client
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import pytest
from helpers import assert_one_error_line, python_from_a_copy, wait_until

from pyleakhunt import attach
from pyleakhunt.attach import (
    EXIT_FILE,
    EXIT_NO_GDB,
    EXIT_OK,
    EXIT_PTRACE,
    EXIT_REFUSED,
    EXIT_TARGET_ERROR,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    AttachError,
    Environment,
    ProcFS,
    Request,
    methods,
)
from pyleakhunt.attach import bootstrap as _attach_bootstrap
from pyleakhunt.snapshot import Snapshot

REPO = Path(__file__).resolve().parents[2]
SLOW = os.environ.get("PYLEAKHUNT_SLOW_TESTS") == "1"


# --------------------------------------------------------------------------
# Targets


class Target:
    """A Python process started for a test, with its output files."""

    def __init__(self, process: subprocess.Popen, directory: Path, name: str):
        self.process = process
        self.pid = process.pid
        self.stdout = directory / (name + ".out")
        self.stderr = directory / (name + ".err")

    def state(self) -> str:
        return _status(self.pid)["State"][:1]

    def tracer(self) -> int:
        return int(_status(self.pid)["TracerPid"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.stdout.read_text()


def _status(pid: int) -> Dict[str, str]:
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _has_line(output: str, word: str) -> bool:
    """Whether *output* has a whole line (newline and all) holding *word*.

    Not just *word*: a read can see a line the target is still writing
    (``ready`` without the port after it, once on 3.13 in CI)."""
    lines = output.splitlines(keepends=True)
    return any(word in line and line.endswith("\n") for line in lines)


@pytest.fixture
def spawn(tmp_path):
    """spawn(source, *args, flags=(), argv=None) -> a running Target."""
    started: List[Target] = []

    def start(
        source: str = "",
        *args: str,
        flags: tuple = (),
        argv: Optional[List[str]] = None,
        ready: str = "ready",
    ) -> Target:
        name = "target%d" % len(started)
        if argv is None:
            script = tmp_path / (name + ".py")
            script.write_text(textwrap.dedent(source))
            argv = [sys.executable, *flags, str(script), *args]
        with (
            open(tmp_path / (name + ".out"), "w") as out,
            open(tmp_path / (name + ".err"), "w") as err,
        ):
            process = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=tmp_path
            )
        target = Target(process, tmp_path, name)
        started.append(target)
        deadline = time.monotonic() + 15
        while ready and not _has_line(target.output(), ready):
            assert target.alive(), "the target died: " + target.stderr.read_text()
            assert time.monotonic() < deadline, "the target never became ready"
            time.sleep(0.02)
        return target

    yield start
    for target in started:
        if target.alive():
            os.kill(target.pid, signal.SIGCONT)
            target.process.kill()
        target.process.wait()


SLEEPER = """
    import time
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""

LEAKER = """
    import time
    cache = []

    def remember(i):
        cache.append("x" * 512 + str(i))  # the leak

    print("ready", flush=True)
    while True:
        for i in range(100):
            remember(i)
        print("batch", flush=True)  # a test waits for batches, not for time
        time.sleep(0.01)
"""


def _batches(target: Target) -> int:
    """How many batches of 100 leaks LEAKER *target* has made so far."""
    return target.output().count("batch\n")


def _line_of(source: str, marker: str) -> int:
    for number, line in enumerate(textwrap.dedent(source).splitlines(), 1):
        if marker in line:
            return number
    raise AssertionError(marker)


def run(argv: List[str], capsys, env: Optional[Environment] = None):
    """Run ``pyleakhunt attach ARGV`` here: (exit code, stdout, stderr)."""
    code = attach.main([str(arg) for arg in argv], env)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------
# What the machine allows


def _ptrace_problem() -> Optional[str]:
    """Why ptrace cannot work here, or None (tried on a child, not assumed)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        probe = subprocess.run(
            [sys.executable, "-c", SEIZE, str(child.pid), "0"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    finally:
        child.kill()
        child.wait()
    if probe.stdout.strip() != "seized":
        return "ptrace is not permitted here: " + probe.stdout.strip()
    return None


#: A helper that ptrace-seizes a process (without stopping it), says so, and
#: stays attached for argv[2] seconds.
SEIZE = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0:
    print(os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
print("seized", flush=True)
time.sleep(float(sys.argv[2]))
"""

PTRACE_PROBLEM = _ptrace_problem()


def _gdb_problem() -> Optional[str]:
    """Why the gdb path cannot work here, or None (tried, not assumed)."""
    gdb = shutil.which(os.environ.get("PYLEAKHUNT_GDB") or "gdb")
    if gdb is None:
        return "gdb is not installed"
    return methods.gdb_call_problem(gdb)


GDB_PROBLEM = _gdb_problem()
#: Attaching with gdb (the method on 3.10 to 3.13, and --method gdb).
needs_ptrace = pytest.mark.skipif(
    (GDB_PROBLEM or PTRACE_PROBLEM) is not None,
    reason=str(GDB_PROBLEM or PTRACE_PROBLEM),
)
#: Attaching with sys.remote_exec: Python 3.14+, and the ptrace permission.
needs_remote_exec = pytest.mark.skipif(
    not hasattr(sys, "remote_exec") or PTRACE_PROBLEM is not None,
    reason=(
        "sys.remote_exec is new in Python 3.14 (PEP 768); this is Python %d.%d, "
        "where attach uses gdb" % sys.version_info[:2]
        if not hasattr(sys, "remote_exec")
        else str(PTRACE_PROBLEM)
    ),
)
#: Each way in, for the tests that run on both.
METHODS = [
    pytest.param("gdb", marks=needs_ptrace),
    pytest.param("remote_exec", marks=needs_remote_exec),
]


def _sessions(pid: int) -> List[str]:
    """The exchange directories of attach commands to *pid* left in /tmp."""
    prefix = "pyleakhunt-attach-%d-" % pid
    return sorted(name for name in os.listdir("/tmp") if name.startswith(prefix))


def _flask_python() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import flask, werkzeug"], capture_output=True
    )
    return probe.returncode == 0


# --------------------------------------------------------------------------
# Choosing how to get in (pure logic)


@pytest.mark.parametrize(
    "target, client, remote, gdb, requested, expected",
    [
        ((3, 11), (3, 11), False, "/usr/bin/gdb", "auto", "gdb"),
        ((3, 13), (3, 14), True, "/usr/bin/gdb", "auto", "gdb"),
        ((3, 14), (3, 14), True, "/usr/bin/gdb", "auto", "remote_exec"),
        ((3, 14), (3, 14), True, None, "auto", "remote_exec"),
        ((3, 15), (3, 15), True, None, "auto", "remote_exec"),
        # different versions: remote_exec reads the target's layout by ours
        ((3, 15), (3, 14), True, "/usr/bin/gdb", "auto", "gdb"),
        ((3, 14), (3, 11), False, "/usr/bin/gdb", "auto", "gdb"),
        ((3, 14), (3, 14), True, "/usr/bin/gdb", "gdb", "gdb"),
    ],
)
def test_choose_method(target, client, remote, gdb, requested, expected):
    assert attach.choose_method(target, client, remote, gdb, requested) == expected


@pytest.mark.parametrize("requested", ["auto", "remote_exec"])
@pytest.mark.parametrize("client", [(3, 14), (3, 11)])
def test_choose_method_respects_a_target_that_disabled_remote_debugging(
    requested, client
):
    reason = "PYTHON_DISABLE_REMOTE_DEBUG is set in its environment"
    with pytest.raises(AttachError) as info:
        attach.choose_method((3, 14), client, True, "/usr/bin/gdb", requested, reason)
    assert info.value.code == EXIT_REFUSED
    assert reason in str(info.value) and "--method gdb" in str(info.value)
    # Asked for by name, a debugger still attaches; before 3.14 the setting
    # does not exist.
    method = attach.choose_method((3, 14), client, True, "/usr/bin/gdb", "gdb", reason)
    assert method == "gdb"
    assert attach.choose_method((3, 13), client, False, "gdb", "auto", reason) == "gdb"


@pytest.mark.parametrize(
    "cmdline, environ, expected",
    [
        (["python3", "app.py"], [], None),
        (["python3", "app.py"], ["PYTHON_DISABLE_REMOTE_DEBUG=1"], "environment"),
        # Python disables it for any value, even an empty one
        (["python3", "app.py"], ["PYTHON_DISABLE_REMOTE_DEBUG="], "environment"),
        # -E and -I make Python ignore the environment
        (["python3", "-E", "app.py"], ["PYTHON_DISABLE_REMOTE_DEBUG=1"], None),
        (["python3", "-Iu", "app.py"], ["PYTHON_DISABLE_REMOTE_DEBUG=1"], None),
        (["python3", "-X", "disable-remote-debug", "app.py"], [], "-X"),
        (["python3", "-uXdisable-remote-debug", "app.py"], [], "-X"),
        (["python3", "-X", "disable-remote-debug=0", "-m", "app"], [], "-X"),
        (["python3", "-X", "dev", "-E", "app.py"], [], None),
        # CPython does not know this spelling: remote debugging stays on
        (["python3", "-X", "disable_remote_debug", "app.py"], [], None),
        # options of the program, not of Python
        (["python3", "app.py", "-X", "disable-remote-debug"], [], None),
        (["python3", "-c", "pass", "-X", "disable-remote-debug"], [], None),
    ],
)
def test_remote_debug_disabled_is_read_like_python_reads_it(cmdline, environ, expected):
    proc = ProcFS(
        overrides={
            "7/cmdline": "\0".join(cmdline) + "\0",
            "7/environ": "".join(item + "\0" for item in ["HOME=/root", *environ]),
        }
    )
    reason = attach.remote_debug_disabled(7, proc)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_choose_method_without_gdb_says_what_to_install():
    with pytest.raises(AttachError) as info:
        attach.choose_method((3, 12), (3, 12), False, None)
    assert info.value.code == EXIT_NO_GDB
    assert "apt-get install gdb" in str(info.value)
    with pytest.raises(AttachError) as info:
        attach.choose_method((3, 14), (3, 11), False, None)
    assert info.value.code == EXIT_NO_GDB
    assert "Python 3.14" in str(info.value)


def test_choose_method_remote_exec_refused_when_impossible():
    with pytest.raises(AttachError) as info:
        attach.choose_method((3, 13), (3, 13), False, "gdb", "remote_exec")
    assert info.value.code == EXIT_REFUSED


def test_remote_exec_branch_queues_a_script_the_target_can_read(tmp_path):
    calls = []

    def remote_exec(pid: int, path: str) -> None:
        calls.append((pid, Path(path).read_text()))

    target = attach.inspect_target(os.getpid(), ProcFS())
    attach.run_remote_exec(target, __file__, Environment(remote_exec=remote_exec))
    assert calls == [(os.getpid(), Path(__file__).read_text())]


@pytest.mark.parametrize(
    "error, code, words",
    [
        (PermissionError(13, "Permission denied"), EXIT_PTRACE, ["refused"]),
        (ProcessLookupError(3, "No such process"), EXIT_REFUSED, ["no process"]),
        # What Python 3.14 and 3.15 say of a target that disabled remote
        # debugging, by option or by build (--without-remote-debug): the only
        # sign of the latter, so it is refused like the others.
        (
            RuntimeError("Remote debugging is not enabled in the remote process"),
            EXIT_REFUSED,
            ["does not allow remote debugging", "--method gdb"],
        ),
        (
            RuntimeError("Can't send commands from a Python 3.15 process to a 3.14"),
            attach.EXIT_FAILED,
            ["sys.remote_exec failed", "try --method gdb"],
        ),
    ],
)
def test_remote_exec_errors_are_classified(error, code, words):
    def remote_exec(pid: int, path: str) -> None:
        raise error

    target = attach.inspect_target(os.getpid(), ProcFS())
    with pytest.raises(AttachError) as info:
        attach.run_remote_exec(target, __file__, Environment(remote_exec=remote_exec))
    assert info.value.code == code
    assert_one_error_line("pyleakhunt: error: %s" % info.value, *words)


def test_exchanges_of_processes_that_are_gone_are_swept(spawn):
    # A withdrawn script waits for its process to run it; a process that
    # ended, or whose PID now names a newer process, never will.
    live = spawn(SLEEPER)
    dead = subprocess.Popen(["true"])
    dead.wait()
    made = []
    for pid in (live.pid, dead.pid, live.pid):
        path = Path("/tmp/pyleakhunt-attach-%d-%s" % (pid, os.urandom(6).hex()))
        path.mkdir()
        (path / attach.SCRIPT_NAME).write_text("pass\n")
        made.append(path)
    try:
        os.utime(made[2], (1, 1))  # made before the process started: reused
        found = attach.inspect_target(live.pid, ProcFS())
        attach.sweep_orphans(found, ProcFS())
        assert [path.exists() for path in made] == [True, False, False]
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def test_gdb_failures_are_classified():
    target = attach.inspect_target(os.getpid(), ProcFS())
    cases = [
        ("ptrace: Operation not permitted.", EXIT_PTRACE),
        ("ptrace: No such process.", EXIT_REFUSED),
        ("Python scripting is not supported in this copy of GDB.", EXIT_NO_GDB),
        ("something else went wrong", attach.EXIT_FAILED),
    ]
    for output, code in cases:
        assert attach.methods._gdb_failure(target, output).code == code


# --------------------------------------------------------------------------
# Reading the target from /proc and its ELF files


def test_inspect_finds_this_python():
    target = attach.inspect_target(os.getpid(), ProcFS())
    assert target.version == sys.version_info[:2]
    for symbol in ("Py_AddPendingCall", "PyRun_SimpleString", "mmap", "munmap"):
        assert symbol in target.addresses
    # The addresses are the live ones: compare with what this process sees.
    libc = ctypes.CDLL(None)
    assert target.addresses["munmap"] == ctypes.cast(libc.munmap, ctypes.c_void_p).value
    pythonapi = ctypes.pythonapi
    address = ctypes.cast(pythonapi.Py_AddPendingCall, ctypes.c_void_p).value
    assert target.addresses["Py_AddPendingCall"] == address


@pytest.mark.skipif(
    not os.path.exists("/usr/bin/python3.11"), reason="no Debian python3.11"
)
def test_inspect_reads_the_version_of_a_static_python(spawn):
    # Debian links libpython into the executable: no libpython mapping,
    # the version comes from the Py_Version symbol in the file.
    code = "print('ready', flush=True); import time; time.sleep(60)"
    target = spawn(argv=["/usr/bin/python3.11", "-c", code])
    found = attach.inspect_target(target.pid, ProcFS())
    assert found.version == (3, 11)
    assert "Py_AddPendingCall" in found.addresses


def test_inspect_reads_a_python_upgraded_under_the_process(tmp_path):
    # A service running for days outlives its Python on disk: the maps
    # then say "(deleted)", and the file is read through map_files.
    copies = tmp_path / "python"
    copies.mkdir()
    python, env = python_from_a_copy(str(copies))
    process = subprocess.Popen(
        [python, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        shutil.rmtree(copies)
        maps = Path("/proc/%d/maps" % process.pid).read_text()
        assert "(deleted)" in maps
        found = attach.inspect_target(process.pid, ProcFS())
        assert found.version == sys.version_info[:2]
        assert "Py_AddPendingCall" in found.addresses
    finally:
        process.kill()
        process.wait()


def test_a_mapped_file_named_from_another_root_is_read_through_map_files():
    # A chroot in a mount namespace of its own (CI's sid chroot, some
    # containers): /proc/PID/maps names files from the namespace's root,
    # which is not the process's root, so the name opens nothing from
    # /proc/PID/root.  Attach said "not a Python process" there.
    mapped = ProcFS().mapped_files(os.getpid())
    real = next(m for m in mapped if os.path.basename(m.path).startswith("libc"))
    by_map = "/proc/%d/map_files/%x-%x" % (os.getpid(), real.start, real.end)
    if not os.access(by_map, os.R_OK):
        pytest.skip("map_files cannot be read without CAP_SYS_ADMIN here")
    elsewhere = dataclasses.replace(real, path="/elsewhere" + real.path)
    image = ProcFS().image(os.getpid(), elsewhere)
    assert os.path.exists(image), image
    assert os.stat(image).st_ino == os.stat(real.path).st_ino


def test_not_python_is_refused(spawn, capsys):
    target = spawn(argv=["sleep", "100"], ready="")
    code, _, err = run([target.pid], capsys)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "not a Python process", "sleep")
    assert target.alive()


def test_gone_pid_is_refused(capsys):
    process = subprocess.Popen(["true"])
    process.wait()
    code, _, err = run([process.pid], capsys)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "no process with PID %d" % process.pid)


def test_itself_is_refused(capsys):
    code, _, err = run([os.getpid()], capsys)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "itself")


# --------------------------------------------------------------------------
# Refusals: each before the target is touched


def test_stopped_target_is_refused_and_left_stopped(spawn, capsys):
    target = spawn(SLEEPER)
    os.kill(target.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5
        while target.state() != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        code, _, err = run([target.pid], capsys)
        assert code == EXIT_REFUSED
        assert_one_error_line(err, "is stopped", "kill -CONT %d" % target.pid)
        assert target.state() == "T"
        assert target.tracer() == 0
    finally:
        os.kill(target.pid, signal.SIGCONT)
    assert target.alive()


@needs_ptrace
def test_traced_target_is_refused(spawn, capsys):
    target = spawn(SLEEPER)
    tracer = subprocess.Popen(
        [sys.executable, "-c", SEIZE, str(target.pid), "30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tracer.stdout.readline().strip() == "seized"
        code, _, err = run([target.pid], capsys)
        assert code == EXIT_REFUSED
        assert_one_error_line(err, "being traced by PID %d" % tracer.pid)
    finally:
        tracer.kill()
        tracer.wait()
    assert target.alive()
    assert target.state() not in "Tt"


def _with(text: str, field: str, value: str) -> str:
    """A /proc status text with *field* set to *value*."""
    return re.sub(r"(?m)^%s:.*$" % field, "%s:\t%s" % (field, value), text)


def _proc_with(overrides: Dict[str, Union[str, BaseException]]) -> Environment:
    return Environment(proc=ProcFS(overrides=overrides))


def test_traced_is_read_from_tracer_pid(spawn, capsys):
    target = spawn(SLEEPER)
    status = Path("/proc/%d/status" % target.pid).read_text()
    env = _proc_with({"%d/status" % target.pid: _with(status, "TracerPid", "1")})
    code, _, err = run([target.pid], capsys, env)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "being traced by PID 1")


class FakeTime:
    """Time that passes only when slept: settle loops end at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _fake_env(overrides: Dict[str, Union[str, BaseException]]) -> Environment:
    clock = FakeTime()
    return Environment(
        proc=ProcFS(overrides=overrides), monotonic=clock.monotonic, sleep=clock.sleep
    )


def test_forking_target_is_refused(spawn, capsys):
    target = spawn(SLEEPER)
    # The main thread inside clone() without CLONE_THREAD: a fork.
    forking = "56 0x1200011 0x0 0x0 0x7f00 0x0 0x0 0x7ffd0 0x7f01\n"
    env = _fake_env({"%d/task/%d/syscall" % (target.pid, target.pid): forking})
    code, _, err = run([target.pid], capsys, env)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "middle of a fork", "clone()")


def test_thread_creation_is_not_a_fork(spawn):
    target = spawn(SLEEPER)
    creating = "56 0x3d0f00 0x0 0x0 0x7f00 0x0 0x0 0x7ffd0 0x7f01\n"  # CLONE_THREAD
    env = _fake_env({"%d/task/%d/syscall" % (target.pid, target.pid): creating})
    found = attach.inspect_target(target.pid, env.proc)
    attach.check_not_forking(found, env.proc, env.clock(1.0))


def _stat_with_flags(pid: int, flags: int) -> str:
    text = Path("/proc/%d/stat" % pid).read_text()
    head, rest = text[: text.rindex(")") + 2], text[text.rindex(")") + 2 :].split()
    rest[6] = str(int(rest[6]) | flags)
    return head + " ".join(rest) + "\n"


def test_vfork_child_is_refused(spawn, capsys):
    target = spawn(SLEEPER)
    parent = os.getpid()
    env = _fake_env(
        {
            "%d/stat" % target.pid: _stat_with_flags(target.pid, attach.PF_FORKNOEXEC),
            "%d/task" % parent: "4242",
            "%d/task/4242/syscall" % parent: "58 0x0 0x0 0x0 0x0 0x0 0x0 0x7ff 0x7f\n",
        }
    )
    code, _, err = run([target.pid], capsys, env)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "vfork() child")


def test_fresh_fork_child_is_refused_until_it_settles(spawn, capsys):
    target = spawn(SLEEPER)
    stat = _stat_with_flags(target.pid, attach.PF_FORKNOEXEC)
    started = int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
    env = _fake_env({"%d/stat" % target.pid: stat, "uptime": "%.2f 0\n" % started})
    code, _, err = run([target.pid], capsys, env)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "has not called exec()")


def test_uninterruptible_sleep_is_refused(spawn, capsys):
    target = spawn(SLEEPER)
    status = Path("/proc/%d/status" % target.pid).read_text()
    env = _fake_env(
        {"%d/status" % target.pid: _with(status, "State", "D (disk sleep)")}
    )
    code, _, err = run([target.pid], capsys, env)
    assert code == EXIT_REFUSED
    assert_one_error_line(err, "uninterruptible sleep")


@pytest.mark.parametrize(
    "scope, cap_eff, uid, parent_is_init, words",
    [
        ("3", "000001ffffffffff", "0", False, ["ptrace_scope = 3"]),
        ("2", "0000000000000000", "0", False, ["ptrace_scope = 2", "root"]),
        ("1", "0000000000000000", "0", True, ["ptrace_scope = 1"]),
        ("0", "0000000000000000", "1000", False, ["runs as uid 0", "uid 1000"]),
    ],
)
def test_ptrace_not_permitted_is_refused(
    spawn, capsys, scope, cap_eff, uid, parent_is_init, words
):
    target = spawn(SLEEPER)
    me = Path("/proc/self/status").read_text()
    me = _with(_with(me, "CapEff", cap_eff), "Uid", "\t".join([uid] * 4))
    overrides: Dict[str, Union[str, BaseException]] = {
        "sys/kernel/yama/ptrace_scope": scope + "\n",
        "self/status": me,
    }
    if parent_is_init:
        status = Path("/proc/%d/status" % target.pid).read_text()
        overrides["%d/status" % target.pid] = _with(status, "PPid", "1")
    code, _, err = run([target.pid], capsys, _proc_with(overrides))
    assert code == EXIT_PTRACE
    assert_one_error_line(err, *words)
    assert target.tracer() == 0 and target.alive()


def test_gdb_missing_is_refused(spawn, capsys, tmp_path):
    target = spawn(SLEEPER)
    empty = tmp_path / "bin"
    empty.mkdir()
    # --method gdb: on 3.14+ the default, sys.remote_exec, needs no gdb.
    argv = [target.pid, "--method", "gdb"]
    code, _, err = run(argv, capsys, Environment(path=str(empty), gdb="gdb"))
    assert code == EXIT_NO_GDB
    assert_one_error_line(err, "gdb is not installed", "apt-get install gdb")
    assert target.tracer() == 0 and target.alive()


def test_gdb_missing_from_path_on_the_command_line(spawn):
    target = spawn(SLEEPER)
    process = subprocess.run(
        [sys.executable, "-m", "pyleakhunt.attach", str(target.pid), "--method=gdb"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PATH": "/nonexistent", "PYLEAKHUNT_GDB": ""},
        timeout=30,
    )
    assert process.returncode == EXIT_NO_GDB
    assert_one_error_line(process.stderr, "gdb is not installed")
    assert process.stdout == ""


def test_unwritable_output_is_refused(spawn, capsys, tmp_path):
    target = spawn(SLEEPER)
    missing = tmp_path / "no" / "such" / "dir" / "x.plh"
    code, _, err = run([target.pid, "--snapshot", missing], capsys)
    assert code == EXIT_FILE
    assert_one_error_line(err, "cannot write")


def test_writable_by_follows_the_mode_bits(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    path = str(directory / "f")
    owner = os.stat(directory).st_uid
    os.chmod(directory, 0o755)
    assert attach.writable_by(path, owner, [])
    assert not attach.writable_by(path, owner + 1, [])
    os.chmod(directory, 0o775)
    assert attach.writable_by(path, owner + 1, [os.stat(directory).st_gid])
    assert attach.writable_by(path, 0, [])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["1", "--full"], ["--full goes with --snapshot"]),
        (["1", "-o", "x"], ["-o goes with --watch"]),
        (["1", "--detach", "--status"], ["not allowed with"]),
        (["nope"], ["not a process id"]),
        (["1", "--nframe", "0"], ["between 1 and 65535"]),
        (["1", "--sample", "lots"], ["must be a size such as 512KiB"]),
    ],
)
def test_usage_errors(capsys, argv, words):
    code, out, err = run(argv, capsys)
    assert code == EXIT_USAGE
    assert_one_error_line(err, *words)
    assert out == ""


def test_register_adds_the_attach_command(capsys):
    parser = argparse.ArgumentParser(prog="pyleakhunt")
    attach.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["attach", "1", "--snapshot", "x.plh", "--full"])
    assert args.func is attach.run_command
    request = attach.request_from_args(args)
    assert request.command == "snapshot" and request.full
    assert request.path == os.path.abspath("x.plh")
    with pytest.raises(SystemExit):
        parser.parse_args(["attach", "--help"])
    assert "exit codes:" in capsys.readouterr().out


# --------------------------------------------------------------------------
# The bootstrap, run here: it claims its token, reports, never raises


def _request(tmp_path: Path, command: str = "status", **fields) -> dict:
    (tmp_path / "token").write_text("")
    request = {
        "pid": os.getpid(),
        "command": command,
        "token": str(tmp_path / "token"),
        "claimed": str(tmp_path / "claimed"),
        "result": str(tmp_path / "result.json"),
        "deadline": time.time() + 60,
        "fallback_path": None,
        "nframe": 5,
        "sample_bytes": None,
        "path": None,
        "full": False,
        "interval": 1.0,
        "duration": 1.0,
        "done": None,
    }
    request.update(fields)
    return request


def _run_program(request: dict) -> dict:
    """Run the program as PyRun_SimpleString would, in a fresh __main__."""
    import json

    source, module = attach.bootstrap_source()
    directory = Path(request.get("token", "/nonexistent")).parent
    (directory / "source.py").write_text(source)
    (directory / "request.json").write_text(json.dumps(request))
    program = attach.bootstrap_program(
        str(directory / "request.json"), str(directory / "source.py"), module, False
    )
    namespace: dict = {"__name__": "__main__"}
    exec(compile(program, "<string>", "exec"), namespace)
    assert set(namespace) == {"__name__", "__builtins__"}  # nothing left behind
    return namespace


def _result(tmp_path: Path) -> Optional[dict]:
    import json

    path = tmp_path / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_bootstrap_reports_status(tmp_path):
    _run_program(_request(tmp_path))
    result = _result(tmp_path)
    assert result["ok"] and result["pid"] == os.getpid()
    assert result["tracing"] is False
    assert result["pyleakhunt_source"] == "target"
    assert not (tmp_path / "token").exists() and (tmp_path / "claimed").exists()


def test_bootstrap_start_snapshot_detach(tmp_path):
    import pyleakhunt

    _run_program(_request(tmp_path, "start"))
    assert _result(tmp_path)["ok"] and pyleakhunt.is_tracing()
    assert pyleakhunt.get_traceback_limit() == 5
    data = [bytearray(100) for _ in range(100)]
    path = tmp_path / "s.plh"
    _run_program(_request(tmp_path, "snapshot", path=str(path), full=True))
    result = _result(tmp_path)
    assert result["ok"] and result["aggregated"] is False
    assert Snapshot.load(path).traces  # a full snapshot, readable
    _run_program(_request(tmp_path, "detach"))
    result = _result(tmp_path)
    assert result["ok"] and result["was_tracing"] and result["started_by_attach"]
    assert not pyleakhunt.is_tracing()
    del data


def test_bootstrap_detach_stops_a_running_watch(tmp_path):
    import pyleakhunt

    timeline = tmp_path / "t.plh"
    _run_program(_request(tmp_path, "watch", path=str(timeline), duration=60.0))
    result = _result(tmp_path)
    assert result["ok"] and result["watches"] == 1 and pyleakhunt.is_tracing()
    _run_program(_request(tmp_path, "detach"))
    result = _result(tmp_path)
    assert result["ok"] and result["watches_stopped"] == 1
    assert not pyleakhunt.is_tracing()
    assert not any(t.name == "pyleakhunt-watcher" for t in threading.enumerate())
    assert timeline.stat().st_size > 0


@pytest.fixture
def no_tracer():
    """Leave the tracer, its leases and attach's state as they were found:
    off, none, empty (these tests trace in the test's own process)."""
    import pyleakhunt
    from pyleakhunt import lease

    assert not pyleakhunt.is_tracing() and not lease.held()
    yield
    for held in lease.held():
        held.release()
    pyleakhunt.stop()
    state = getattr(pyleakhunt, _attach_bootstrap.STATE_ATTRIBUTE, None)
    if state is not None:
        state["watches"].clear()
        state.pop("lease", None)


def test_bootstrap_start_takes_a_lease_owned_by_attach_and_detach_gives_it_back(
    tmp_path, no_tracer
):
    from pyleakhunt import lease

    _run_program(_request(tmp_path, "start"))
    assert _result(tmp_path)["ok"]
    assert [held.owner for held in lease.held()] == ["attach"]
    _run_program(_request(tmp_path, "start", nframe=3))  # a second start
    assert [held.owner for held in lease.held()] == ["attach"]
    _run_program(_request(tmp_path, "detach"))
    assert _result(tmp_path)["ok"] and lease.held() == []


def test_bootstrap_detach_leaves_a_tracer_the_target_started_itself(
    tmp_path, no_tracer
):
    import pyleakhunt

    pyleakhunt.start(7)
    _run_program(_request(tmp_path, "start", nframe=5))
    result = _result(tmp_path)
    assert result["ok"] and result["was_tracing"]
    assert pyleakhunt.get_traceback_limit() == 7  # never shallower
    _run_program(_request(tmp_path, "start", nframe=12))
    assert pyleakhunt.get_traceback_limit() == 12  # deeper while attached
    _run_program(_request(tmp_path, "detach"))
    result = _result(tmp_path)
    assert result["ok"] and result["was_tracing"] and result["tracing"]
    assert not result["started_by_attach"]
    assert pyleakhunt.is_tracing() and pyleakhunt.get_traceback_limit() == 7


def test_bootstrap_detach_leaves_the_targets_production_tracing(tmp_path, no_tracer):
    import pyleakhunt
    from pyleakhunt import lease

    production = lease.acquire(4, owner="production")
    _run_program(_request(tmp_path, "start", nframe=9))
    assert pyleakhunt.get_traceback_limit() == 9
    _run_program(_request(tmp_path, "detach"))
    result = _result(tmp_path)
    assert result["ok"] and result["tracing"] and result["kept_by"] == ["production"]
    assert pyleakhunt.get_traceback_limit() == 4
    production.release()
    assert not pyleakhunt.is_tracing()


def test_bootstrap_start_on_a_sampled_tracer_shares_its_rate(tmp_path, no_tracer):
    import pyleakhunt

    pyleakhunt.start(3, sample_bytes=4096)
    _run_program(_request(tmp_path, "start"))
    result = _result(tmp_path)
    assert result["ok"] and result["sample_bytes"] == 4096
    _run_program(_request(tmp_path, "start", sample_bytes=8192))
    result = _result(tmp_path)
    assert not result["ok"] and "sample_bytes=4096" in result["message"]


def test_bootstrap_watch_that_ends_leaves_tracing_started_after_it(tmp_path, no_tracer):
    import pyleakhunt

    done = tmp_path / "done.json"
    timeline = tmp_path / "t.plh"
    _run_program(
        _request(tmp_path, "watch", path=str(timeline), duration=0.5, done=str(done))
    )
    assert _result(tmp_path)["ok"] and pyleakhunt.is_tracing()
    _run_program(_request(tmp_path, "start"))  # attach start while it watches
    assert _result(tmp_path)["ok"]
    assert wait_until(done.exists, timeout=30)
    assert pyleakhunt.is_tracing()  # the start still holds it
    _run_program(_request(tmp_path, "detach"))
    assert not pyleakhunt.is_tracing()


def test_bootstrap_watch_started_while_off_stops_tracing_at_its_end(
    tmp_path, no_tracer
):
    import pyleakhunt

    done = tmp_path / "done.json"
    _run_program(
        _request(
            tmp_path,
            "watch",
            path=str(tmp_path / "t.plh"),
            duration=0.3,
            done=str(done),
            sample_bytes=4096,
        )
    )
    assert _result(tmp_path)["ok"]
    assert pyleakhunt.get_stats()["sample_bytes"] == 4096
    assert wait_until(done.exists, timeout=30)
    assert not pyleakhunt.is_tracing()


def test_bootstrap_watch_that_cannot_start_leaves_tracing_off(tmp_path, no_tracer):
    import pyleakhunt
    from pyleakhunt import lease

    timeline = tmp_path / "no such directory" / "t.plh"
    _run_program(_request(tmp_path, "watch", path=str(timeline)))
    assert not _result(tmp_path)["ok"]
    assert not pyleakhunt.is_tracing() and lease.held() == []


def test_bootstrap_without_leases_in_the_target_stops_only_what_it_started(
    tmp_path, no_tracer, monkeypatch
):
    import pyleakhunt

    # A target whose own pyleakhunt predates pyleakhunt.lease.
    monkeypatch.setitem(sys.modules, "pyleakhunt.lease", None)
    monkeypatch.delattr(pyleakhunt, "lease", raising=False)
    _run_program(_request(tmp_path, "start"))
    assert _result(tmp_path)["ok"] and pyleakhunt.get_traceback_limit() == 5
    _run_program(_request(tmp_path, "detach"))
    result = _result(tmp_path)
    assert result["ok"] and result["started_by_attach"]
    assert not pyleakhunt.is_tracing()
    pyleakhunt.start(2)
    _run_program(_request(tmp_path, "start"))
    assert _result(tmp_path)["ok"] and pyleakhunt.get_traceback_limit() == 5
    _run_program(_request(tmp_path, "detach"))
    assert _result(tmp_path)["ok"] and pyleakhunt.is_tracing()
    assert pyleakhunt.get_traceback_limit() == 2


def test_bootstrap_does_nothing_once_withdrawn(tmp_path):
    request = _request(tmp_path, "start")
    os.unlink(request["token"])  # the client gave up
    _run_program(request)
    assert _result(tmp_path) is None
    import pyleakhunt

    assert not pyleakhunt.is_tracing()


def test_bootstrap_does_nothing_once_its_directory_is_gone(tmp_path):
    module = sys.modules.get(attach.bootstrap_source()[1])
    if module is None:
        _run_program(_request(tmp_path))
        module = sys.modules[attach.bootstrap_source()[1]]
    module.main(str(tmp_path / "gone" / "request.json"))  # no error, no output


def test_bootstrap_does_nothing_in_a_forked_child(tmp_path):
    _run_program(_request(tmp_path, "start", pid=os.getppid()))
    assert _result(tmp_path) is None
    assert (tmp_path / "token").exists()


def test_bootstrap_does_nothing_after_its_deadline(tmp_path):
    _run_program(_request(tmp_path, "start", deadline=time.time() - 1))
    assert _result(tmp_path) is None
    assert (tmp_path / "token").exists()  # not even claimed


def test_bootstrap_reports_errors_instead_of_raising(tmp_path):
    _run_program(_request(tmp_path, "snapshot", path=str(tmp_path / "x.plh")))
    result = _result(tmp_path)
    assert not result["ok"] and result["kind"] == "error"
    assert "not tracing" in result["message"]
    _run_program(_request(tmp_path, "start", sample_bytes=-5))
    result = _result(tmp_path)
    assert not result["ok"] and "cannot sample" in result["message"]
    # Even a request it cannot read does not escape.
    (tmp_path / "token").write_text("")
    _run_program({"token": str(tmp_path / "token")})


def test_bootstrap_that_cannot_load_stays_silent(tmp_path, capsys):
    _request(tmp_path)
    program = attach.bootstrap_program(
        str(tmp_path / "request.json"), "/nonexistent.py", "absent", False
    )
    exec(compile(program, "<string>", "exec"), {"__name__": "__main__"})
    assert _result(tmp_path) is None
    assert capsys.readouterr() == ("", "")
    assert "absent" not in sys.modules


def test_bootstrap_is_compiled_once_and_forgotten_on_detach(tmp_path, monkeypatch):
    name = attach.bootstrap_source()[1]
    monkeypatch.delitem(sys.modules, name, raising=False)
    _run_program(_request(tmp_path))
    module = sys.modules[name]
    _run_program(_request(tmp_path))
    assert sys.modules[name] is module
    _run_program(_request(tmp_path, "detach"))
    assert name not in sys.modules


def test_bootstrap_sys_exit_does_not_escape(tmp_path, monkeypatch):
    import pyleakhunt

    monkeypatch.setattr(pyleakhunt, "start", lambda *a, **k: sys.exit(3))
    _run_program(_request(tmp_path, "start"))
    result = _result(tmp_path)
    assert not result["ok"] and "SystemExit" in result["message"]


BOOTSTRAP_IMPORT = """
import json, sys
namespace = {"__name__": "bootstrap"}
exec(open(sys.argv[1]).read(), namespace)
try:
    module, source = namespace["_import_pyleakhunt"](sys.argv[2] or None)
    print(json.dumps([source, module.__file__]))
except namespace["Refused"] as exc:
    print(json.dumps(["refused", str(exc)]))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("pyleakhunt"))))
print(json.dumps(sys.path))
"""


@pytest.mark.parametrize("fallback", ["repo", "empty", "none"])
def test_bootstrap_imports_the_fallback_only_when_it_can(tmp_path, fallback):
    import json

    directory = {"repo": str(REPO), "empty": str(tmp_path), "none": ""}[fallback]
    (tmp_path / "pyleakhunt").mkdir()
    (tmp_path / "pyleakhunt" / "__init__.py").write_text("import pyleakhunt._core\n")
    process = subprocess.run(
        # -S: no site-packages, so the editable install is not importable.
        [
            sys.executable,
            "-S",
            "-c",
            BOOTSTRAP_IMPORT,
            _attach_bootstrap.__file__,
            directory,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path / "pyleakhunt",
        timeout=30,
    )
    lines = [json.loads(line) for line in process.stdout.splitlines()]
    outcome, modules, path = lines
    assert directory not in path or not directory  # removed after the import
    if fallback == "repo":
        assert outcome[0] == "fallback"
        assert outcome[1].startswith(str(REPO))
    else:
        assert outcome[0] == "refused"
        assert "install pyleakhunt in the target's environment" in outcome[1]
        assert modules == []  # nothing half-imported left behind


# --------------------------------------------------------------------------
# Attaching for real


def _attach(pid: int, command: str = "start", **fields) -> dict:
    return attach.attach(Request(pid=pid, command=command, **fields))


@pytest.mark.parametrize("method", METHODS)
def test_two_snapshots_name_the_leaking_line(spawn, tmp_path, capsys, method):
    # -S: the target cannot import pyleakhunt itself; it uses ours.
    target = spawn(LEAKER, flags=("-S",))
    started = time.monotonic()
    result = _attach(target.pid, nframe=5, method=method)
    assert result["method"] == method
    assert result["tracing"] and result["pyleakhunt_source"] == "fallback"
    assert target.state() not in "Tt" and target.tracer() == 0
    first, second = tmp_path / "first.plh", tmp_path / "second.plh"
    code, out, err = run([target.pid, "--snapshot", first, "--method", method], capsys)
    assert code == EXIT_OK, err
    assert "wrote an aggregated snapshot to %s" % first in out
    # The second snapshot comes after 50 more batches (about 2.8 MB leaked at
    # the marked line, and 0.5 s on an idle machine), however long they take.
    batches = _batches(target)
    assert wait_until(lambda: _batches(target) >= batches + 50, timeout=15)
    code, out, err = run(
        [target.pid, "--snapshot", second, "--full", "--method", method], capsys
    )
    assert code == EXIT_OK, err
    assert "a full snapshot" in out
    growth = Snapshot.load(second).diff(Snapshot.load(first))
    culprit = growth[0].traceback[0]
    assert culprit.filename.endswith("target0.py")
    assert culprit.lineno == _line_of(LEAKER, "# the leak")
    code, out, err = run([target.pid, "--detach", "--method", method], capsys)
    assert code == EXIT_OK and "stopped tracing" in out
    assert _attach(target.pid, "status", method=method)["tracing"] is False
    assert time.monotonic() - started < 20
    assert target.alive() and target.state() not in "Tt"
    assert target.stderr.read_text() == ""  # the target printed nothing
    # The exchanges are gone, the remote_exec scripts too: they had run.
    assert _sessions(target.pid) == []


@needs_ptrace
def test_remote_exec_method_end_to_end(spawn, monkeypatch):
    # gdb stands in for sys.remote_exec, running the script file in the
    # target's main thread as 3.14 does: the branch is covered on every
    # version (the real one is tested live on 3.14+ by the tests below).
    monkeypatch.setattr(attach.methods, "REMOTE_EXEC_VERSION", (3, 0))
    target = spawn(SLEEPER)
    queued = []

    def remote_exec(pid: int, path: str) -> None:
        queued.append(path)
        found = attach.inspect_target(pid, ProcFS())
        program = "exec(__import__('pathlib').Path(%r).read_text())" % path
        report = attach.run_gdb(found, program.encode(), attach.Clock(5), Environment())
        assert report["ok"], report

    env = Environment(remote_exec=remote_exec, python=sys.version_info[:2])
    result = attach.attach(Request(target.pid, method="remote_exec"), env)
    assert result["tracing"] and result["method"] == "remote_exec"
    assert len(queued) == 1 and queued[0].startswith("/tmp/pyleakhunt-attach-")
    assert _attach(target.pid, "detach", method="gdb")["was_tracing"]
    assert target.stderr.read_text() == ""
    assert _sessions(target.pid) == []


@needs_ptrace
def test_watch_records_a_timeline_for_suspects(spawn, tmp_path, capsys):
    from pyleakhunt import cli

    target = spawn(LEAKER)
    timeline = tmp_path / "t.plh"
    code, out, err = run(
        [target.pid, "--watch", "0.2", "--duration", "1.5", "-o", timeline, "--wait"],
        capsys,
    )
    assert code == EXIT_OK, err
    assert err == ""  # stderr is not a terminal: no progress shown
    assert "recorded a timeline" in out
    assert cli.main(["suspects", str(timeline)]) == 0
    out = capsys.readouterr().out
    assert "target0.py:%d" % _line_of(LEAKER, "# the leak") in out
    # The watch started tracing, so it stopped it again.
    assert _attach(target.pid, "status")["tracing"] is False


@needs_ptrace
def test_sampling_is_passed_through(spawn, capsys):
    target = spawn(SLEEPER)
    code, out, err = run([target.pid, "--sample", "4KiB"], capsys)
    assert code == EXIT_OK, err
    assert _attach(target.pid, "status")["sample_bytes"] == 4096
    _attach(target.pid, "detach")


SELF_TRACER = """
    import sys, time
    sys.path.insert(0, sys.argv[1])  # this pyleakhunt, not an installed one
    import pyleakhunt
    pyleakhunt.start(3)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


@pytest.mark.parametrize("method", METHODS)
def test_detach_leaves_the_targets_own_tracing_running(spawn, capsys, method):
    target = spawn(SELF_TRACER, str(REPO))
    code, out, err = run([target.pid, "--nframe", "8", "--method", method], capsys)
    assert code == EXIT_OK and "was already tracing" in out, err
    assert _attach(target.pid, "status", method=method)["nframe"] == 8
    code, out, err = run([target.pid, "--detach", "--method", method], capsys)
    assert code == EXIT_OK, err
    assert "detached; tracing goes on (started by the program itself)" in out
    status = _attach(target.pid, "status", method=method)
    assert status["tracing"] and status["nframe"] == 3
    assert target.stderr.read_text() == ""


@needs_ptrace
def test_the_targets_errors_are_surfaced(spawn, capsys):
    target = spawn(
        """
        import sys, time
        sys.path.insert(0, sys.argv[1])
        import pyleakhunt

        def start(nframe, sample_bytes=None, total_nframe=True, fresh_objects=None):
            raise NotImplementedError("sampled tracing is not available yet")

        pyleakhunt.start = start
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
        """,
        str(REPO),
    )
    code, _, err = run([target.pid, "--sample", "512KiB"], capsys)
    assert code == EXIT_TARGET_ERROR
    assert_one_error_line(err, "cannot sample", "NotImplementedError")
    code, _, err = run([target.pid, "--snapshot", "x.plh"], capsys)
    assert code == EXIT_TARGET_ERROR
    assert_one_error_line(err, "not tracing")
    assert target.alive()


def _wait_for_a_thread_in_sleep(pid: int) -> None:
    """Wait until a thread other than the main one is inside libc's sleep()."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for tid in os.listdir("/proc/%d/task" % pid):
            if int(tid) == pid:
                continue
            try:
                fields = Path("/proc/%d/task/%s/syscall" % (pid, tid)).read_text()
            except OSError:
                continue
            # clock_nanosleep(CLOCK_REALTIME, ...) (x86-64: 230, AArch64: 115)
            if fields.split()[:2] in (["230", "0x0"], ["115", "0x0"]):
                return
        time.sleep(0.01)
    raise AssertionError("the thread never got into sleep()")


GIL_HOG = """
    import ctypes, sys, threading, time

    libc = ctypes.PyDLL(None)  # PyDLL: the call keeps the GIL

    def hog():
        print("ready", flush=True)
        libc.sleep(int(sys.argv[1]))
        print("GIL released", flush=True)

    threading.Thread(target=hog, daemon=True).start()
    while True:
        time.sleep(0.01)
"""


@pytest.mark.parametrize("method", METHODS)
def test_gil_held_in_c_times_out_and_leaves_nothing_behind(spawn, capsys, method):
    target = spawn(GIL_HOG, "7")
    started = time.monotonic()
    _wait_for_a_thread_in_sleep(target.pid)
    # 3 s, not 1.5: gdb has to queue the request within the timeout (it
    # needs about 0.2 s; on a loaded machine it once overran 1.5 s, and the
    # command then timed out in gdb, not waiting for the GIL).  The GIL is
    # held 7 s, so it is still held when the 3 s are up.
    code, out, err = run([target.pid, "--timeout", "3", "--method", method], capsys)
    assert code == EXIT_TIMEOUT, (out, err)
    assert time.monotonic() - started < 10
    assert_one_error_line(err, "timed out", "GIL", "withdrawn", "will do nothing")
    assert target.alive() and target.state() not in "Tt"
    if method == "remote_exec":
        # The queued script is still to run: its file stays, alone, until
        # then (deleted, the target would print an error when it runs).
        [left] = _sessions(target.pid)
        assert os.listdir("/tmp/" + left) == [attach.SCRIPT_NAME]
    # When the GIL comes back, the queued request finds itself withdrawn,
    # does nothing, and (remote_exec) deletes its own file.
    assert wait_until(lambda: _sessions(target.pid) == [], timeout=15)
    assert wait_until(lambda: "GIL released" in target.output(), timeout=15)
    assert _attach(target.pid, "status", method=method)["tracing"] is False
    assert target.stderr.read_text() == ""


@needs_remote_exec
def test_a_script_replaced_in_the_queue_is_cleaned_up(spawn, capsys):
    # sys.remote_exec keeps one script per process: a second command queued
    # while the first is still pending replaces it, so the first never
    # runs, and its file is deleted once the second has run.
    target = spawn(GIL_HOG, "5")
    _wait_for_a_thread_in_sleep(target.pid)
    code, _, err = run([target.pid, "--timeout", "1"], capsys)
    assert code == EXIT_TIMEOUT, err
    [first] = _sessions(target.pid)
    code, out, err = run([target.pid, "--status", "--timeout", "15"], capsys)
    assert code == EXIT_OK, err
    assert "is not tracing" in out
    assert first not in os.listdir("/tmp")
    assert _sessions(target.pid) == []
    assert target.stderr.read_text() == ""


@needs_remote_exec
@pytest.mark.parametrize(
    "how, flags, environ",
    [
        ("environment", (), {"PYTHON_DISABLE_REMOTE_DEBUG": "1"}),
        ("-X disable-remote-debug", ("-X", "disable-remote-debug"), {}),
    ],
)
def test_a_target_that_disabled_remote_debugging_is_refused(
    spawn, capsys, monkeypatch, tmp_path, how, flags, environ
):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    target = spawn(SLEEPER, flags=flags)
    monkeypatch.delenv("PYTHON_DISABLE_REMOTE_DEBUG", raising=False)
    for argv in ([], ["--method", "remote_exec"]):
        code, out, err = run([target.pid, *argv], capsys)
        assert code == EXIT_REFUSED, err
        assert_one_error_line(
            err, "PID %d: remote debugging is disabled" % target.pid, how, "gdb"
        )
    assert _sessions(target.pid) == []  # refused before anything was made
    # Python itself agrees: without our check, sys.remote_exec refuses it.
    harmless = tmp_path / "harmless.py"
    harmless.write_text("pass\n")
    with pytest.raises(RuntimeError, match="not enabled"):
        sys.remote_exec(target.pid, str(harmless))
    if GDB_PROBLEM is None:
        # A debugger, asked for by name, still attaches.
        code, out, err = run([target.pid, "--method", "gdb"], capsys)
        assert code == EXIT_OK, err
        code, out, err = run([target.pid, "--detach", "--method", "gdb"], capsys)
        assert code == EXIT_OK and "stopped tracing" in out, err
    assert target.stderr.read_text() == ""


#: The directory that holds the pyleakhunt package the target imports.
PACKAGE_ROOT = Path(attach.__file__).resolve().parents[2]
TMP = Path("/tmp")
#: CI clones the project under /tmp: a private /tmp must show it again.
PACKAGE_UNDER_TMP = TMP in PACKAGE_ROOT.parents


def _private_tmp_shell() -> str:
    """The shell line that gives a target a /tmp of its own, then runs it.

    When pyleakhunt is under /tmp (CI clones the project there), that
    directory is bound back in at its own path: the target must import
    the package it is attached with, and everything else in its /tmp
    stays apart from ours.
    """
    mount = "mount -t tmpfs none /tmp"
    if PACKAGE_UNDER_TMP:
        root = shlex.quote(str(PACKAGE_ROOT))
        seen_from_mnt = shlex.quote(str("/mnt" / PACKAGE_ROOT.relative_to(TMP)))
        mount = (
            f"mount --bind /tmp /mnt && {mount} && mkdir -p {root}"
            f" && mount --bind {seen_from_mnt} {root} && umount -l /mnt"
        )
    return mount + ' && exec "$0" -c "$1"'


def _private_tmp_problem() -> Optional[str]:
    """Why a target with a /tmp of its own cannot be made here, or None."""
    if sys.executable.startswith("/tmp/") or sys.prefix.startswith("/tmp/"):
        return "this Python is under /tmp, which a private /tmp would hide"
    if shutil.which("unshare") is None:
        return "no unshare(1) to make a mount namespace"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", _private_tmp_shell(), "sh", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return "cannot mount a private /tmp: " + probe.stderr.strip()
    return None


@pytest.mark.parametrize("method", METHODS)
def test_a_target_with_its_own_tmp(spawn, capsys, method):
    # A container or systemd's PrivateTmp: the target's /tmp is not ours.
    # gdb's path works through /proc/PID/root; sys.remote_exec needs the
    # script's path to be the same on both sides, so auto falls back to gdb.
    problem = _private_tmp_problem()
    if problem is not None:
        pytest.skip(problem)
    shell = _private_tmp_shell()
    source = textwrap.dedent(SLEEPER)
    target = spawn(argv=["unshare", "-m", "sh", "-c", shell, sys.executable, source])
    assert os.stat("/proc/%d/root/tmp" % target.pid).st_ino != os.stat("/tmp").st_ino
    if method == "remote_exec":
        code, _, err = run([target.pid, "--method", "remote_exec"], capsys)
        assert code == EXIT_REFUSED
        assert_one_error_line(err, "another /tmp", "nsenter -m -t %d" % target.pid)
        if GDB_PROBLEM is not None:
            return
    result = _attach(target.pid)
    assert result["tracing"] and result["method"] == "gdb"
    assert _attach(target.pid, "detach")["was_tracing"]
    # Nothing left, beside the checkout bound in (_private_tmp_shell).
    kept = list(PACKAGE_ROOT.relative_to(TMP).parts[:1]) if PACKAGE_UNDER_TMP else []
    assert os.listdir("/proc/%d/root/tmp" % target.pid) == kept
    assert target.stderr.read_text() == ""


@needs_remote_exec
def test_an_x_option_python_does_not_know_disables_nothing(spawn):
    # CPython spells it -X disable-remote-debug and ignores unknown -X
    # options: with underscores, remote debugging stays on, and so does
    # attaching (remote_debug_disabled reads it the same way).
    target = spawn(SLEEPER, flags=("-X", "disable_remote_debug"))
    result = _attach(target.pid, "status")
    assert result["ok"] and result["method"] == "remote_exec"
    assert target.stderr.read_text() == ""


@needs_ptrace
def test_watch_shows_progress_on_a_terminal_only(spawn, tmp_path):
    import pty

    target = spawn(LEAKER)
    timeline = tmp_path / "t.plh"
    argv = [sys.executable, "-m", "pyleakhunt.attach", str(target.pid)]
    argv += ["--watch", "0.5", "--duration", "3.5", "-o", str(timeline), "--wait"]
    try:
        primary, secondary = pty.openpty()
    except OSError as exc:  # a chroot without devpts, for one
        pytest.skip(
            "no pseudo-terminal can be opened here (%s); the display itself is "
            "tested by test_progress_waits_then_redraws_and_erases" % exc
        )
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=secondary, cwd=REPO
        )
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the command exited, the pty is closed
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=30)
    finally:
        os.close(primary)
    assert process.returncode == EXIT_OK, shown
    assert b"recorded a timeline" in out
    text = shown.decode()
    line = "\rpyleakhunt: PID %d is recording a timeline in %s: " % (
        target.pid,
        timeline,
    )
    assert line + "2 s of 3.5 s" in text or line + "3 s of 3.5 s" in text, text
    assert "0 s of" not in text and "1 s of" not in text  # quiet for 2 s
    assert text.endswith("\r\x1b[K")  # the line is erased at the end


def test_progress_waits_then_redraws_and_erases():
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = FakeTime()
    terminal = Terminal()
    progress = attach.Progress(
        lambda: "%g s" % clock.now, terminal, monotonic=clock.monotonic
    )
    for _ in range(40):  # 4 s in steps of 0.1 s
        progress.update()
        clock.sleep(0.1)
    progress.close()
    lines = terminal.getvalue().split("\r")
    assert lines[0] == "" and lines[-1] == "\x1b[K"  # erased at the end
    times = [float(line.split()[1]) for line in lines[1:-1]]
    assert times[0] >= 2.0  # nothing in the first 2 s
    assert all(b - a >= 0.25 for a, b in zip(times, times[1:]))  # 4 a second
    assert len(times) >= 6
    piped = io.StringIO()
    progress = attach.Progress(lambda: "x", piped, monotonic=clock.monotonic)
    clock.sleep(10)
    progress.update()
    progress.close()
    assert piped.getvalue() == ""


FLASK_APP = """
    import sys
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask(__name__)
    sessions = []

    @app.route("/")
    def index():
        sessions.append(bytearray(256))  # the leak
        return "ok"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    print("ready", server.server_port, flush=True)
    server.serve_forever()
"""


class Load(threading.Thread):
    """A client that keeps sending requests and counts the outcomes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failed: List[str] = []
        self.slowest = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=10
                )
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                connection.close()
                if response.status == 200 and body == b"ok":
                    self.ok += 1
                else:
                    self.failed.append("HTTP %d" % response.status)
            except OSError as exc:
                self.failed.append(repr(exc))
            self.slowest = max(self.slowest, time.monotonic() - started)

    def served_since(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.ok <= count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.ok > count


def _start_flask(spawn) -> tuple:
    target = spawn(FLASK_APP)
    port = int(target.output().split()[1])
    load = Load(port)
    load.start()
    assert load.served_since(0)
    return target, load


#: The refusal of a target caught creating a thread or a process (from /proc
#: before attaching, or by gdb once attached).  A threaded server under load
#: starts a thread per request, and a thread caught at its very start can
#: look like a fork: refusing then is right, and trying again too.
FORKING = re.compile(
    r"the process is forking: thread \d+ is in clone3?\(\)"
    r"|in the middle of a fork \(thread \d+ is in clone3?\(\)\)"
)


def _run_while_threads_start(argv: list, capsys, attempts: int = 20) -> tuple:
    """`run`, tried again (up to *attempts* times) on exactly that refusal."""
    for _ in range(attempts):
        code, out, err = run(argv, capsys)
        if not (code == EXIT_REFUSED and FORKING.search(err)):
            break
    return code, out, err


@needs_ptrace
@pytest.mark.skipif(not _flask_python(), reason="Flask is not installed")
def test_flask_keeps_serving_while_attached(spawn, tmp_path, capsys):
    target, load = _start_flask(spawn)
    try:
        for argv in (
            [target.pid],
            [target.pid, "--snapshot", tmp_path / "a.plh"],
            [target.pid, "--snapshot", tmp_path / "b.plh"],
            [target.pid, "--detach"],
        ):
            before = load.ok
            code, _, err = _run_while_threads_start(argv, capsys)
            assert code == EXIT_OK, err
            assert load.served_since(before)
    finally:
        load.stopping.set()
        load.join()
    assert load.failed == []
    assert load.slowest < 5
    growth = Snapshot.load(tmp_path / "b.plh").diff(Snapshot.load(tmp_path / "a.plh"))
    assert any(
        stat.traceback[0].lineno == _line_of(FLASK_APP, "# the leak")
        for stat in growth[:5]
    )
    assert target.alive()


@needs_ptrace
@pytest.mark.skipif(not SLOW, reason="slow: set PYLEAKHUNT_SLOW_TESTS=1")
@pytest.mark.skipif(not _flask_python(), reason="Flask is not installed")
def test_hundred_cycles_on_a_busy_server(spawn, tmp_path, capsys):
    target, load = _start_flask(spawn)
    maps_before = len(Path("/proc/%d/maps" % target.pid).read_text().splitlines())
    started = time.monotonic()
    try:
        for cycle in range(100):
            snapshot = tmp_path / ("s%d.plh" % (cycle % 2))
            for argv in (
                [target.pid, "--nframe", "5"],
                [target.pid, "--snapshot", snapshot],
                [target.pid, "--detach"],
            ):
                code, _, err = _run_while_threads_start(argv, capsys)
                assert code == EXIT_OK, "cycle %d: %s" % (cycle, err)
                assert target.state() not in "Tt"
        before = load.ok
        assert load.served_since(before)
    finally:
        load.stopping.set()
        load.join()
    elapsed = time.monotonic() - started
    sys.stderr.write(
        "\n100 cycles in %.1f s; %d requests served, %d failed, slowest %.2f s\n"
        % (elapsed, load.ok, len(load.failed), load.slowest)
    )
    assert load.failed == []
    assert target.alive()
    assert target.stderr.read_text().count("Traceback") == 0
    # Every mapping gdb made for a queued program was released again.
    maps_after = len(Path("/proc/%d/maps" % target.pid).read_text().splitlines())
    assert maps_after < maps_before + 30, (maps_before, maps_after)
    prefix = "pyleakhunt-attach-%d-" % target.pid
    assert not any(name.startswith(prefix) for name in os.listdir("/tmp"))


#: A gdb that fails as gdb 13 does on a CPU with AMX, and logs its argv.
BROKEN_GDB = """#!/bin/sh
echo "$@" >> "$0.log"
echo "Couldn't write extended state status: Bad address." >&2
exit 1
"""


@pytest.mark.skipif(PTRACE_PROBLEM is not None, reason=str(PTRACE_PROBLEM))
def test_a_gdb_that_cannot_restore_registers_never_touches_the_target(
    spawn, tmp_path, capsys, monkeypatch
):
    # gdb 13 on a CPU with AMX cannot write the registers back after a
    # call, and the target then fails (a sleep raises OSError 514): the
    # attach must find that out on a process of its own, and refuse.
    gdb = tmp_path / "old-gdb"
    gdb.write_text(BROKEN_GDB)
    gdb.chmod(0o755)
    monkeypatch.setenv("PYLEAKHUNT_GDB", str(gdb))
    target = spawn(SLEEPER)
    code, _, err = run([target.pid, "--method", "gdb"], capsys)
    assert code == EXIT_NO_GDB
    assert_one_error_line(err, "cannot restore a thread's registers", "PYLEAKHUNT_GDB")
    calls = (tmp_path / "old-gdb.log").read_text().splitlines()
    assert len(calls) == 1 and "-p %d " % target.pid not in calls[0] + " "
    assert target.alive() and target.stderr.read_text() == ""
    assert _sessions(target.pid) == []


def test_a_pyleakhunt_gdb_that_is_not_there_is_refused(spawn, capsys, monkeypatch):
    monkeypatch.setenv("PYLEAKHUNT_GDB", "/nonexistent/gdb")
    target = spawn(SLEEPER)
    code, _, err = run([target.pid, "--method", "gdb"], capsys)
    assert code == EXIT_NO_GDB
    assert_one_error_line(err, "PYLEAKHUNT_GDB=/nonexistent/gdb", "not an executable")
