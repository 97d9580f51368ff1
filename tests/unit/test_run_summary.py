"""What ``pyleakhunt run`` says when its program ends (report.run_summary)."""

from pyleakhunt import report


def _summary(samples, duration):
    return "\n".join(report.run_summary("t.plh", samples, duration, [], 4))


def test_a_run_too_short_to_judge_names_an_interval_that_would_do():
    text = _summary(samples=2, duration=0.9)
    assert "not enough samples to judge growth: 2, at least 4" in text
    assert "the program ran 0.9 s: --interval 0.1 takes about 9 samples" in text


def test_the_suggested_interval_gives_twice_the_samples_needed():
    for duration in (0.08, 0.3, 0.9, 2.5, 7.9, 30.0):
        value = report.shorter_interval(duration, 4)
        assert value is not None and duration / value >= 8
        longer = [v for v in report._ROUND_INTERVALS if v > value]
        assert all(duration / v < 8 for v in longer), duration


def test_a_run_too_short_for_any_interval_is_told_to_run_longer():
    assert report.shorter_interval(0.05, 4) is None
    assert "run it longer" in _summary(samples=1, duration=0.05)


def test_a_run_with_enough_samples_and_no_suspect_gives_no_hint():
    text = _summary(samples=12, duration=12.0)
    assert "no suspect: no call site kept growing" in text
    assert "--interval" not in text


def test_a_run_whose_samples_were_starved_is_not_told_to_sample_less_often():
    # 8.1 s at --interval 0.25 took 3 samples: a busy asyncio loop kept
    # the GIL from the sampling thread.  --interval 1 (what the program's
    # length alone suggests) would take fewer still.
    lines = report.run_summary("t.plh", 3, 8.1, [], 4, None, 0.25)
    text = "\n".join(lines)
    assert "not enough samples to judge growth: 3, at least 4" in text
    assert "samples came 2.7 s apart on average, not every 0.25 s" in text
    assert "kept the GIL from the sampling thread" in text
    assert "run it longer" in text
    assert "--interval" not in text


def test_a_run_too_short_at_its_interval_is_offered_a_shorter_one():
    text = "\n".join(report.run_summary("t.plh", 2, 0.9, [], 4, None, 0.25))
    assert "the program ran 0.9 s: --interval 0.1 takes about 9 samples" in text
    assert "GIL" not in text


def test_an_interval_no_shorter_than_the_one_used_is_never_offered():
    for duration in (0.3, 0.9, 2.5, 7.9):
        for interval in report._ROUND_INTERVALS:
            samples = int(duration / interval)
            hint = report.too_few_samples_hint(duration, 4, interval, samples)
            if "--interval" in hint:
                offered = float(hint.split("--interval ")[1].split()[0])
                assert offered < interval, (duration, interval, hint)
