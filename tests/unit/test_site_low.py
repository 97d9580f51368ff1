"""Each site's low-water mark: its lowest size since the previous snapshot,
which the sustained-growth rule reads as the site's floor."""

import pyleakhunt
from pyleakhunt import _raw_snapshot


def make_one():
    return bytearray(1000)  # the site


SITE = (__file__, make_one.__code__.co_firstlineno + 1)


def site_now():
    """The site of make_one in a new aggregated snapshot (which resets every
    site's low-water mark)."""
    for site in _raw_snapshot(full=False).sites:
        if site.frames and site.frames[0] == SITE:
            return site
    raise AssertionError("make_one's site is not in the snapshot")


def test_a_site_reports_the_lowest_size_it_had_since_the_previous_snapshot():
    pyleakhunt.start(1)
    try:
        kept = [make_one() for _ in range(100)]
        first = site_now()
        assert first.count == 200  # an object and its buffer each
        assert first.low == 0  # made since tracing began: empty then
        one = first.size // 100
        del kept[:60]
        kept.extend([make_one() for _ in range(60)])  # as deep as the first
        second = site_now()
        assert (second.size, second.low) == (first.size, 40 * one)
        third = site_now()  # nothing freed since the second
        assert (third.size, third.low) == (second.size, second.size)
        del kept[:90]
        fourth = site_now()
        assert (fourth.size, fourth.low) == (10 * one, 10 * one)
    finally:
        pyleakhunt.stop()


def test_a_site_that_gave_everything_back_and_grew_again_reports_zero():
    pyleakhunt.start(1)
    try:
        kept = [make_one() for _ in range(10)]
        site_now()
        kept = None
        kept = [make_one() for _ in range(10)]
        site = site_now()
        assert site.low == 0 and site.size > 0
        assert len(kept) == 10
    finally:
        pyleakhunt.stop()
