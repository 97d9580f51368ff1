"""Progress of a long census: a status line on a terminal's stderr after a
delay, erased at the end; nothing at all when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

import pytest
from census_victims import REPO

from pyleakhunt.census import census_core
from pyleakhunt.census.progress import Progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal, and keeps what is written."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_each_phase_once_past_the_delay(victim_core):
    stream = Terminal()
    with Progress(stream, delay=0.0, interval=60.0):
        census_core(victim_core, holders=1)
    text = stream.getvalue()
    phases = [
        "reading the core",
        "counting objects",
        "finding paths from the roots",
        "finding who holds",
    ]
    positions = [text.find(f"census: {p}") for p in phases]
    assert -1 not in positions, text
    assert positions == sorted(positions), text
    assert text.endswith("\r\x1b[K"), "the status line is erased at the end"


def test_a_short_census_shows_nothing(victim_core):
    stream = Terminal()
    with Progress(stream, delay=3600.0, interval=0.01):
        census_core(victim_core, holders=0)
    assert stream.getvalue() == ""


def test_nothing_is_written_when_stderr_is_not_a_terminal(victim_core):
    stream = io.StringIO()
    with Progress(stream, delay=0.0, interval=0.01):
        census_core(victim_core, holders=1)
    assert stream.getvalue() == ""


def test_the_elapsed_time_is_updated_while_a_phase_runs():
    now = [0.0]
    stream = Terminal()
    progress = Progress(stream, delay=2.0, interval=0.01, clock=lambda: now[0])
    with progress:
        progress.set_phase("counting objects")
        assert stream.getvalue() == "", "nothing before the delay"
        now[0] = 5.0
        progress.set_phase("counting objects")
    assert "census: counting objects... 5 s" in stream.getvalue()


def test_the_command_on_a_terminal_keeps_stdout_clean(victim_core):
    """The CLI writes the status line to stderr only: stdout (the table)
    never has it, even when stderr is a terminal."""
    try:
        leader, follower = pty.openpty()
    except OSError as exc:
        pytest.skip(f"no pseudo-terminal here (is /dev/pts mounted?): {exc}")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pyleakhunt.census", victim_core, "--no-holders"],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert "census:" not in done.stdout and "\x1b" not in done.stdout
