"""``pyleakhunt run``: run a Python program with tracing on from its first
line and record its timeline; with ``-- COMMAND``, run a command whose
Python processes each trace themselves (`pyleakhunt.production`)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .. import lease, production, report
from ..growth import DEFAULT_RULE
from ..report import TimelineSuspects
from ..snapshot import Snapshot
from ..watcher import LeakWatcher
from . import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FileError,
    PyleakhuntError,
    UsageError,
    silence_stdout,
    warn,
)
from .files import analyse_timeline, reading
from .options import DEFAULT_KEY, dump_signal, interval, nframe, sample_size
from .output import print_json
from .suspects import JSON_SUSPECTS

SUMMARY = "run a Python program with tracing on and record its timeline"
USAGE = (
    "pyleakhunt run [-h] [--nframe N] [--sample SIZE] [--interval S] "
    "[-o DIR] [--json] (script.py | -m module | [--signal NAME] -- COMMAND) "
    "[args ...]"
)
JSON_RUN = """\
run:      {"command": "run", "timeline", "pid", "exit_code", "samples",
           "duration_s", "sampling_error": str|null,
           "suspects": [SUSPECT, ...]}
          (one line after the program's output; SUSPECT as in suspects;
          with -- COMMAND also "timelines": [path, ...], one per traced
          process, "timeline" being the command's own or null, "pid" the
          command's)"""
JSON_SHAPES = (JSON_RUN, JSON_SUSPECTS)


@dataclass
class Target:
    """What ``run`` executes: a script, a module or a command, with its
    arguments.

    *kind* is ``"script"`` or ``"module"`` (run in this process by
    `prepare` and `execute`), or ``"command"`` (``-- COMMAND``: run in a
    child process by `_run_command`).
    """

    kind: str
    name: str
    args: List[str]

    def check(self) -> None:
        """Raise FileError if the script, module or command cannot be found."""
        if self.kind == "command":
            if shutil.which(self.name) is None:
                raise FileError("command not found: %r" % self.name)
            return
        if self.kind == "script":
            try:
                if os.path.isfile(self.name):
                    open(self.name, "rb").close()
                elif not os.path.isdir(self.name):
                    raise FileNotFoundError(2, "No such file or directory")
            except OSError as exc:
                raise FileError(
                    "can't open file %r: %s" % (self.name, exc.strerror or exc)
                ) from None
            return
        # For a dotted name this imports the parent packages (untraced),
        # as python -m does before running the module.
        try:
            found = importlib.util.find_spec(self.name) is not None
            problem = ""
        except (ImportError, ValueError) as exc:
            found, problem = False, ": %s" % exc
        if not found:
            raise FileError("No module named %r%s" % (self.name, problem))

    def prepare(self) -> None:
        """Set sys.argv and sys.path[0] as Python does for this target."""
        if self.kind == "script":
            sys.argv = [self.name, *self.args]
            if os.path.isfile(self.name):
                first = os.path.dirname(os.path.realpath(self.name))
            else:  # a directory or zip file with a __main__.py
                first = os.path.abspath(self.name)
        else:
            sys.argv = ["-m", *self.args]  # runpy sets argv[0] to the file
            first = os.getcwd()
        if getattr(sys.flags, "safe_path", False):
            return  # python -P: no script directory on the path
        if sys.path:
            sys.path[0] = first
        else:
            sys.path.insert(0, first)

    def execute(self) -> Dict[str, Any]:
        """Run the program as ``__main__``; its exceptions propagate.

        Returns the program's module globals (runpy's copy of them): what
        the program still held when it ended stays alive as long as the
        caller keeps them.
        """
        if self.kind == "script":
            # Absolute, as Python makes __main__.__file__: tracebacks
            # recorded in the timeline then stay readable from anywhere.
            return runpy.run_path(os.path.abspath(self.name), run_name="__main__")
        return runpy.run_module(self.name, run_name="__main__", alter_sys=True)


def _target(args: argparse.Namespace) -> Target:
    if args.module is not None:
        if not args.module:
            raise UsageError(
                "argument -m: expected a module name (see 'pyleakhunt run --help')"
            )
        return Target("module", args.module[0], args.module[1:])
    if not args.program:
        raise UsageError(
            "give a script to run, or -m module (see 'pyleakhunt run --help')"
        )
    if args.program[0] == "--":
        if len(args.program) < 2:
            raise UsageError("give a command after '--' (see 'pyleakhunt run --help')")
        return Target("command", args.program[1], args.program[2:])
    return Target("script", args.program[0], args.program[1:])


class _CountingWatcher(LeakWatcher):
    """A LeakWatcher that counts the samples it takes (its series is thinned)."""

    taken = 0

    def sample(self) -> Snapshot:
        snapshot = super().sample()
        self.taken += 1
        return snapshot


def _system_exit_code(exc: SystemExit) -> int:
    """The exit status Python gives ``SystemExit(code)``, printing a message."""
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    sys.stderr.write("%s\n" % (code,))
    return EXIT_FAILED


def _execute(target: Target) -> Tuple[int, Optional[BaseException], Any]:
    """Run *target*; return its exit code, the exception to report, and
    what keeps the program's objects alive.

    The last sample must see what the program held when it ended: runpy
    releases the module's namespace as it returns, and a leak that grew in
    every sample would then end with a drop, which reads as a plateau.  The
    third value holds that namespace: the globals runpy returns or, when the
    program raised (``sys.exit()`` included), the exception, whose
    traceback holds the program's frames and their globals.
    """
    try:
        namespace = target.execute()
    except SystemExit as exc:
        return _system_exit_code(exc), None, exc
    except KeyboardInterrupt as exc:
        return EXIT_INTERRUPTED, exc, exc
    except BaseException as exc:
        return EXIT_FAILED, exc, exc
    return EXIT_OK, None, namespace


def _print_program_exception(exc: BaseException) -> None:
    """Print *exc* as Python would, without the frames of pyleakhunt and runpy."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_globals is globals()
        or tb.tb_frame.f_globals.get("__name__") == "runpy"
    ):
        tb = tb.tb_next
    exc.__traceback__ = tb  # what Python's excepthook prints
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:
        import traceback

        traceback.print_exception(type(exc), exc, tb)


def _flush_program_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout:
                silence_stdout()
        except Exception:  # the program may have closed or replaced it
            pass


#: ``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``: one name for every
#: timeline, whoever writes it.
timeline_path = production.timeline_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt run``."""
    parser.add_argument(
        "--nframe",
        type=nframe,
        default=10,
        metavar="N",
        help="frames kept per traceback (default: 10)",
    )
    parser.add_argument(
        "--sample",
        type=sample_size,
        default=None,
        metavar="SIZE",
        help=(
            "sampled tracing: record one allocation per SIZE bytes on average "
            "(for example 512KiB); figures become estimates "
            "(default: trace every allocation)"
        ),
    )
    parser.add_argument(
        "--signal",
        dest="dump_signal",
        type=dump_signal,
        default=production.DEFAULT_SIGNAL,
        metavar="NAME",
        help=(
            "with -- COMMAND: the signal that makes a traced process write a "
            "snapshot file in DIR: SIGUSR1, SIGUSR2 (default), SIGRTMIN+N "
            "(gunicorn workers reset SIGUSR2), or none"
        ),
    )
    parser.add_argument(
        "--interval",
        type=interval,
        default=1.0,
        metavar="S",
        help="seconds between samples (default: 1.0)",
    )
    parser.add_argument(
        "-o",
        dest="output_dir",
        default=".",
        metavar="DIR",
        help=(
            "directory of the timeline file, or with -- COMMAND of the "
            "timelines, one per process (default: current directory)"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON line on stdout, after the program",
    )
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        help="-m module [args ...]: run a library module as a script",
    )
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        help=(
            "the script to run, then its arguments; or '--' then a command "
            "(gunicorn app:app, python3 app.py...) to run in a child process, "
            "tracing every Python process it starts"
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Run a program under tracing; return its exit code."""
    target = _target(args)
    if target.kind == "command":
        target.check()
        return _run_command(target, args)
    saved_argv, saved_path = sys.argv, list(sys.path)
    try:
        target.prepare()
        target.check()
        with reading(args.output_dir, "create"):
            os.makedirs(args.output_dir, exist_ok=True)
        path = timeline_path(args.output_dir)
        with reading(path, "write"):
            watcher = _CountingWatcher(
                interval=args.interval,
                key_type=DEFAULT_KEY,
                nframe=args.nframe,
                path=path,
            )
        return _trace(target, watcher, path, args)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _trace(
    target: Target, watcher: _CountingWatcher, path: str, args: argparse.Namespace
) -> int:
    if production.is_started():
        production.stop()  # PYLEAKHUNT was set for us: run takes over
    try:
        # The watcher, started below and stopped after the program, keeps
        # the free lists empty (fresh_objects) for the whole run.
        tracer = lease.acquire(
            args.nframe, sample_bytes=args.sample, owner="run", empty_free_lists=True
        )
    except ValueError as exc:  # already tracing at another rate
        raise UsageError(str(exc)) from None
    started = time.monotonic()
    keep_alive: Any = None
    try:
        watcher.start()
        code, exc, keep_alive = _execute(target)
    finally:
        try:
            watcher.stop()  # its last sample, while keep_alive holds the program's
        finally:
            del keep_alive  # the program's objects may go now
            tracer.release()
    duration = time.monotonic() - started
    _flush_program_output()
    if exc is not None:
        _print_program_exception(exc)
        exc = None  # drop the program's frames
    suspects = watcher.suspects(5)
    if args.json:
        _print_run_json(
            {
                "command": "run",
                "timeline": path,
                "pid": os.getpid(),
                "exit_code": code,
                "samples": watcher.taken,
                "duration_s": duration,
                "sampling_error": (
                    None
                    if watcher.error is None
                    else "%s: %s" % (type(watcher.error).__name__, watcher.error)
                ),
                "suspects": [
                    report.suspect_json(s, os.getpid(), path) for s in suspects
                ],
            }
        )
    else:
        lines = report.run_summary(
            path,
            watcher.taken,
            duration,
            suspects,
            watcher.rule.min_samples,
            watcher.error,
            watcher.interval,
        )
        sys.stderr.write("".join(line + "\n" for line in lines))
    return code


#: Signals a supervisor sends that ``run -- COMMAND`` passes on to the
#: command.  SIGINT and SIGQUIT are not among them: the terminal sends
#: Ctrl-C and Ctrl-backslash to the command itself (its process group).
FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGTERM",
        "SIGHUP",
        "SIGUSR1",
        "SIGUSR2",
        "SIGWINCH",
        "SIGTTIN",
        "SIGTTOU",
    )
    if hasattr(signal, name)
)
_TIMELINE_NAME = re.compile(r"^pyleakhunt-(\d+)-\d{8}-\d{6}(?:-\d+)?\.plh$")


def _timeline_files(directory: str) -> Dict[str, int]:
    """The timelines named by `timeline_path` in *directory*: path -> pid."""
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    found = {}
    for name in names:
        match = _TIMELINE_NAME.match(name)
        if match:
            found[os.path.join(directory, name)] = int(match.group(1))
    return found


def _spawn(argv: List[str], env: Dict[str, str]) -> Tuple[int, int]:
    """Run *argv* to its end, passing on `FORWARDED_SIGNALS`; return its
    exit status (128 + N when killed by signal N, as a shell says) and pid."""
    try:
        child = subprocess.Popen(argv, env=env)
    except OSError as exc:
        raise FileError("cannot run %s: %s" % (argv[0], exc.strerror or exc)) from None

    def forward(signum: int, frame: Any) -> None:
        try:
            child.send_signal(signum)
        except OSError:
            pass

    previous: Dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, forward)
        # After the spawn, so that the command does not inherit SIG_IGN.
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return (128 - code if code < 0 else code), child.pid


def _run_command(target: Target, args: argparse.Namespace) -> int:
    """``run -- COMMAND``: run the command with ``PYLEAKHUNT`` set, then sum
    up the timelines its Python processes wrote."""
    directory = os.path.abspath(args.output_dir)
    if "," in directory:
        raise UsageError(
            "-o %s: the directory cannot contain a comma (PYLEAKHUNT separates "
            "its options with commas)" % directory
        )
    with reading(directory, "create"):
        os.makedirs(directory, exist_ok=True)
    settings = production.Settings(
        sample_bytes=args.sample or 0,
        nframe=args.nframe,
        directory=directory,
        interval=args.interval,
        dump_signal=args.dump_signal,
    )
    env = dict(os.environ)
    env[production.ENV_VAR] = settings.to_environment()
    before = set(_timeline_files(directory))
    started = time.monotonic()
    code, pid = _spawn([target.name, *target.args], env)
    duration = time.monotonic() - started
    written = {
        path: owner
        for path, owner in _timeline_files(directory).items()
        if path not in before
    }
    results: List[TimelineSuspects] = []
    for path in sorted(written, key=lambda p: (written[p] != pid, p)):
        try:
            results.append(analyse_timeline(path))
        except PyleakhuntError as exc:
            warn(str(exc))
    own = [r for r in results if written[r.path] == pid]
    if args.json:
        _print_run_json(
            {
                "command": "run",
                "timeline": own[0].path if own else None,
                "timelines": [r.path for r in results],
                "pid": pid,
                "exit_code": code,
                "samples": own[0].samples if own else 0,
                "duration_s": duration,
                "sampling_error": None,
                "suspects": report.suspects_json(results, 5),
            }
        )
    else:
        sys.stderr.write(
            "".join(line + "\n" for line in _command_summary(directory, results))
        )
    return code


def _command_summary(directory: str, results: List[TimelineSuspects]) -> List[str]:
    """What ``run -- COMMAND`` says on stderr when the command ends."""
    if not results:
        return [
            "pyleakhunt: warning: no timeline was written in %s: no Python "
            "process of the command traced itself (pyleakhunt must be "
            "installed, with its autostart hook, in the environment of the "
            "Python the command runs; see docs/production.md)" % directory
        ]
    lines = [
        "pyleakhunt: %s in %s (pids %s)"
        % (
            report.plural(len(results), "timeline"),
            directory,
            ", ".join(str(r.pid) for r in results),
        )
    ]
    for result in results:
        lines += [
            "  " + line if line else line
            for line in report.suspects_lines(
                result, 5, DEFAULT_KEY, DEFAULT_RULE.min_samples
            )
        ]
    lines.append("pyleakhunt: details: pyleakhunt suspects %s" % directory)
    return lines


def _print_run_json(doc: Dict[str, Any]) -> None:
    """The run summary as one JSON line; a closed stdout loses only it."""
    try:
        print_json(doc, compact=True)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except ValueError:  # the program closed stdout
        pass
