"""The sustained-growth rule, on series built by hand."""

import json
import random

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
        Sample(i * interval, {KEY: (size, max(size // 100, 1), 0)})
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
        Sample(float(i), {slow: (i * 2_000, i, 0), fast: (i * 50_000, i, 0)})
        for i in range(8)
    ]
    assert [s.key for s in find_suspects(samples, {})] == [fast, slow]


def test_absent_sites_count_as_zero_and_only_the_last_samples_are_judged():
    late = Traceback((("app.py", 20),))
    gone = Traceback((("app.py", 30),))
    samples = [
        Sample(float(i), {KEY: (i * 5000, i + 1, 0), gone: (i * 9000, 1, 0)})
        for i in range(6)
    ]
    samples[3].figures[late] = (4000, 1, 0)  # absent before and after sample 3
    samples[-1].figures.pop(gone)  # grows, but is gone at the end
    samples[-1].figures[late] = (9000, 7, 0)
    found = find_suspects(samples, {KEY: Traceback((("lib.py", 1), ("app.py", 10)))})
    # late (0 0 0 4000 0 9000) grew in 2 intervals of 5: too unsteady.
    assert [s.key for s in found] == [KEY]
    assert found[0].traceback == Traceback((("lib.py", 1), ("app.py", 10)))
    assert (found[0].size, found[0].count) == (25_000, 6)
    by_series = suspects_of_series(
        [s.timestamp for s in samples],
        [
            (KEY, [i * 5000 for i in range(6)], None, 6),
            (late, [0, 0, 0, 4000, 0, 9000], None, 7),
        ],
        {KEY: Traceback((("lib.py", 1), ("app.py", 10)))},
    )
    assert by_series == found


def churned(leak_per_sample, samples=20, seed=5):
    """A key that keeps *leak_per_sample* bytes between two samples while
    it makes, and frees again, up to 400 KB of temporaries, of which each
    sample sees a random part (it came mid-batch): its sizes, and its
    floors (the lowest size since the sample before: the kept part)."""
    rng = random.Random(seed)
    kept = [leak_per_sample * i for i in range(samples)]
    sizes = [k + rng.randint(0, 400_000) for k in kept]
    return sizes, kept


def floor_series(sizes, floors):
    return [
        Sample(float(i), {KEY: (size, 1, floor)})
        for i, (size, floor) in enumerate(zip(sizes, floors))
    ]


def test_a_leak_drowned_in_churn_is_found_by_its_floors():
    # 2 KB kept an interval, beside up to 400 KB made and freed again: the
    # sizes alone fail the churn test (what they gain they mostly give
    # back); the floors grow by the kept part every interval.
    sizes, floors = churned(2000)
    assert find_suspects(floor_series(sizes, [0] * len(sizes)), {}) == []
    (suspect,) = find_suspects(floor_series(sizes, floors), {})
    assert suspect.key == KEY
    # The floors from the second sample to the one before the last.
    assert suspect.growth_bytes == 2000 * 17
    assert suspect.growth_bytes_per_s == 2000
    assert suspect.consistency == 1.0
    assert suspect.size == sizes[-1]


def test_floors_raised_by_two_samples_within_one_long_batch_do_not_hide_a_leak():
    # No quiet moment between samples 5 and 6, nor 12 and 13: those floors
    # are most of a batch.  A later, lower floor shows it was given back.
    sizes, floors = churned(2000)
    floors[6] += 1_500_000
    floors[13] += 900_000
    (suspect,) = find_suspects(floor_series(sizes, floors), {})
    assert suspect.growth_bytes == 2000 * 17 and suspect.consistency > 0.8


def test_memory_freed_before_the_last_sample_is_no_leak_by_its_floors():
    sizes, floors = churned(2000)
    sizes[-1] = floors[-1] = 0  # the program let it all go at the end
    assert find_suspects(floor_series(sizes, floors), {}) == []


def closed(samples, freed=True):
    """*samples* with a closing sample after them (`LeakWatcher.stop`'s),
    which finds KEY freed if *freed*, else as the last sample had it."""
    last = samples[-1]
    figures = {} if freed else dict(last.figures)
    return samples + [Sample(last.timestamp + 1.0, figures, closing=True)]


def test_a_leak_the_programs_end_freed_is_a_suspect_marked_freed_at_exit():
    # A list local to main(), freed when it returned, before the closing
    # sample: it grew at every sample until then.
    found = find_suspects(closed(series([i * 10_000 for i in range(10)])), {})
    assert len(found) == 1
    assert found[0].freed_at_exit and found[0].size == 0 and found[0].count == 0
    assert found[0].growth_bytes == 90_000 and found[0].consistency == 1.0


def test_a_leak_still_held_at_the_closing_sample_is_not_marked():
    found = find_suspects(
        closed(series([i * 10_000 for i in range(10)]), freed=False), {}
    )
    assert len(found) == 1 and not found[0].freed_at_exit


def test_a_fall_at_a_sample_that_is_not_closing_is_no_suspect():
    samples = series([i * 10_000 for i in range(10)])
    samples.append(Sample(10.0, {}))  # freed while the program ran on
    assert find_suspects(samples, {}) == []


def test_churn_freed_at_the_closing_sample_is_no_suspect():
    sizes = [50_000, 90_000, 50_000, 95_000, 51_000, 92_000, 52_000, 90_000]
    assert find_suspects(closed(series(sizes)), {}) == []


def test_a_leak_drowned_in_churn_and_freed_at_exit_is_found_by_its_floors():
    sizes, floors = churned(2000)
    found = find_suspects(closed(floor_series(sizes, floors)), {})
    assert len(found) == 1 and found[0].freed_at_exit


def test_floors_that_only_wobble_make_no_suspect():
    # A site that is never quiet between samples (requests always in
    # flight): its floors are noise, whose least from each sample on
    # climbs towards the end.
    for seed in range(20):
        rng = random.Random(seed)
        floors = [rng.randint(0, 100_000) for _ in range(20)]
        sizes = [floor + rng.randint(0, 400_000) for floor in floors]
        assert find_suspects(floor_series(sizes, floors), {}) == [], seed


def test_churn_whose_floors_stay_flat_is_not_a_suspect():
    sizes, _ = churned(0)
    assert find_suspects(floor_series(sizes, [1000] * len(sizes)), {}) == []
    wobbly = [1000 + (i % 3) * 500 for i in range(len(sizes))]
    assert find_suspects(floor_series(sizes, wobbly), {}) == []


def test_floors_that_stop_growing_are_not_a_suspect():
    sizes, floors = churned(2000)
    plateau = [min(floor, 10 * 2000) for floor in floors]
    assert find_suspects(floor_series(sizes, plateau), {}) == []


def test_the_first_floor_covers_the_time_before_the_series_and_is_left_out():
    # Memory made once before the first sample, then kept as it is: the
    # first floor is 0 (the site was empty then), later ones are flat.
    steady = [500_000] * 10
    assert find_suspects(floor_series(steady, [0] + steady[1:]), {}) == []


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
    # intervals (by itself a staircase, which ranks below steady growth).
    # Per user line the growth is steady, and the suspect names the
    # program's line.
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
    by_line = suspects_in(samples, "lineno")
    assert {s.filename for s in by_line} == {decoder}
    assert all(s.consistency < 0.5 for s in by_line)
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


def test_a_leak_in_rare_bursts_is_a_suspect():
    # A batch job keeps 140 KB every 12th interval, and nothing gives back.
    sizes = [20_000 + 140_000 * ((i + 5) // 12) for i in range(40)]
    found = suspects(sizes)
    assert len(found) == 1
    assert found[0].consistency == 3 / 39  # honest: it grew in 3 intervals


def test_a_cache_warmed_once_late_is_not_a_staircase():
    sizes = [10_000] * 30 + [40_000, 70_000, 100_000] + [100_000] * 2
    assert suspects(sizes) == []


def test_bursts_that_stopped_are_not_a_suspect():
    # Three bursts, then quiet for longer than between any two of them.
    sizes = [50_000 * min((i + 3) // 6, 3) for i in range(40)]
    assert suspects(sizes) == []


def test_two_bursts_are_not_enough():
    sizes = [50_000 * ((i + 1) // 15) for i in range(30)]
    assert suspects(sizes) == []


def test_a_staircase_that_gives_back_is_not_a_suspect():
    # Rare steps up, and as rare ones down: a pool that grows and shrinks.
    sizes = [100_000] * 40
    for start, change in ((4, 40_000), (12, -30_000), (20, 40_000), (33, 40_000)):
        sizes[start:] = [s + change for s in sizes[start:]]
    assert suspects(sizes) == []


def test_noisy_floors_never_pass_as_a_staircase():
    # What is held from each sample on never falls, and the least of noise
    # climbs in steps towards the end: that series is not judged as one.
    for seed in range(200):
        rng = random.Random(seed)
        floors = [rng.randint(0, 100_000) for _ in range(40)]
        sizes = [floor + rng.randint(0, 400_000) for floor in floors]
        assert find_suspects(floor_series(sizes, floors), {}) == [], seed


def test_one_container_that_doubles_in_place_is_a_staircase():
    # A dict kept and filled forever: its table doubles now and then, and
    # each step is as big as all the steps before it.
    sizes = [1_000 * 2 ** (i // 8) for i in range(40)]
    found = suspects(sizes)
    assert len(found) == 1 and found[0].consistency < 0.5


def test_a_container_is_a_staircase_until_its_next_doubling_is_due():
    # Filled at a steady rate, a dict's table doubles at 1, 2, 4, 8 and 16 s:
    # the next is due at 32 s, twice the last gap after the last.  At 30 s
    # it has been quiet for 14 s, longer than 1.5 times that gap.
    sizes = [1_000 * 2 ** sum(1 for d in (1, 2, 4, 8, 16) if t >= d) for t in range(31)]
    found = suspects(sizes)
    assert len(found) == 1 and found[0].consistency < 0.5


def test_one_big_step_among_small_rises_is_not_a_staircase():
    sizes = [10_000 + 1_500 * (i // 8) for i in range(40)]
    sizes[30:] = [s + 100_000 for s in sizes[30:]]
    assert suspects(sizes) == []


def swept_cache(period, kept, n=40, start=0):
    """A cache that grows 10 KB a sample and is swept every *period* samples,
    keeping *kept* of what came since the sweep before (a sweep with a bug)."""
    sizes, size, base = [], 0, 0
    for i in range(start, start + n):
        size += 10_000
        if i % period == period - 1:
            size = base + int((size - base) * kept)
            base = size
        sizes.append(size)
    return sizes


def with_floors(sizes):
    """The suspects of *sizes* whose floors are what the tracer sees of a
    series that moves at once at each change: the lower of the two sizes
    around each interval."""
    floors = [sizes[0]] + [min(a, b) for a, b in zip(sizes, sizes[1:])]
    return find_suspects(floor_series(sizes, floors), {})


def test_a_sweep_that_keeps_a_tenth_of_each_round_is_a_suspect():
    # Its live size falls by nine tenths at every sweep: the churn test
    # fails it, and what it held from each sample on rose in one interval
    # of eight.  The lows after the sweeps rise steadily.
    found = with_floors(swept_cache(8, 0.1))
    assert len(found) == 1 and found[0].consistency == 34 / 39  # it fell in 5 intervals


def test_a_sweep_is_a_suspect_whichever_sample_comes_first():
    for start in range(1, 8):
        assert len(with_floors(swept_cache(8, 0.1, n=45, start=start))) == 1, start


def test_a_full_sweep_is_no_suspect():
    assert with_floors(swept_cache(8, 0.0)) == []


def test_sweeps_with_jittered_lows_are_no_suspect():
    # A cache emptied every few samples, whose lows are what came since:
    # they go up and down at random, and rising ones must not pass.
    passed = 0
    for seed in range(300):
        rng = random.Random(seed)
        sizes, size = [], 0
        for i in range(40):
            size += rng.randint(7_000, 13_000)
            if i % 5 == 4:
                size = rng.randint(0, 20_000)
            sizes.append(size)
        passed += bool(with_floors(sizes))
    assert passed <= 1


def test_sweeps_whose_lows_stopped_rising_are_no_suspect():
    sizes = swept_cache(8, 0.1, n=24) + swept_cache(8, 0.0, n=24)
    base = sizes[23]
    sizes[24:] = [base + s for s in sizes[24:]]
    assert with_floors(sizes) == []


def test_a_sweep_with_one_low_out_of_order_is_a_suspect():
    # A dict swept in place keeps its table, which may have doubled just
    # before one sweep: that low comes out above the next.
    sizes = swept_cache(5, 0.1, n=40)
    sizes[4:9] = [s + 6_000 for s in sizes[4:9]]  # lows 11 KB, 10 KB, 15 KB...
    assert len(with_floors(sizes)) == 1


def test_a_sweep_with_many_lows_out_of_order_is_no_suspect():
    sizes = swept_cache(5, 0.1, n=40)
    for start in (4, 14, 24, 34):  # four lows of eight above the next
        sizes[start : start + 5] = [s + 6_000 for s in sizes[start : start + 5]]
    assert with_floors(sizes) == []


def test_a_leak_that_began_late_is_judged_from_when_its_line_appeared():
    # Nothing at the line for 60% of the run, then 175 KB a sample: it grew
    # in 5 intervals of 12, too few for the whole window's steadiness.
    sizes = [0] * 8 + [175_000 * i for i in range(1, 6)]
    found = suspects(sizes)
    assert len(found) == 1 and found[0].consistency == 1.0
    assert found[0].growth_bytes == 875_000


def test_a_line_that_appeared_in_the_last_quarter_is_not_yet_judged():
    sizes = [0] * 30 + [175_000 * i for i in range(1, 6)]
    assert suspects(sizes) == []


def test_a_line_that_appeared_late_and_stopped_is_no_suspect():
    sizes = [0] * 8 + [100_000, 200_000, 300_000, 300_000, 300_000, 300_000]
    assert suspects(sizes) == []


def test_a_leak_that_began_late_at_a_line_already_holding_memory_is_found():
    # What a program kept before the watcher started, flat for 60% of the
    # run, then 3 KB a sample at the same line: judged from the last
    # sample at that level, and measured from there.
    sizes = [40_000] * 18 + [40_000 + 3_000 * i for i in range(1, 13)]
    found = suspects(sizes)
    assert len(found) == 1 and found[0].consistency == 1.0
    assert found[0].growth_bytes == 36_000
    assert with_floors(sizes)[0].growth_bytes == 36_000


def test_a_line_held_flat_then_grown_in_the_last_quarter_is_not_yet_judged():
    sizes = [40_000] * 24 + [40_000 + 3_000 * i for i in range(1, 7)]
    assert suspects(sizes) == []


def test_a_line_held_flat_that_grew_once_more_and_stopped_is_no_suspect():
    sizes = [40_000] * 18 + [43_000, 46_000, 49_000] + [49_000] * 9
    assert suspects(sizes) == []


def slowed(late_steps, early=170_000, fast=3):
    """Sizes of a line that grew by *early* a sample for *fast* samples,
    then by each of *late_steps*."""
    sizes = [early * i for i in range(fast + 1)]
    for step in late_steps:
        sizes.append(sizes[-1] + step)
    return sizes


def test_a_leak_that_slowed_down_is_judged_on_its_second_half():
    # 170 KB a sample for 3 samples, then 3 KB a sample (its callers
    # thinned out): over the whole window its late rate is a fiftieth of
    # its early one, which read as a cache that had warmed up.
    found = suspects(slowed([3_000] * 12))
    assert len(found) == 1 and found[0].consistency == 1.0
    # Below the whole window's plateau test: its late rate is too low.
    assert GrowthRule().judge(*zip(*enumerate(slowed([3_000] * 12)))) is None
    # Its rate is the one it leaks at now.
    assert found[0].growth_bytes_per_s == 3_000
    assert found[0].size == 546_000


def test_a_leak_that_slowed_down_is_found_once_its_second_half_has_eight_samples():
    assert suspects(slowed([3_000] * 10)) == []  # 7 samples in its second half
    for late in range(11, 60):
        assert suspects(slowed([3_000] * late)), late


def test_a_slowed_leak_whose_list_grows_in_one_jump_is_found():
    # A `run` on 3.15 (sampled every 0.2 s): 170 KB a second, then one str
    # a call of fifty; the list that keeps them grew by 4 KB at 4.2 s.
    sizes = [
        0, 35254, 69392, 101244, 134370, 169474, 202720, 203320, 203870,
        204470, 205070, 205620, 206220, 206820, 207420, 208020, 208620,
        209220, 209781, 210393, 210954, 215329, 215941, 216502, 217165,
        217726, 218338, 219001, 219562, 220225, 220837,
    ]  # fmt: skip
    found = find_suspects(series(sizes, interval=0.2), {})
    assert len(found) == 1
    assert 2_500 < found[0].growth_bytes_per_s < 5_000


def test_a_cache_that_warmed_up_then_only_jitters_is_no_suspect():
    rng = random.Random(11)
    found = 0
    for _ in range(500):
        late = [rng.randrange(-4_000, 4_000) for _ in range(rng.randrange(4, 60))]
        sizes = slowed([])
        base = sizes[-1]
        sizes += [base + 4_000 + d for d in late]  # around one level
        found += bool(suspects(sizes))
    assert found == 0


def test_a_cache_that_warmed_up_then_took_an_entry_now_and_then_is_no_suspect():
    # One more entry every fourth sample or so after the warm-up: it grew
    # in too few intervals of its second half.
    assert suspects(slowed([3_000, 0, 0, 0] * 4)) == []
    assert suspects(slowed([0, 0, 3_000, 0, 0] * 4)) == []


def test_a_cache_that_warmed_up_and_still_slows_down_is_no_suspect():
    # Each new entry rarer than the one before: a cache of a bounded set
    # of keys, filling up.
    late = [int(120_000 / (i + 1) ** 2) for i in range(14)]
    assert suspects(slowed(late)) == []


def test_a_cache_emptied_out_of_step_with_the_samples_is_no_suspect():
    # Emptied every second, sampled every 0.2017 s: the size at the first
    # sample after each clear climbs with the drift between the two clocks,
    # but the least it held at each clear, its floor there, is nothing.
    times = [i * 0.2017 for i in range(80)]
    sizes = [int(11_000 * ((t % 1.0) / 0.2)) for t in times]
    floors = [sizes[0]] + [0 if b < a else min(a, b) for a, b in zip(sizes, sizes[1:])]
    samples = [
        Sample(t, {KEY: (size, 1, floor)})
        for t, size, floor in zip(times, sizes, floors)
    ]
    assert find_suspects(samples, {}) == []
    # Read from their sizes alone, the lows climb: the floors decide.
    assert GrowthRule()._sawtooth(
        times, sizes, [b - a for a, b in zip(sizes, sizes[1:])], None
    )


def test_even_steps_quiet_for_twice_their_gap_are_a_plateau():
    # A deque(maxlen=6) filled by a job every 8 samples, full for 14
    # samples: equal steps, so no doubling is due.
    sizes = [64_000 * min(i // 8, 6) for i in range(1, 63)]
    assert suspects(sizes) == []


def test_a_final_report_built_in_main_is_no_suspect_freed_at_exit():
    # Counters only for 40 samples, then rows for a report for 7, freed
    # when main() returns: it appeared in the last quarter of the run.
    sizes = [0] * 40 + [20_000 * i for i in range(1, 8)]
    floors = [0] + [min(a, b) for a, b in zip(sizes, sizes[1:])]
    assert find_suspects(closed(floor_series(sizes, floors)), {}) == []


def test_a_kept_row_of_every_batch_sampled_mid_batch_grows_at_its_floors_rate():
    # One row kept of every batch of 20,000, sampled every 0.2 s (a failed
    # run of test_cli's keep-one test, by line): a sample that lands
    # mid-batch sees up to 4.9 MB alive at the line, so its sizes swing,
    # and read as a sawtooth.  A slope fitted through the swinging sizes
    # fell (-30.6 KiB/s), and the line that kept one int a batch
    # (+203 B/s) came first.  Its growth is that of its lows.
    times = [
        0.0, 0.207, 0.444, 0.677, 0.9, 1.122, 1.355, 1.574, 1.804, 2.036,
        2.251, 2.46, 2.667, 2.878, 3.094, 3.302, 3.519, 3.727, 3.836,
    ]  # fmt: skip
    sizes = [
        0, 1126344, 3145784, 11900, 15946, 19992, 4782512, 28798, 92732,
        37366, 404472, 45220, 4906858, 53312, 2523293, 1941379, 65688, 69496,
        71400,
    ]  # fmt: skip
    floors = [
        0, 0, 3570, 7616, 11900, 15946, 19992, 24514, 28798, 33320, 37366,
        41650, 45220, 49266, 53312, 57596, 61642, 65688, 69496,
    ]  # fmt: skip
    ints = Traceback((("app.py", 4),))
    int_sizes = [0] + [48] * 14 + [112, 656, 1168, 1376]
    int_floors = [0, 0] + [48] * 14 + [112, 656, 1120]
    samples = [
        Sample(t, {KEY: (size, 1, floor), ints: (n, 1, low)})
        for t, size, floor, n, low in zip(times, sizes, floors, int_sizes, int_floors)
    ]
    samples[-1] = Sample(times[-1], samples[-1].figures, closing=True)
    found = find_suspects(samples, {})
    assert found and found[0].key == KEY
    assert found[0].growth_bytes_per_s > 10_000
    assert 0 < found[0].growth_bytes <= floors[-1]
