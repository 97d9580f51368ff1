"""The pytest plugin, run on small test files with pytester."""

import re
import textwrap

import pytest

pytest_plugins = ["pytester"]


def entry_point_registered():
    from importlib import metadata

    points = metadata.entry_points(group="pytest11")
    return "pyleakhunt.pytest_plugin" in {p.value for p in points}


# Installed, pytest loads the plugin itself; built in place, we name it.
PLUGIN = () if entry_point_registered() else ("-p", "pyleakhunt.pytest_plugin")


@pytest.fixture
def run(pytester):
    def run(source, *args):
        pytester.makepyfile(test_subject=textwrap.dedent(source))
        return pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", *args)

    return run


LEAKY = """
    import pytest

    LEAKED = []

    def leak_one():
        LEAKED.append(object())
"""


def test_fixture_catches_a_leak_of_one_small_object_per_call(run):
    result = run(
        LEAKY
        + """
    def test_it(leakhunt):
        leakhunt.assert_no_leak(leak_one)
    """
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "memory leak" in out
    assert "test_subject.py:6" in out  # file:line of the allocation
    assert "LEAKED.append(object())" in out  # its source line
    # object() is 16 bytes; the list that holds them grows now and then.
    assert re.search(r"per round: \[\+16, .*\] bytes, \[\+1, .*\] blocks", out)
    assert "traceback (most recent call first)" in out


def test_fixture_passes_a_clean_function_and_returns_the_report(run):
    result = run(
        """
    def clean():
        return [object() for _ in range(100)]

    def test_it(leakhunt):
        report = leakhunt.assert_no_leak(clean, rounds=3, warmup=1)
        assert report.sites == []
    """
    )
    result.assert_outcomes(passed=1)


def test_fixture_passes_arguments_and_honours_limit_and_ignore(run):
    result = run(
        LEAKY
        + """
    def leak_n(n, *, extra=0):
        for _ in range(n + extra):
            LEAKED.append(object())

    def test_limit(leakhunt):
        leakhunt.assert_no_leak(leak_n, 1, extra=1, limit="1 KiB")

    def test_ignore_pattern(leakhunt):
        leakhunt.assert_no_leak(leak_n, 2, ignore="*test_subject.py")

    def test_ignore_predicate(leakhunt):
        leakhunt.assert_no_leak(
            leak_n, 2, ignore=lambda tb: tb[-1].filename.endswith("subject.py")
        )

    def test_over_limit(leakhunt):
        leakhunt.assert_no_leak(leak_n, 100, limit="100 B")
    """
    )
    result.assert_outcomes(passed=3, failed=1)
    assert "test_over_limit" in result.stdout.str()


def test_marker_reruns_the_call_phase_with_fixtures_set_up_once(run):
    result = run(
        LEAKY
        + """
    SETUPS = []
    CALLS = []

    @pytest.fixture
    def resource():
        SETUPS.append(1)
        return "r"

    @pytest.mark.no_leak(rounds=4, warmup=3)
    def test_clean(resource):
        CALLS.append(resource)

    def test_counts():
        assert len(SETUPS) == 1
        assert len(CALLS) == 7

    @pytest.mark.no_leak
    def test_leaky():
        leak_one()
    """
    )
    result.assert_outcomes(passed=2, failed=1)
    assert "test_leaky" in result.stdout.str()
    assert "tests that leak memory" in result.stdout.str()


def test_leakhunt_option_checks_every_test_but_leak_ok(run):
    source = (
        LEAKY
        + """
    def test_leaks():
        leak_one()

    @pytest.mark.leak_ok
    def test_allowed():
        leak_one()

    def test_clean():
        [1, 2, 3]
    """
    )
    result = run(source, "--leakhunt")
    result.assert_outcomes(passed=2, failed=1)
    assert "test_leaks" in result.stdout.str()
    without = run(source)
    without.assert_outcomes(passed=3)


def test_rounds_and_warmup_options_change_the_defaults(run):
    result = run(
        """
    CALLS = []

    def test_a():
        CALLS.append(None)

    def test_count():
        assert len(CALLS) == 3 + 4
    """,
        "--leakhunt",
        "--leakhunt-rounds=3",
        "--leakhunt-warmup=4",
        "-p",
        "no:randomly",
    )
    # test_count itself is checked too, and its list only grows in test_a.
    result.assert_outcomes(passed=2)


def test_bad_option_values_are_usage_errors(run):
    result = run("def test_a(): pass", "--leakhunt-rounds=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_bad_marker_arguments_are_usage_errors(run):
    result = run(
        """
    import pytest

    @pytest.mark.no_leak(round=3)
    def test_a():
        pass
    """
    )
    assert result.ret != 0
    assert "unknown argument" in result.stdout.str() + result.stderr.str()


NO_FALSE_NEGATIVES = """
    import threading
    import pytest

    REGISTRY = {}

    class Node:
        def __init__(self):
            self.me = self  # a reference cycle

    def leak_in_thread():
        box = []
        def work():
            REGISTRY[len(REGISTRY)] = bytearray(100)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    def leak_a_cycle():
        node = Node()
        REGISTRY[id(node)] = node

    @pytest.mark.no_leak
    def test_thread():
        leak_in_thread()

    @pytest.mark.no_leak
    def test_cycle():
        leak_a_cycle()
"""


def test_leaks_in_threads_and_in_cycles_are_caught(run):
    result = run(NO_FALSE_NEGATIVES)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "bytearray(100)" in out
    assert "node = Node()" in out


def test_a_leak_that_allocates_is_caught_even_through_free_lists(run):
    result = run(
        LEAKY
        + """
    def leak_filled_list():
        LEAKED.append([len(LEAKED), "x"])  # a list object and its items

    def test_it(leakhunt):
        leakhunt.assert_no_leak(leak_filled_list)
    """
    )
    result.assert_outcomes(failed=1)
    assert 'LEAKED.append([len(LEAKED), "x"])' in result.stdout.str()


CLEAN_TESTS = """
    import functools
    import logging
    import re
    import sys
    import warnings

    import pytest

    N = range(50)
    log = logging.getLogger("clean")
    _lazy = {}

    def lazy_table():
        if not _lazy:
            _lazy.update((i, str(i)) for i in range(100))
        return _lazy

    @functools.lru_cache(maxsize=16)
    def square(x):
        return [x] * 3

    @pytest.mark.parametrize("i", N)
    def test_lazily_filled_module_cache(i):
        assert lazy_table()[5] == "5"

    @pytest.mark.parametrize("i", N)
    def test_interned_strings(i):
        assert sys.intern("pyleakhunt-" + "name") is sys.intern("pyleakhunt-name")

    @pytest.mark.parametrize("i", N)
    def test_re_cache(i):
        assert re.match(r"(\\d+)-(\\w+)", "12-ab").group(2) == "ab"

    @pytest.mark.parametrize("i", N)
    def test_logging(i, caplog):
        log.warning("message %d", i)
        logging.getLogger("clean.child").info("more")

    @pytest.mark.parametrize("i", N)
    def test_lru_cache_reaching_maxsize(i):
        for x in range(40):
            square(x)

    @pytest.mark.parametrize("i", N)
    def test_warnings_registry(i):
        warnings.warn("careful", UserWarning)

    @pytest.mark.parametrize("i", N)
    def test_output_capture(i):
        print("some output", i, "x" * 100)
        sys.stderr.write("to stderr\\n")
"""


def test_clean_tests_never_fail_50_times_over(run):
    result = run(CLEAN_TESTS, "--leakhunt", "-W", "always::UserWarning")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] == 7 * 50


def test_it_leaves_a_running_tracer_as_it_found_it(run):
    result = run(
        LEAKY
        + """
    import pyleakhunt

    def test_it(leakhunt):
        pyleakhunt.start(3)
        try:
            with pytest.raises(AssertionError):
                leakhunt.assert_no_leak(leak_one, nframe=10)
            assert pyleakhunt.is_tracing()
            assert pyleakhunt.get_traceback_limit() == 3
        finally:
            pyleakhunt.stop()

    def test_off_stays_off(leakhunt):
        leakhunt.assert_no_leak(lambda: None)
        assert not pyleakhunt.is_tracing()
    """
    )
    result.assert_outcomes(passed=2)


def test_works_with_the_stdlib_tracemalloc_on(run):
    result = run(
        LEAKY
        + """
    import tracemalloc

    def test_it(leakhunt):
        tracemalloc.start()
        try:
            with pytest.raises(AssertionError):
                leakhunt.assert_no_leak(leak_one)
            assert tracemalloc.is_tracing()
        finally:
            tracemalloc.stop()
    """
    )
    result.assert_outcomes(passed=1)


def test_works_under_xdist(run):
    pytest.importorskip("xdist")
    result = run(
        LEAKY
        + """
    @pytest.mark.parametrize("i", range(4))
    def test_clean(i):
        [i] * 10

    @pytest.mark.no_leak
    def test_leaky():
        leak_one()
    """,
        "-n",
        "2",
        "--leakhunt",
    )
    result.assert_outcomes(passed=4, failed=1)


def test_costs_nothing_until_used(run):
    result = run(
        """
    import sys

    def test_not_tracing():
        import pyleakhunt
        from pyleakhunt import _core

        assert not pyleakhunt.is_tracing()
        assert not _core.hooks_on_top()
        assert "pyleakhunt.leakcheck" not in sys.modules
    """
    )
    result.assert_outcomes(passed=1)


def test_plugin_is_registered_through_the_pytest11_entry_point(pytester):
    if not entry_point_registered():
        pytest.skip("pyleakhunt is not installed (built in place)")
    result = pytester.runpytest_subprocess("--help")
    assert "--leakhunt" in result.stdout.str()
