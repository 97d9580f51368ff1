"""The census of a live process: same counts as a core, the target held
still only while its memory is copied, and left as it was."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from census_victims import (
    REPO,
    clean_env,
    run_cli,
    start_victim,
    stop_victim,
    wait_for,
)
from helpers import python_from_a_copy

from pyleakhunt.census import ProcessError, census_process

V = "census_victim"


@pytest.fixture
def own_victim(tmp_path):
    """A victim for tests that change its state."""
    victim = start_victim(str(tmp_path))
    yield victim
    stop_victim(victim)


def test_a_live_census_counts_like_a_core(victim, core_census):
    live = census_process(victim.pid, holders=0, types=[f"{V}.CensusCached"])
    for name in ("CensusUser", "CensusSlotted", "CensusValue", "CensusLocal"):
        assert live.find_type(name).count == core_census.find_type(name).count
    assert live.holders[f"{V}.CensusCached"][0].holder == f"{V}.getter.<closure cache>"
    assert live.source_kind == "process" and live.pid == victim.pid


def test_a_running_target_is_stopped_briefly_and_left_running(own_victim):
    census = census_process(own_victim.pid, holders=0)
    assert 0 < census.timings["stopped_s"] < 2.0
    assert own_victim.state() not in ("T", "t")
    own_victim.command("grow 1")  # it still answers


def test_a_stopped_target_is_read_as_it_is_and_left_stopped(own_victim):
    os.kill(own_victim.pid, signal.SIGSTOP)
    assert wait_for(lambda: own_victim.state() == "T")
    census = census_process(own_victim.pid, holders=0)
    assert census.find_type("CensusUser").count == 12345
    assert census.timings["stopped_s"] == 0
    assert any("already stopped" in w for w in census.warnings)
    assert own_victim.state() == "T"
    os.kill(own_victim.pid, signal.SIGCONT)
    own_victim.command("grow 1")


def test_no_stop_reads_a_running_target_without_pausing_it(own_victim):
    census = census_process(own_victim.pid, stop=False, holders=0)
    assert census.find_type("CensusUser").count == 12345
    assert census.timings["stopped_s"] == 0
    assert any("--no-stop" in w for w in census.warnings)


def test_a_python_replaced_on_disk_since_it_started_is_read(tmp_path):
    # A service outlives its Python: after an upgrade, /proc/PID/maps says
    # "(deleted)", and the file is read through /proc/PID/map_files.
    copies = tmp_path / "python"
    copies.mkdir()
    python, env = python_from_a_copy(str(copies))
    victim = start_victim(str(tmp_path), python=python, env=env)
    try:
        shutil.rmtree(copies)
        assert "(deleted)" in Path("/proc/%d/maps" % victim.pid).read_text()
        census = census_process(victim.pid, holders=0)
        assert census.find_type("CensusUser").count == 12345
    finally:
        stop_victim(victim)


def test_the_command_on_a_pid(victim):
    result = run_cli("--pid", str(victim.pid), "--type", "CensusLocal", "-n", "3")
    assert result.returncode == 0, result.stderr
    assert "the process was stopped for" in result.lines[2]
    assert "worker.<locals>.rows" in result.stdout


def test_a_pid_that_is_gone_exits_4():
    process = subprocess.Popen([sys.executable, "-c", "pass"], env=clean_env())
    process.wait()
    result = run_cli("--pid", str(process.pid))
    assert result.returncode == 4
    assert result.stderr == f"pyleakhunt: error: no process with PID {process.pid}\n"
    with pytest.raises(ProcessError):
        census_process(process.pid)


def test_a_process_that_is_not_python_exits_4():
    process = subprocess.Popen(["sleep", "30"], env=clean_env())
    try:
        result = run_cli("--pid", str(process.pid))
    finally:
        process.kill()
        process.wait()
    assert result.returncode == 4
    assert "not a Python process" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def _runs_as(python: str, user: int) -> bool:
    """Can *user* run *python* and import the census from this tree?"""
    try:
        done = subprocess.run(
            [python, "-c", "import pyleakhunt.census"],
            user=user,
            env=dict(clean_env(), PYTHONPATH=REPO),
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _python_for(user: int):
    """A Python that *user* may run and for which the extensions are built
    here (pyenv's Pythons may sit under /root, out of its reach): the one
    running the tests, or a system one.  None if there is none."""
    if _runs_as(sys.executable, user):
        return sys.executable
    package = os.path.join(REPO, "pyleakhunt")
    for minor in range(9, 14):
        tag = f"cpython-3{minor}-"
        built = [
            name
            for directory in (package, os.path.join(package, "census"))
            for name in os.listdir(directory)
            if tag in name
        ]
        python = f"/usr/bin/python3.{minor}"
        if len(built) >= 2 and os.path.exists(python) and _runs_as(python, user):
            return python
    return None


def test_a_process_we_may_not_read_exits_5(victim):
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the census as another user")
    nobody = 65534
    python = _python_for(nobody)
    if python is None:
        pytest.skip(
            f"user {nobody} cannot run a Python that imports pyleakhunt from "
            "this tree (pyenv under /root, or the tree out of its reach)"
        )
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run(
        [python, "-m", "pyleakhunt.census", "--pid", str(victim.pid)],
        user=nobody,
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith(
        f"pyleakhunt: error: not permitted to read process {victim.pid}"
    )
    assert victim.state() not in ("T", "t")


def test_not_permitted_and_gone_have_the_tables_codes():
    """EPERM on a process nobody traces is 5 (not permitted), as for attach;
    a process that is gone is 4 (docs/cli.md).  Runs as any user, where the
    test above needs root."""
    import errno

    from pyleakhunt.census import live
    from pyleakhunt.census.errors import NotPermittedError

    denied = live._proc_error(os.getpid(), PermissionError(errno.EPERM, "no"), "stop")
    assert isinstance(denied, NotPermittedError) and denied.code == 5
    assert str(denied).startswith(f"not permitted to stop process {os.getpid()}")
    gone = live._proc_error(os.getpid(), ProcessLookupError(errno.ESRCH, "no"), "stop")
    assert type(gone) is ProcessError and gone.code == 4
