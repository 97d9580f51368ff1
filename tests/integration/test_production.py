"""Always-on tracing: PYLEAKHUNT at startup, bad values, forked workers,
signal dumps, ``run -- COMMAND`` and ``run --sample``.

Startup is tested for real: a throwaway virtual environment (no pip, made
in a few milliseconds) gets the autostart .pth file, exactly as pip installs
it, and a .pth line that puts this checkout on its path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import venv
from typing import Dict, List, Optional

import pytest
from helpers import SUBINTERPRETERS

import pyleakhunt
from pyleakhunt import _core, cli, production
from pyleakhunt.fileformat import read_snapshot, read_timeline
from pyleakhunt.production import Settings, parse_settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 60


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> str:
    """A virtual environment's python with the autostart hook installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False, symlinks=True)
    executable = os.path.join(env_dir, "bin", "python")
    site_packages = subprocess.run(
        [executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Sorted before the hook, as an installed package's path entries are.
    with open(os.path.join(site_packages, "_pyleakhunt_checkout.pth"), "w") as f:
        f.write(ROOT + "\n")
    with open(os.path.join(ROOT, production.PTH_FILENAME)) as src:
        hook = src.read()
    with open(os.path.join(site_packages, production.PTH_FILENAME), "w") as f:
        f.write(hook)
    return executable


def child_env(value: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != production.ENV_VAR}
    env.pop("PYTHONPATH", None)
    if value is not None:
        env[production.ENV_VAR] = value
    return env


def run_python(
    python: str, code: str, value: Optional[str], cwd: str, *args: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            python,
            "-W",
            "ignore::DeprecationWarning",
            "-c",
            textwrap.dedent(code),
            *args,
        ],
        capture_output=True,
        text=True,
        env=child_env(value),
        cwd=cwd,
        timeout=TIMEOUT,
    )


def timelines(directory) -> List[str]:
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.startswith("pyleakhunt-") and not name.startswith("pyleakhunt-dump")
    )


#: For a traced child script: `wait_for_a_sample()` returns once this
#: process's timeline, in the current directory, holds a sample taken after
#: the call (a wait for the watcher, never a guessed time).  Two more
#: entries than at the call: the next one may have begun before it.  Only
#: modules already imported are used, so that nothing it leaves behind
#: shows up as a site of the script.
WAIT_FOR_A_SAMPLE = """
import os, time
from pyleakhunt.fileformat import iter_timeline


def _timeline_entries():
    prefix = "pyleakhunt-%d-" % os.getpid()
    (name,) = [n for n in os.listdir(".") if n.startswith(prefix)]
    return sum(1 for _ in iter_timeline(name, allow_truncated_tail=True))


def wait_for_a_sample(timeout=30):
    wanted = _timeline_entries() + 2
    deadline = time.monotonic() + timeout
    while _timeline_entries() < wanted:
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the watcher's next sample")
        time.sleep(0.01)
"""


REPORT = """
import json, sys
import pyleakhunt
from pyleakhunt import production
stats = pyleakhunt.get_stats() if pyleakhunt.is_tracing() else {}
print(json.dumps({
    "tracing": pyleakhunt.is_tracing(),
    "sample_bytes": stats.get("sample_bytes"),
    "nframe": pyleakhunt.get_traceback_limit(),
    "first_line_traced": pyleakhunt.get_object_traceback(FIRST) is not None,
    "handler": type(__import__("signal").getsignal(
        __import__("signal").SIGUSR2)).__name__,
}))
"""


# --------------------------------------------------------------------------
# Settings


def test_settings_default_to_sampled_tracing_with_a_timeline_and_a_signal():
    for value in ("1", "on", "TRUE"):
        assert parse_settings(value) == Settings(
            sample_bytes=512 * 1024,
            nframe=32,
            directory=".",
            interval=60.0,
            dump_signal=signal.SIGUSR2,
        )


def test_settings_read_every_option():
    settings = parse_settings(
        " sample=64KiB, nframe=5 ,dir=~/leaks,interval=0.5,signal=usr1"
    )
    assert settings == Settings(
        sample_bytes=65536,
        nframe=5,
        directory=os.path.expanduser("~/leaks"),
        interval=0.5,
        dump_signal=signal.SIGUSR1,
    )
    assert parse_settings("sample=exact,signal=none,interval=0") == Settings(
        sample_bytes=0, interval=0.0, dump_signal=None
    )
    realtime = min(n for n in production.dump_signals() if n > 31)
    assert parse_settings("signal=SIGRTMIN+2").dump_signal == realtime + 2


@pytest.mark.parametrize("value", ["", "  ", "0", "off", "no"])
def test_settings_that_turn_tracing_off(value):
    assert parse_settings(value) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sampel=1KiB", "'sampel=1KiB' is not an option"),
        ("sample=lots", "sample=lots: not a size"),
        ("nframe=0", "nframe=0: must be between 1 and 65535"),
        ("nframe=ten", "nframe=ten: not a whole number"),
        ("interval=-1", "interval=-1.0: must be"),
        ("interval=soon", "interval=soon: not a number"),
        ("signal=SIGTERM", "signal=SIGTERM: not a dump signal"),
        ("sample=1KiB,sample=2KiB", "sample is given twice"),
        ("yes please", "'yes please' is not an option"),
    ],
)
def test_bad_settings_are_refused_with_the_option_named(value, message):
    with pytest.raises(ValueError) as info:
        parse_settings(value)
    assert message in str(info.value)


def test_settings_round_trip_through_the_environment_value():
    settings = Settings(
        sample_bytes=4096, nframe=7, directory="/tmp/x", interval=2.5, dump_signal=None
    )
    assert parse_settings(settings.to_environment()) == settings
    assert parse_settings(Settings(sample_bytes=0).to_environment()) == Settings(
        sample_bytes=0
    )


# --------------------------------------------------------------------------
# Startup from the environment


def test_the_variable_traces_from_the_first_line(python, tmp_path):
    value = "sample=exact,nframe=7,dir=%s,interval=0" % tmp_path
    result = run_python(python, "FIRST = object()\n" + REPORT, value, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report == {
        "tracing": True,
        "sample_bytes": 0,
        "nframe": 7,
        "first_line_traced": True,
        "handler": "_DumpHandler",
    }


def test_defaults_sample_at_512KiB_with_32_frames(python, tmp_path):
    result = run_python(python, "FIRST = object()\n" + REPORT, "1", str(tmp_path))
    report = json.loads(result.stdout)
    assert (report["sample_bytes"], report["nframe"]) == (512 * 1024, 32)
    assert len(timelines(tmp_path)) == 1  # in the current directory


@pytest.mark.parametrize("value", [None, "", " ", "0"])
def test_without_the_variable_pyleakhunt_is_not_even_imported(python, tmp_path, value):
    code = "import sys; print('pyleakhunt' in sys.modules)"
    result = run_python(python, code, value, str(tmp_path))
    assert (result.stdout, result.stderr) == ("False\n", "")


#: Runs a subinterpreter of every kind the version has; prints whether the
#: main interpreter traces, and the kinds that ran.
IN_SUBINTERPRETERS = (
    SUBINTERPRETERS
    + """
for kind in KINDS:
    interp = make(kind)
    run(interp, "seen = 1")
    _I.destroy(interp)
import pyleakhunt
print(pyleakhunt.is_tracing(), KINDS)
"""
)


def test_subinterpreters_start_quietly_under_the_variable(python, tmp_path):
    # Python runs the hook in every interpreter.  An isolated one (3.12+)
    # cannot load pyleakhunt's extension: importing pyleakhunt there made
    # site print a traceback for each subinterpreter (an interpreter pool's
    # every worker).  Only the main interpreter traces the process.
    value = "sample=exact,interval=0"
    result = run_python(python, IN_SUBINTERPRETERS, value, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    kinds = ["legacy"] + (["isolated"] if sys.version_info >= (3, 12) else [])
    assert result.stdout == "True %r\n" % kinds


@pytest.mark.parametrize(
    "value",
    ["sampel=512KiB", "sample=12 parsecs", "signal=SIGKILL", "dir=/proc/no/such"],
)
def test_a_bad_value_warns_once_and_the_program_runs_untraced(python, tmp_path, value):
    code = "FIRST = 1\n" + REPORT + "\nprint('program ran'); sys.exit(3)"
    result = run_python(python, code, value, str(tmp_path))
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyleakhunt: ignoring PYLEAKHUNT: ")
    assert lines[0].endswith("; running untraced")
    assert json.loads(result.stdout.splitlines()[0])["tracing"] is False
    assert result.stdout.splitlines()[1] == "program ran"
    assert os.listdir(tmp_path) == []


def test_each_process_writes_a_timeline_named_with_its_pid(python, tmp_path):
    code = (
        "\nimport os, time\nKEEP = [bytearray(1000) for _ in range(3000)]\n"
        + WAIT_FOR_A_SAMPLE
        + "wait_for_a_sample()  # a periodic one, after KEEP\nprint(os.getpid())\n"
    )
    value = "sample=8KiB,dir=%s,interval=0.1" % tmp_path
    result = run_python(python, code, value, str(tmp_path))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout)
    (path,) = timelines(tmp_path)
    assert os.path.basename(path).startswith("pyleakhunt-%d-" % pid)
    entries = read_timeline(path)
    assert len(entries) >= 3  # periodic samples, and a last one at exit
    assert {entry.pid for entry in entries} == {pid}
    assert {entry.sample_bytes for entry in entries} == {8192}
    last_lines = {site.frames[0][1] for site in entries[-1].sites}
    assert 3 in last_lines  # the KEEP line (line 1 is the dedented blank)


FORKING = """
import os, sys, time
def parent_work():
    return [bytearray(1000) for _ in range(2000)]
def child_work():
    return [bytearray(1000) for _ in range(2000)]
%s
PARENT = parent_work()
pid = os.fork()
if pid == 0:
    CHILD = child_work()
    wait_for_a_sample()  # the child's own watcher wrote after the fork
    print("child", os.getpid(), flush=True)
    sys.exit(0)
wait_for_a_sample()  # so did the parent's
os.waitpid(pid, 0)
print("parent", os.getpid(), flush=True)
""" % (WAIT_FOR_A_SAMPLE,)
PARENT_WORK_LINE, CHILD_WORK_LINE = 4, 6


def test_forked_workers_trace_into_their_own_timelines(python, tmp_path):
    value = "sample=exact,nframe=4,dir=%s,interval=0.1" % tmp_path
    result = run_python(python, FORKING, value, str(tmp_path))
    assert result.returncode == 0, result.stderr
    pids = dict(line.split() for line in result.stdout.splitlines())
    files = timelines(tmp_path)
    assert len(files) == 2
    by_pid = {}
    for path in files:
        entries = read_timeline(path)
        (pid,) = {entry.pid for entry in entries}
        assert os.path.basename(path).startswith("pyleakhunt-%d-" % pid)
        by_pid[pid] = entries[-1]
    assert set(by_pid) == {int(pids["parent"]), int(pids["child"])}

    def lines(entry):
        return {site.frames[0][1] for site in entry.sites if site.frames}

    parent, child = by_pid[int(pids["parent"])], by_pid[int(pids["child"])]
    assert CHILD_WORK_LINE in lines(child)
    assert CHILD_WORK_LINE not in lines(parent)
    # The child's heap is a copy of the parent's: it keeps what it inherited.
    assert PARENT_WORK_LINE in lines(child) and PARENT_WORK_LINE in lines(parent)


# --------------------------------------------------------------------------
# Signal dumps


def test_the_dump_signal_writes_a_snapshot_and_the_process_goes_on(python, tmp_path):
    # The child waits for its input in short selects, not in one read: a
    # Python signal handler runs between bytecodes, and a signal that came
    # after "ready" was written but before the read began would wait for
    # that read to end (no EINTR), which never came: the test hung.
    code = """
    import select, sys
    def cache():
        return [bytearray(1000) for _ in range(5000)]
    KEEP = cache()
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        pass
    sys.stdin.readline()
    print("still running", len(KEEP), flush=True)
    """
    value = "sample=exact,dir=%s,interval=0" % tmp_path
    proc = subprocess.Popen(
        [python, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(value),
        cwd=str(tmp_path),
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, signal.SIGUSR2)
        said = proc.stderr.readline()
        proc.stdin.write("go on\n")
        proc.stdin.close()
        assert proc.stdout.readline() == "still running 5000\n"
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    (name,) = os.listdir(tmp_path)  # no temporary file left behind
    assert name.startswith("pyleakhunt-dump-%d-" % proc.pid) and name.endswith(".plh")
    assert said == "pyleakhunt: dump signal: wrote %s\n" % (tmp_path / name)
    snapshot = read_snapshot(str(tmp_path / name))
    assert snapshot.pid == proc.pid and not snapshot.is_full
    in_cache = [site.size for site in snapshot.sites if site.frames[0][1] == 4]
    assert sum(in_cache) >= 5000 * 1000  # the line in cache()


def test_install_dump_signal_chains_to_the_previous_handler(tmp_path):
    calls = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    try:
        pyleakhunt.start(1)
        production.install_dump_signal(signal.SIGUSR1, tmp_path)
        os.kill(os.getpid(), signal.SIGUSR1)
        production.install_dump_signal(signal.SIGUSR1, tmp_path)  # again: no chain
        os.kill(os.getpid(), signal.SIGUSR1)
        production.uninstall_dump_signal(signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1).__name__ == "<lambda>"
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert calls == [signal.SIGUSR1, signal.SIGUSR1]
    assert len(os.listdir(tmp_path)) == 2


def test_dumps_in_the_same_second_get_numbered_names(tmp_path):
    first = production.dump_path(str(tmp_path), pid=12)
    open(first, "w").close()
    second = production.dump_path(str(tmp_path), pid=12)
    assert second == first[: -len(".plh")] + "-2.plh"


def test_dump_snapshot_writes_a_full_snapshot_on_request(tmp_path):
    pyleakhunt.start(1)
    keep = [bytearray(100) for _ in range(100)]
    path = production.dump_snapshot(str(tmp_path), full=True)
    assert read_snapshot(path).is_full
    assert len(keep) == 100


def test_a_dump_without_tracing_says_so(tmp_path, capfd):
    production.install_dump_signal(signal.SIGUSR1, tmp_path)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        production.uninstall_dump_signal(signal.SIGUSR1)
    assert "not tracing" in capfd.readouterr().err
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------
# start() and stop() in this process


def test_start_and_stop_leave_a_complete_timeline(tmp_path):
    production.start(
        Settings(
            sample_bytes=4096, directory=str(tmp_path), interval=30, dump_signal=None
        )
    )
    try:
        assert production.is_started()
        assert pyleakhunt.get_stats()["sample_bytes"] == 4096
        with pytest.raises(RuntimeError, match="already started"):
            production.start()
    finally:
        production.stop()
    assert not production.is_started() and not pyleakhunt.is_tracing()
    (path,) = timelines(tmp_path)
    assert len(read_timeline(path)) == 2  # when started, and the last one


def test_production_tracing_leaves_cpython_free_lists_alone(tmp_path):
    # Keeping them empty (LeakWatcher's fresh_objects) costs an allocation
    # per small object: not in production.
    production.start(
        Settings(
            sample_bytes=4096, directory=str(tmp_path), interval=30, dump_signal=None
        )
    )
    try:
        assert not _core.free_lists_kept_empty()
    finally:
        production.stop()


def test_start_refuses_a_directory_it_cannot_write():
    with pytest.raises(OSError, match="dir=/proc/"):
        production.start(Settings(directory="/proc/pyleakhunt-test", interval=0))
    assert not production.is_started() and not pyleakhunt.is_tracing()


# --------------------------------------------------------------------------
# pyleakhunt run -- COMMAND, run --sample


def pyleakhunt_cli(*args: str, cwd: str) -> subprocess.CompletedProcess:
    env = child_env(None)
    env["PYTHONPATH"] = ROOT
    return subprocess.run(
        [sys.executable, "-m", "pyleakhunt", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=TIMEOUT,
    )


def test_run_command_traces_a_python_command_and_keeps_its_exit_code(python, tmp_path):
    code = "KEEP = [bytearray(1000) for _ in range(3000)]; raise SystemExit(3)"
    out = tmp_path / "out"
    result = pyleakhunt_cli(
        "run",
        "--sample",
        "16KiB",
        "--interval",
        "0.1",
        "-o",
        str(out),
        "--json",
        "--",
        python,
        "-c",
        code,
        cwd=str(tmp_path),
    )
    assert result.returncode == 3, result.stderr
    doc = json.loads(result.stdout.splitlines()[-1])
    assert doc["exit_code"] == 3
    assert doc["timelines"] == [doc["timeline"]] == timelines(out)
    assert os.path.basename(doc["timeline"]).startswith("pyleakhunt-%d-" % doc["pid"])
    entries = read_timeline(doc["timeline"])
    assert {e.sample_bytes for e in entries} == {16 * 1024}


def test_run_command_runs_a_script_with_a_shebang(python, tmp_path):
    script = tmp_path / "serve"
    script.write_text(
        "#!%s\nimport os\nKEEP = [bytearray(1000) for _ in range(3000)]\n"
        "print('served', os.getpid())\n" % python
    )
    script.chmod(0o755)
    result = pyleakhunt_cli(
        "run", "-o", "timelines", "--", str(script), cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split()[-1])
    (path,) = timelines(tmp_path / "timelines")
    assert os.path.basename(path).startswith("pyleakhunt-%d-" % pid)
    assert "pyleakhunt: 1 timeline in" in result.stderr
    assert not read_timeline(path)[-1].sample_bytes  # exact unless --sample


#: One small dict made and thrown away a call, one kept: on 3.10 to 3.12 the
#: kept one is made in the memory of the dead one (CPython's free list).
REUSE_SCRIPT = """\
import sys, time
KEPT = []
def scratch(i):
    tmp = {"n": i, "m": i}  # thrown away
    return len(tmp)
end = time.monotonic() + float(sys.argv[1])
i = 0
while time.monotonic() < end:
    scratch(i)
    KEPT.append({"id": i})  # the leak
    i += 1
    if i % 200 == 0:
        time.sleep(0.002)
"""
REUSE_LEAK_LINE = 10
REUSE_SCRATCH_LINE = 4


def test_run_command_names_the_line_that_keeps_a_dict_made_in_a_dead_ones_memory(
    python, tmp_path
):
    # An exact trace empties the free lists, as `run script.py` does:
    # production left them alone, and every kept dict was counted at the
    # line that had thrown its memory away.
    script = tmp_path / "reuse.py"
    script.write_text(REUSE_SCRIPT)
    out = tmp_path / "out"
    result = pyleakhunt_cli(
        "run", "--interval", "0.2", "-o", str(out), "--json",
        "--", python, str(script), "3",
        cwd=str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = pyleakhunt_cli("suspects", "--json", str(out), cwd=str(tmp_path))
    assert found.returncode == 0, found.stderr
    lines = [(s["filename"], s["lineno"]) for s in json.loads(found.stdout)]
    assert lines and lines[0] == (str(script), REUSE_LEAK_LINE), lines
    assert (str(script), REUSE_SCRATCH_LINE) not in lines


def test_run_command_warns_when_no_process_traced(tmp_path):
    result = pyleakhunt_cli("run", "-o", str(tmp_path), "--", "true", cwd=str(tmp_path))
    assert result.returncode == 0
    assert "no timeline was written" in result.stderr


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--", "no-such-command-xyz"], 3, "command not found"),
        (["--"], 2, "give a command after '--'"),
        (["--sample", "lots", "x.py"], 2, "SIZE must be a size"),
        (["--signal", "SIGTERM", "--", "true"], 2, "not a dump signal"),
    ],
)
def test_run_command_usage_errors(tmp_path, capsys, argv, code, message):
    assert cli.main(["run", "-o", str(tmp_path), *argv]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_run_sample_traces_a_script_in_process_with_estimates(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "import time\nKEEP = [bytearray(1000) for _ in range(20000)]\n"
        + WAIT_FOR_A_SAMPLE
        + "wait_for_a_sample()  # a periodic one sees KEEP, not only the last\n"
    )
    result = pyleakhunt_cli(
        "run",
        "--sample",
        "64KiB",
        "--interval",
        "0.1",
        "-o",
        str(tmp_path),
        "--json",
        str(script),
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    entries = read_timeline(doc["timeline"])
    assert {e.sample_bytes for e in entries} == {64 * 1024}
    kept = max(
        sum(site.size for site in e.sites if site.frames[0] == (str(script), 2))
        for e in entries
    )
    assert 0.5 * 20000 * 1000 < kept < 1.5 * 20000 * 1000
