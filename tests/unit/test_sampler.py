"""The one sampling thread of the process (pyleakhunt.sampler).

Every test waits for events (a callback ran, a thread left), never for a
fixed time; the only timings asserted are upper bounds far above what the
code needs (a stop is prompt: well under the client's interval), the
median spacing of calls, under a bound halfway between what the rule
gives and what the rule before it gave, and rests that the rule
guarantees whatever the machine's load (lower bounds).
"""

from __future__ import annotations

import inspect
import statistics
import threading
import time
from typing import Callable, Iterator, List, Tuple

import pytest
from helpers import wait_for

from pyleakhunt import sampler

LONG = 3600.0  # an interval that never comes round during a test


def threads_named(name: str) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


class Calls:
    """A callback that counts its calls and remembers their threads."""

    def __init__(self, then: Callable[[], object] = lambda: None) -> None:
        self.threads: List[threading.Thread] = []
        self.then = then

    def __call__(self) -> object:
        self.threads.append(threading.current_thread())
        return self.then()

    @property
    def count(self) -> int:
        return len(self.threads)


@pytest.fixture
def registered() -> Iterator[List[sampler.Registration]]:
    """Registrations to cancel after the test, whatever happened."""
    made: List[sampler.Registration] = []
    assert sampler.registrations() == [], "a test left a registration behind"
    yield made
    for registration in made:
        registration.cancel()
    assert sampler.registrations() == []


def test_two_clients_at_different_intervals_share_one_thread(registered):
    fast, slow = Calls(), Calls()
    registered.append(sampler.register("test-fast", fast, 0.01))
    registered.append(sampler.register("test-slow", slow, 0.05))
    wait_for(lambda: slow.count >= 3, "three calls of the slow client")
    assert fast.count > slow.count
    # One thread, named for both clients, ran every call.
    assert len(threads_named("pyleakhunt-test-fast+test-slow")) == 1
    assert len({*fast.threads, *slow.threads}) == 1


def test_the_last_cancel_stops_the_thread(registered):
    first, second = Calls(), Calls()
    a = sampler.register("test-a", first, 0.01)
    b = sampler.register("test-b", second, LONG)
    wait_for(lambda: first.count >= 1, "a call")
    thread = first.threads[0]
    a.cancel()
    # One client left: the thread stays, renamed for it.
    assert thread.is_alive() and thread.name == "pyleakhunt-test-b"
    b.cancel()
    # cancel() returns once the thread has left.
    assert not thread.is_alive()
    assert not threads_named("pyleakhunt-test-b")
    assert sampler._State.thread is None


def test_a_stop_is_prompt_however_long_the_interval(registered):
    calls = Calls()
    registration = sampler.register("test-long", calls, LONG)
    started = time.monotonic()
    registration.cancel()
    assert time.monotonic() - started < 5.0  # not LONG
    assert calls.count == 0 and not threads_named("pyleakhunt-test-long")


def test_a_raising_callback_does_not_stop_the_others(registered):
    def fail() -> None:
        raise RuntimeError("a bug in a client")

    failing, healthy = Calls(fail), Calls()
    registered.append(sampler.register("test-failing", failing, 0.01))
    registered.append(sampler.register("test-healthy", healthy, 0.01))
    wait_for(lambda: failing.count >= 3 and healthy.count >= 3, "calls of both")
    # The thread survived every error, and the failing client is still
    # called at its interval: what to do with its errors is its own choice.
    assert len({*failing.threads, *healthy.threads}) == 1
    assert failing.threads[0].is_alive()


def test_a_callback_that_returns_false_is_called_no_more(registered):
    done = Calls(lambda: False)
    registration = sampler.register("test-done", done, 0.01, delay=0)
    wait_for(lambda: not registration.active, "the client to be dropped")
    wait_for(lambda: sampler._State.thread is None, "the thread to leave")
    assert done.count == 1


def test_a_new_client_due_sooner_wakes_the_thread(registered):
    registered.append(sampler.register("test-long", Calls(), LONG))
    soon = Calls()
    registered.append(sampler.register("test-soon", soon, LONG, delay=0))
    wait_for(lambda: soon.count == 1, "the new client's first call")


def test_a_callback_can_cancel_its_own_registration(registered):
    # The last client stops itself: the thread cannot join itself, so it
    # must leave on its own once the call returns (no deadlock, no wait).
    holder: List[sampler.Registration] = []
    ready, returned = threading.Event(), threading.Event()

    def stop_myself() -> None:
        ready.wait(10)  # until the test holds the registration
        holder[0].cancel()
        returned.set()

    calls = Calls(stop_myself)
    holder.append(sampler.register("test-self", calls, 0.01, delay=0))
    ready.set()
    assert returned.wait(10), "cancel() from a callback did not return"
    thread = calls.threads[0]
    thread.join(10)
    assert not thread.is_alive() and calls.count == 1


def test_a_callback_can_cancel_another_client(registered):
    victim = Calls()
    other = sampler.register("test-victim", victim, LONG)

    def cancel_other() -> None:
        other.cancel()

    killer = Calls(cancel_other)
    registered.append(sampler.register("test-killer", killer, 0.01))
    wait_for(lambda: killer.count >= 2, "calls after the cancel")
    assert not other.active and victim.count == 0


def test_cancel_waits_for_a_call_in_progress(registered):
    entered, release = threading.Event(), threading.Event()
    finished: List[bool] = []

    def slow() -> None:
        entered.set()
        release.wait(10)
        finished.append(True)

    # Another client keeps the thread: cancel() has no thread to join, and
    # must wait for the call itself.
    registered.append(sampler.register("test-other", Calls(), LONG))
    registration = sampler.register("test-slow", slow, LONG, delay=0)
    assert entered.wait(10)
    canceller = threading.Thread(target=registration.cancel)
    canceller.start()
    canceller.join(0.2)
    assert canceller.is_alive(), "cancel() returned while the call ran"
    release.set()
    canceller.join(10)
    assert not canceller.is_alive() and finished == [True]


def call_times(
    registered: List[sampler.Registration],
    interval: float,
    work: Callable[[], None],
    calls: int,
) -> List[Tuple[float, float, float]]:
    """When each of *calls* calls of a callback doing *work* began and
    ended, and the CPU time it took."""
    times: List[Tuple[float, float, float]] = []
    done = threading.Event()

    def callback() -> None:
        began, cpu = time.monotonic(), time.thread_time()
        work()
        times.append((began, time.monotonic(), time.thread_time() - cpu))
        if len(times) == calls:
            done.set()

    registered.append(sampler.register("test-slow", callback, interval, delay=0))
    assert done.wait(60), "the calls did not come"
    return times


def test_a_call_that_takes_a_while_does_not_stretch_its_interval(registered):
    # Behind a busy main thread, a sample that gives the GIL up N times
    # waits up to N switch intervals to get it back.  The next call used to
    # be due an interval after this one returned: 0.4 s + 0.1 s apart here.
    def wait() -> None:
        threading.Event().wait(0.1)

    times = call_times(registered, 0.4, wait, calls=5)
    gaps = [b[0] - a[0] for a, b in zip(times, times[1:])]
    # 0.4 s, unless the thread got no CPU for 50 ms; it used to be 0.5 s
    # at least, however idle the machine.
    assert statistics.median(gaps) < 0.45, gaps


def test_a_call_that_computes_leaves_the_program_as_much_time(registered):
    # A slow sample never makes calls pile up: after a call, the thread
    # waits at least as long as the call computed (up to the interval).
    def compute() -> None:
        start, deadline = time.thread_time(), time.monotonic() + 5
        while time.thread_time() - start < 0.06 and time.monotonic() < deadline:
            pass

    times = call_times(registered, 0.08, compute, calls=4)
    for (_, ended, cpu), (next_began, _, _) in zip(times, times[1:]):
        assert next_began - ended >= min(0.08, cpu) * 0.99, times


def test_a_late_call_does_not_make_up_for_the_calls_it_missed():
    # Due at 10.0 every second, it returned at 13.01 (another client ran
    # long) after computing 0.01 s: one call next, not three at once.
    assert sampler._next_due(10.0, 1.0, 13.01, 0.01) == pytest.approx(13.02)
    # Returned 0.2 s after it was due: on the clock of its dues, its late
    # start and its length not carried over.
    assert sampler._next_due(10.0, 1.0, 10.2, 0.05) == 11.0
    # Computed 0.6 s of its 0.7: it leaves the program 0.6 s too.
    assert sampler._next_due(10.0, 1.0, 10.7, 0.6) == pytest.approx(11.3)


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError):
        sampler.register("test-bad", Calls(), 0)


def test_nothing_the_sampling_thread_allocates_is_counted_at_its_lines(registered):
    # The thread is the tracer's.  It used to be traced between callbacks:
    # a dict it made (the keyword arguments of a call) and threw away was
    # reused by the program's next small dict, from CPython's free list,
    # and a leak of such dicts showed pyleakhunt/sampler.py as its line.
    import pyleakhunt

    kept = []
    pyleakhunt.start(1, fresh_objects=False)
    try:
        registered.append(sampler.register("test-busy", Calls(), 0.0005, delay=0))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            kept.append({"id": len(kept)})
            if len(kept) % 20 == 0:
                time.sleep(0.0005)
        stats = pyleakhunt.take_snapshot().statistics("lineno")
    finally:
        pyleakhunt.stop()
    lines, first = inspect.getsourcelines(sampler._serve)
    in_serve = range(first, first + len(lines))
    ours = [
        s
        for s in stats
        if s.traceback[0].filename == sampler.__file__
        and s.traceback[0].lineno in in_serve
    ]
    assert ours == []


def test_an_interval_of_years_is_served(registered):
    # Its wait is longer than a lock's timeout may be: the thread died of
    # an OverflowError, and the next client was never called.
    calls, fast = Calls(), Calls()
    registered.append(sampler.register("test-years", calls, 1e12, delay=0))
    wait_for(lambda: calls.count == 1, "the first call")
    registered.append(sampler.register("test-fast", fast, 0.01))
    wait_for(lambda: fast.count >= 3, "three calls of the next client")


@pytest.mark.parametrize("interval", [float("inf"), float("nan"), 0, -1])
def test_an_interval_that_is_no_finite_positive_number_is_refused(interval):
    with pytest.raises(ValueError, match="interval"):
        sampler.register("test", lambda: None, interval)


def test_calls_go_on_when_the_gil_hand_off_cannot_start(registered, monkeypatch):
    # Its watching thread may fail to start (a limit on threads): the
    # hand-off is an aid, and the sampler then waits for the GIL as before.
    def refuse(delay: float, park_limit: float) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(sampler._core, "gil_handoff_arm", refuse)
    calls = Calls()
    registered.append(sampler.register("test-no-handoff", calls, 0.01))
    wait_for(lambda: calls.count >= 3, "three calls")
