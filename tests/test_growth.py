"""The sustained-growth rule, on series built by hand."""

from pyleakhunt.growth import GrowthRule, Sample, find_suspects
from pyleakhunt.snapshot import Traceback

KEY = Traceback((("app.py", 10),))


def series(sizes, interval=1.0):
    return [
        Sample(i * interval, {KEY: (size, max(size // 100, 1))})
        for i, size in enumerate(sizes)
    ]


def suspects(sizes):
    return find_suspects(series(sizes), {})


def test_steady_growth_is_a_suspect_with_its_rate():
    found = suspects([i * 10_000 for i in range(10)])
    assert len(found) == 1
    assert found[0].growth_bytes_per_s == 10_000
    assert found[0].growth_bytes_per_snapshot == 10_000
    assert found[0].consistency == 1.0
    assert found[0].size == 90_000


def test_a_plateau_is_not_a_suspect():
    assert suspects([0, 10_000, 20_000, 30_000, 30_000, 30_000, 30_000, 30_000]) == []


def test_churn_is_not_a_suspect():
    assert suspects([50_000, 90_000, 50_000, 95_000, 51_000, 92_000, 52_000]) == []


def test_bursty_growth_that_never_gives_back_is_a_suspect():
    sizes = [0, 0, 20_000, 20_000, 40_000, 40_000, 60_000, 60_000, 80_000]
    found = suspects(sizes)
    assert len(found) == 1
    assert found[0].consistency == 0.5


def test_too_few_samples_say_nothing():
    assert suspects([0, 10_000, 20_000]) == []


def test_tiny_growth_is_below_the_noise_floor():
    assert suspects([0, 100, 200, 300, 400, 500]) == []
    rule = GrowthRule(min_growth_bytes=100)
    assert find_suspects(series([0, 100, 200, 300, 400, 500]), {}, rule)


def test_suspects_are_ranked_by_rate_times_consistency():
    slow, fast = Traceback((("a.py", 1),)), Traceback((("b.py", 2),))
    samples = [
        Sample(float(i), {slow: (i * 2_000, i), fast: (i * 50_000, i)})
        for i in range(8)
    ]
    assert [s.key for s in find_suspects(samples, {})] == [fast, slow]


def test_suspect_json_has_the_documented_fields():
    (suspect,) = suspects([i * 10_000 for i in range(6)])
    data = suspect.to_json()
    for field in ("filename", "lineno", "size", "count", "growth_bytes_per_s"):
        assert field in data
    assert data["traceback"] == [["app.py", 10]]
