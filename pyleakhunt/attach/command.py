"""One ``pyleakhunt attach`` command from start to end: checks, method,
session, queueing, waiting."""

from __future__ import annotations

import json
import os
import shutil
from typing import (
    Any,
    Dict,
    List,
    Optional,
)

from ..errors import warn
from ..process.elf import EM_X86_64
from ..process.proc import ProcFS
from .base import (
    EXIT_FAILED,
    EXIT_FILE,
    EXIT_NO_GDB,
    EXIT_REFUSED,
    EXIT_TARGET_ERROR,
    EXIT_TIMEOUT,
    SETTLE_SECONDS,
    AttachError,
    Clock,
    Environment,
    Request,
)
from .checks import (
    Target,
    check_not_forking,
    check_output,
    check_ptrace_permitted,
    check_state,
    check_version,
    inspect_target,
    remote_debug_disabled,
    syscall_name,
)
from .methods import (
    check_gdb_can_call,
    choose_method,
    run_gdb,
    run_remote_exec,
    verify_running,
)
from .output import Progress, note
from .session import (
    SCRIPT_NAME,
    Session,
    bootstrap_program,
    bootstrap_source,
    sweep_orphans,
    wait_for_result,
    withdrawn_scripts,
)


def _main_thread_hint(target: Target, proc: ProcFS, env: Environment) -> str:
    """What the target's main thread is doing, for the timeout message.

    A thread waiting for the GIL wakes up every few milliseconds, so the
    system call it waits in is sampled a few times.
    """
    for _ in range(20):
        call = proc.syscall(target.pid, target.pid)
        if call is not None:
            break
        env.sleep(0.005)
    else:
        return "its main thread runs without reaching Python code"
    name = syscall_name(target.machine or EM_X86_64, call.number)
    if name == "futex()":
        return (
            "its main thread waits in futex(): for the GIL, held by another "
            "thread in a long C call, or on a lock (thread.join() and the like)"
        )
    return "its main thread waits in %s without running Python code" % name


def _fallback_path(target: Target) -> Optional[str]:
    """The directory holding this pyleakhunt package, for the target to use.

    Only if this installation has an extension module built for the
    target's Python version (the bootstrap checks the exact file name
    again, against the target's own list of suffixes).
    """
    # pyleakhunt/, the parent of this package (pyleakhunt/attach/).
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if target.version is None:
        return None
    tag = "cpython-%d%d%s" % (target.version + (target.abiflags,))
    try:
        names = os.listdir(package)
    except OSError:
        return None
    if any(name.startswith("_core.%s-" % tag) for name in names):
        return os.path.dirname(package)
    return None


def _queue_with_gdb(
    target: Target, program: str, clock: Clock, env: Environment, verbose: bool
) -> None:
    """Queue *program* in *target* with gdb (`run_gdb`); AttachError if not."""
    gdb = env.which_gdb()
    assert gdb is not None
    check_gdb_can_call(gdb)
    report = run_gdb(target, program.encode("utf-8"), clock, env, verbose)
    warning = verify_running(target.pid, env.proc)
    if warning:
        warn(warning)
    if not report.get("ok"):
        code = EXIT_REFUSED if report.get("kind") == "refused" else EXIT_FAILED
        raise AttachError("PID %d: %s" % (target.pid, report.get("message")), code)
    if verbose:
        note("queued by thread %s (%s)" % (report.get("thread"), report.get("how")))


def _queue_with_remote_exec(
    session: Session,
    request_path: str,
    source_path: str,
    module: str,
    env: Environment,
) -> None:
    """Write the program as a script file and queue it with sys.remote_exec."""
    script = session.path(SCRIPT_NAME)
    program = bootstrap_program(request_path, source_path, module, False, script)
    session.write_file(SCRIPT_NAME, program)
    run_remote_exec(session.target, script, env)
    session.queued_script = SCRIPT_NAME  # from now on, it may run any time


def _wait_for_watch(session: Session, request: Request, env: Environment) -> bool:
    """Wait until the target's watch is over (--wait); True if it succeeded."""
    budget = env.clock(request.duration + request.timeout)
    started = env.monotonic()

    def text() -> str:
        elapsed = min(env.monotonic() - started, request.duration)
        return "PID %d is recording a timeline in %s: %.0f s of %g s" % (
            session.target.pid,
            request.path,
            elapsed,
            request.duration,
        )

    progress = Progress(text, monotonic=env.monotonic)
    try:
        done = wait_for_result(session, budget, env, "done.json", progress.update)
    finally:
        progress.close()
    return bool(done and done.get("ok"))


def _method_for_another_tmp(target: Target, request: Request, env: Environment) -> str:
    """gdb, for a target whose ``/tmp`` is not ours, or AttachError."""
    if request.method == "auto" and env.which_gdb() is not None:
        return "gdb"
    other = "use --method gdb"
    if request.method == "auto":
        other = "install gdb (apt-get install gdb)"
    raise AttachError(
        "PID %d has another /tmp than pyleakhunt (a container, or systemd's "
        "PrivateTmp), and sys.remote_exec needs the script's path to be the "
        "same for both; run pyleakhunt in its mount namespace (nsenter -m -t "
        "%d), or %s" % (target.pid, target.pid, other),
        EXIT_REFUSED if request.method == "remote_exec" else EXIT_NO_GDB,
    )


def attach(request: Request, env: Optional[Environment] = None) -> Dict[str, Any]:
    """Run one attach command; return the target's result (``ok`` is True).

    Raises AttachError for every failure, with its exit code.
    """
    env = env or Environment()
    proc = env.proc
    if request.pid == env.own_pid:
        raise AttachError("pyleakhunt cannot attach to itself", EXIT_REFUSED)
    clock = env.clock(request.timeout)
    target = inspect_target(request.pid, proc)
    check_version(target)
    check_state(target.pid, proc, env.clock(SETTLE_SECONDS))
    check_not_forking(target, proc, env.clock(SETTLE_SECONDS))
    check_ptrace_permitted(target, proc, env.own_pid)
    assert target.version is not None
    try:
        method = choose_method(
            target.version,
            env.python,
            env.remote_exec is not None,
            env.which_gdb(),
            request.method,
            remote_debug_disabled(target.pid, proc),
        )
    except AttachError as exc:
        if exc.code != EXIT_REFUSED:
            raise
        raise AttachError("PID %d: %s" % (target.pid, exc), exc.code) from None
    if request.path is not None:
        check_output(target, request.path, proc)

    sweep_orphans(target, proc)
    try:
        session = Session(target, proc)
    except OSError as exc:
        raise AttachError(
            "cannot make a directory for the exchange in PID %d's /tmp: %s"
            % (target.pid, exc.strerror or exc),
            EXIT_FILE,
        ) from None
    try:
        if method == "remote_exec" and not session.same_path_here():
            # sys.remote_exec checks the script's path here, and the target
            # opens the same path there.
            method = _method_for_another_tmp(target, request, env)
        wire = {
            "pid": target.pid,
            "command": request.command,
            "token": session.path("token"),
            "claimed": session.path("claimed"),
            "result": session.path("result.json"),
            "deadline": env.wall_clock() + clock.remaining(),
            "fallback_path": _fallback_path(target),
            "nframe": request.nframe,
            "sample_bytes": request.sample_bytes,
            "path": request.path,
            "full": request.full,
            "interval": request.interval,
            "duration": request.duration,
            "done": session.path("done.json") if request.wait else None,
        }
        displaced: List[str] = []
        source, module = bootstrap_source()
        source_path = session.write_file("bootstrap_source.py", source)
        request_path = session.write_file("request.json", json.dumps(wire))
        if method == "gdb":
            program = bootstrap_program(request_path, source_path, module, True)
            _queue_with_gdb(target, program, clock, env, request.verbose)
        else:
            displaced = withdrawn_scripts(target, proc)
            _queue_with_remote_exec(session, request_path, source_path, module, env)
        result = wait_for_result(session, clock, env)
        if result is not None:
            # Ours ran, so the withdrawn scripts seen before it was queued
            # either ran before it or were replaced by it.
            for path in displaced:
                shutil.rmtree(path, ignore_errors=True)
        if result is None:
            raise AttachError(
                "timed out after %.1f s: PID %d did not run the request (%s); "
                "it was withdrawn: if the target runs it later, it will do "
                "nothing"
                % (request.timeout, target.pid, _main_thread_hint(target, proc, env)),
                EXIT_TIMEOUT,
            )
        if not result.get("ok"):
            kind = result.get("kind")
            code = {"refused": EXIT_REFUSED, "late": EXIT_TIMEOUT}.get(
                kind, EXIT_TARGET_ERROR
            )
            raise AttachError("PID %d: %s" % (target.pid, result.get("message")), code)
        result["method"] = method
        if request.command == "watch" and request.wait:
            result["watch_finished"] = _wait_for_watch(session, request, env)
        return result
    finally:
        session.close()
