"""Request tags: allocations made while a context variable holds a tag."""

import asyncio
import contextvars
import threading

import pytest

import pyleakhunt
from pyleakhunt import _core

TAG = contextvars.ContextVar("pyleakhunt_test_tag", default=0)


@pytest.fixture
def tagging():
    _core.set_tag_var(TAG)
    pyleakhunt.start(1)
    yield
    pyleakhunt.stop()
    _core.set_tag_var(None)


def bytes_by_tag(snapshot):
    totals = {}
    for site in snapshot.sites:
        if site.frames[0][0] == __file__:
            totals[site.tag] = totals.get(site.tag, 0) + site.size
    return totals


def make(n):
    return [bytearray(100) for _ in range(n)]


def test_allocations_carry_the_tag_in_effect(tagging):
    token = TAG.set(7)
    tagged = make(100)
    TAG.reset(token)
    untagged = make(50)
    totals = bytes_by_tag(pyleakhunt.take_snapshot(traces=False))
    assert totals[7] >= 100 * 100
    assert totals.get(0, 0) >= 50 * 100
    assert len(tagged) + len(untagged) == 150


@pytest.mark.parametrize("tag", [0, 1, (1 << 30) - 1, 1 << 30, (1 << 32) - 1])
def test_tags_of_one_digit_or_more_are_read_exactly(tagging, tag):
    token = TAG.set(tag)
    tagged = make(100)
    TAG.reset(token)
    totals = bytes_by_tag(pyleakhunt.take_snapshot(traces=False))
    assert totals[tag] >= 100 * 100
    del tagged


def test_tags_follow_threads(tagging):
    results = {}

    def serve(tag):
        TAG.set(tag)
        results[tag] = make(200)

    threads = [threading.Thread(target=serve, args=(t,)) for t in (11, 12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals = bytes_by_tag(pyleakhunt.take_snapshot(traces=False))
    assert totals[11] >= 200 * 100 and totals[12] >= 200 * 100
    assert abs(totals[11] - totals[12]) < 0.2 * totals[11]


def test_tags_follow_interleaved_asyncio_tasks(tagging):
    kept = {}

    async def serve(tag, n):
        TAG.set(tag)
        kept[tag] = []
        for _ in range(n):
            kept[tag].append(bytearray(100))
            await asyncio.sleep(0)  # let the other task run in between

    async def main():
        await asyncio.gather(serve(21, 300), serve(22, 100))

    asyncio.run(main())
    totals = bytes_by_tag(pyleakhunt.take_snapshot(traces=False))
    assert 2.5 < totals[21] / totals[22] < 3.5


def test_tracing_never_disturbs_the_context_variable(tagging):
    # ContextVar.set and .reset allocate; the hooks read the variable then,
    # and must not leave a stale value cached in it.
    for value in range(1, 200):
        token = TAG.set(value)
        make(3)
        assert TAG.get() == value
        TAG.reset(token)
        assert TAG.get() == 0


def test_set_tag_var_refuses_other_objects():
    with pytest.raises(TypeError):
        _core.set_tag_var("endpoint")
