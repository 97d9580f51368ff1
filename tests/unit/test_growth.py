"""The sustained-growth rule, on series built by hand."""

import json

from pyleakhunt._raw import RawSite, RawSnapshot
from pyleakhunt.growth import (
    GrowthRule,
    Sample,
    analyse_series,
    find_suspects,
    suspects_in,
    suspects_of_series,
)
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


def test_absent_sites_count_as_zero_and_only_the_last_samples_are_judged():
    late = Traceback((("app.py", 20),))
    gone = Traceback((("app.py", 30),))
    samples = [
        Sample(float(i), {KEY: (i * 5000, i + 1), gone: (i * 9000, 1)})
        for i in range(6)
    ]
    samples[3].figures[late] = (4000, 1)  # absent before and after sample 3
    samples[-1].figures.pop(gone)  # grows, but is gone at the end
    samples[-1].figures[late] = (9000, 7)
    found = find_suspects(samples, {KEY: Traceback((("lib.py", 1), ("app.py", 10)))})
    # late (0 0 0 4000 0 9000) grew in 2 intervals of 5: too unsteady.
    assert [s.key for s in found] == [KEY]
    assert found[0].traceback == Traceback((("lib.py", 1), ("app.py", 10)))
    assert (found[0].size, found[0].count) == (25_000, 6)
    by_series = suspects_of_series(
        [s.timestamp for s in samples],
        [(KEY, [i * 5000 for i in range(6)], 6), (late, [0, 0, 0, 4000, 0, 9000], 7)],
        {KEY: Traceback((("lib.py", 1), ("app.py", 10)))},
    )
    assert by_series == found


def test_suspect_json_has_the_documented_fields():
    (suspect,) = suspects([i * 10_000 for i in range(6)])
    data = suspect.to_json()
    for field in ("filename", "lineno", "size", "count", "growth_bytes_per_s"):
        assert field in data
    assert data["traceback"] == [["app.py", 10]]
    assert data["user_frame"] == ["app.py", 10] and data["via"] is None


def test_the_rule_judges_each_user_line_as_a_whole():
    # One line of the program keeps parsed bodies; json allocates them at
    # three lines of its decoder, each growing in only a third of the
    # intervals (too seldom to be a suspect by itself).  Per user line the
    # growth is steady, and the suspect names the program's line.
    decoder = json.decoder.__file__
    samples = []
    for i in range(9):
        sites = [
            RawSite(
                0,
                ((decoder, 350 + j), (json.__file__, 346), ("/srv/app.py", 7)),
                3,
                1,
                1000 + 5000 * ((i + 2 - j) // 3),
            )
            for j in range(3)
        ]
        samples.append(RawSnapshot(3, sites, timestamp=1_700_000_000.0 + i))
    assert suspects_in(samples, "lineno") == []
    (suspect,) = suspects_in(samples, "userline")
    assert (suspect.filename, suspect.lineno) == ("/srv/app.py", 7)
    assert suspect.consistency == 1.0
    data = suspect.to_json()
    assert data["user_frame"] == ["/srv/app.py", 7]
    assert data["via"][0] == decoder
    assert data["traceback"][-1] == ["/srv/app.py", 7]


def test_a_series_is_judged_the_same_in_any_order_and_streamed():
    snaps = [
        RawSnapshot(
            1,
            [
                RawSite(0, (("/srv/app.py", 3),), 1, 1 + i, 1000 * (1 + i)),
                RawSite(0, (("/srv/app.py", 9),), 1, 1, 5000),
            ],
            pid=77,
            timestamp=1_700_000_000.0 + i,
            lost_blocks=i % 3,
        )
        for i in range(6)
    ]
    forward = analyse_series(iter(snaps))
    backward = analyse_series(iter(snaps[::-1]))
    assert forward == backward
    assert [(s.lineno, s.growth_bytes) for s in forward.suspects] == [(3, 5000)]
    assert (forward.samples, forward.pid, forward.lost_blocks) == (6, 77, 2)
    assert forward.last_timestamp - forward.first_timestamp == 5.0
    assert suspects_in(snaps) == forward.suspects
