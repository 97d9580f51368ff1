"""Leases on the one tracer: who starts it, settings, who stops it."""

import os
import sys

import pytest

import pyleakhunt
from pyleakhunt import lease


@pytest.fixture(autouse=True)
def tracer_off():
    pyleakhunt.stop()
    yield
    for held in lease.held():
        held.release()
    pyleakhunt.stop()


def test_the_first_lease_starts_the_tracer_and_the_last_release_stops_it():
    first = lease.acquire(3, owner="a")
    assert pyleakhunt.is_tracing()
    second = lease.acquire(3, owner="b")
    first.release()
    assert pyleakhunt.is_tracing()  # b still holds one
    second.release()
    assert not pyleakhunt.is_tracing()


def test_the_deepest_lease_sets_the_limit_while_it_is_held():
    shallow = lease.acquire(2)
    deep = lease.acquire(9)
    assert pyleakhunt.get_traceback_limit() == 9
    deep.release()
    assert pyleakhunt.get_traceback_limit() == 2
    shallow.release()


def test_the_first_leases_release_leaves_the_others_settings():
    first = lease.acquire(9)
    second = lease.acquire(2)
    first.release()
    assert pyleakhunt.is_tracing()
    assert pyleakhunt.get_traceback_limit() == 2
    second.release()


def test_a_lease_naming_another_sampling_rate_is_refused():
    held = lease.acquire(1, sample_bytes=4096)
    with pytest.raises(ValueError, match="sample_bytes=4096"):
        lease.acquire(1, sample_bytes=512)
    same = lease.acquire(1, sample_bytes="4KiB")
    any_rate = lease.acquire(1)
    assert pyleakhunt.get_stats()["sample_bytes"] == 4096
    for each in (held, same, any_rate):
        each.release()
    assert not pyleakhunt.is_tracing()


def test_a_tracer_started_by_hand_is_never_stopped_and_gets_its_limit_back():
    pyleakhunt.start(4)
    held = lease.acquire(12)
    assert pyleakhunt.get_traceback_limit() == 12
    held.release()
    assert pyleakhunt.is_tracing()
    assert pyleakhunt.get_traceback_limit() == 4


def test_releasing_twice_or_after_a_stop_by_hand_does_nothing_more():
    held = lease.acquire(1)
    other = lease.acquire(1)
    held.release()
    held.release()
    assert pyleakhunt.is_tracing()
    pyleakhunt.stop()
    other.release()
    assert not pyleakhunt.is_tracing()
    again = lease.acquire(1)  # a new first lease starts it again
    assert pyleakhunt.is_tracing()
    again.release()
    assert not pyleakhunt.is_tracing()


def test_a_watcher_and_the_leak_check_share_the_tracer():
    from pyleakhunt.leakcheck import _TracerSession
    from pyleakhunt.watcher import LeakWatcher

    watcher = LeakWatcher(interval=3600, nframe=3)
    watcher.sample()
    with _TracerSession(7):
        assert pyleakhunt.get_traceback_limit() == 7
    assert pyleakhunt.is_tracing()  # the watcher still holds it
    assert pyleakhunt.get_traceback_limit() == 3
    watcher.stop()
    assert not pyleakhunt.is_tracing()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Other tests' sampler threads may run; the child only touches the lease table.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_releases_what_it_inherited():
    held = lease.acquire(2)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its inherited lease is its own to release
        try:
            ok = len(lease.held()) == 1 and pyleakhunt.is_tracing()
            lease.held()[0].release()
            ok = ok and not pyleakhunt.is_tracing()
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert pyleakhunt.is_tracing()  # the parent's lease is untouched
    held.release()


def test_the_lease_is_a_context_manager():
    with lease.acquire(1, owner="block") as held:
        assert held.active and lease.held() == [held]
    assert not held.active
    assert not pyleakhunt.is_tracing()
    assert sys.modules["pyleakhunt.lease"] is lease
