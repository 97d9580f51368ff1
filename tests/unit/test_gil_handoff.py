"""The main thread gives the GIL up for a starved sampler (src/gil_handoff.c).

`_core.gil_handoff_arm(delay, park_limit)` says the sampler had its turn,
and asks the main thread, through a pending call, to give the GIL up
unless the sampler arms again within *delay*; the main thread then waits
("parks") until it does, for at most *park_limit* seconds.  Here the main
thread computes in Python and polls, as a busy event loop does, so that it
runs the request at once.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time

import pytest

from pyleakhunt import _core, sampler


@pytest.fixture(autouse=True)
def no_watching_thread_left():
    """Each test starts and ends without the watching thread (a sampler
    thread of another test would arm and disarm it meanwhile)."""
    assert not sampler.registrations(), "another test left a sampler running"
    _core.gil_handoff_stop()
    yield
    _core.gil_handoff_stop()


def compute_until(condition, limit: float = 30.0) -> float:
    """Run Python code until *condition()* holds (at most *limit* seconds),
    giving the GIL up and taking it back at once now and then, as a busy
    event loop does around select(); return the wall time it took.  Until
    a condition, not for a time: on a loaded machine the watching thread
    may post its request late."""
    start = time.monotonic()
    x = 0
    while not condition() and time.monotonic() < start + limit:
        x += 1
        if x % 64 == 0:
            select.select([], [], [], 0)
    return time.monotonic() - start


def stats_change(before: dict) -> dict:
    after = _core.gil_handoff_stats()
    return {key: after[key] - before[key] for key in after}


def in_a_thread(function) -> threading.Thread:
    thread = threading.Thread(target=function)
    thread.start()
    return thread


def sampler_sleeps():
    """What the sampler does before it sleeps: arm for its next call."""
    _core.gil_handoff_arm(30, 30)


def test_a_main_thread_parks_no_longer_than_the_park_limit():
    before = _core.gil_handoff_stats()
    _core.gil_handoff_arm(0.01, 0.3)  # and nobody arms again
    took = compute_until(lambda: stats_change(before)["parks"] == 1)
    assert stats_change(before) == {
        "requests": 1,
        "parks": 1,
        "park_timeouts": 1,
        "stale": 0,
    }
    assert 0.3 <= took < 30


def test_a_parked_main_thread_goes_on_as_soon_as_the_sampler_arms_again():
    before = _core.gil_handoff_stats()
    _core.gil_handoff_arm(0.01, 30)

    def sampler():
        # It needs the GIL to arm again: it gets it because the main
        # thread parked.
        time.sleep(0.2)
        sampler_sleeps()

    other = in_a_thread(sampler)
    took = compute_until(lambda: stats_change(before)["parks"] == 1)
    other.join()
    change = stats_change(before)
    assert (change["parks"], change["park_timeouts"]) == (1, 0)
    assert 0.15 <= took < 20


def test_a_request_run_after_the_sampler_armed_again_does_nothing():
    before = _core.gil_handoff_stats()
    _core.gil_handoff_arm(0.01, 30)

    def sampler():
        # The sampler gets the GIL anyway (the main thread waits in C
        # without it) and arms again once the request is posted.
        while stats_change(before)["requests"] == 0:
            time.sleep(0.01)
        sampler_sleeps()

    in_a_thread(sampler).join()  # the request waits meanwhile
    took = compute_until(lambda: stats_change(before)["stale"] == 1)
    change = stats_change(before)
    assert (change["requests"], change["parks"], change["stale"]) == (1, 0, 1)
    assert took < 20


def test_arming_again_within_the_delay_posts_no_request():
    before = _core.gil_handoff_stats()
    _core.gil_handoff_arm(0.5, 30)
    _core.gil_handoff_arm(30, 30)
    compute_until(lambda: False, limit=0.8)
    assert stats_change(before)["requests"] == 0


def test_stopping_disarms():
    before = _core.gil_handoff_stats()
    _core.gil_handoff_arm(0.5, 30)
    _core.gil_handoff_stop()
    compute_until(lambda: False, limit=0.8)
    assert stats_change(before)["requests"] == 0


@pytest.mark.parametrize(
    "delay, park_limit",
    [(-1, 1), (math.nan, 1), (math.inf, 1), (1, 0), (1, -1), (1, 61), (1, math.nan)],
)
def test_bad_times_are_refused_with_the_value_named(delay, park_limit):
    with pytest.raises(ValueError, match="delay|park_limit"):
        _core.gil_handoff_arm(delay, park_limit)


def test_times_that_are_no_numbers_are_refused():
    with pytest.raises(TypeError):
        _core.gil_handoff_arm("soon", 1)


def watching_threads() -> int:
    """The process's threads named as the watching thread is (by name:
    other threads of the test process may come and go meanwhile)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().strip() == "pyleakhunt-gil"
        except FileNotFoundError:
            pass  # a thread that has just left
    return count


def test_the_watching_thread_runs_only_until_stopped():
    assert watching_threads() == 0
    _core.gil_handoff_arm(30, 1)
    assert watching_threads() == 1
    _core.gil_handoff_stop()
    assert watching_threads() == 0
    _core.gil_handoff_arm(30, 1)  # and starts again
    assert watching_threads() == 1
    _core.gil_handoff_stop()
    assert watching_threads() == 0
