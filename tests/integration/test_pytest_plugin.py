"""The pytest plugin, run on small test files with pytester."""

import re
import sys
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
    def run(source, *args, conftest=None):
        pytester.makepyfile(test_subject=textwrap.dedent(source))
        if conftest is not None:
            pytester.makeconftest(textwrap.dedent(conftest))
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


def test_marker_sets_function_fixtures_up_every_round_and_wider_ones_once(run):
    result = run(
        LEAKY
        + """
    EVENTS = []

    @pytest.fixture(scope="module")
    def shared():
        EVENTS.append("module setup")
        yield
        EVENTS.append("module teardown")

    @pytest.fixture
    def resource(shared):
        EVENTS.append("setup")
        yield "r"
        EVENTS.append("teardown")

    @pytest.mark.no_leak(rounds=4, warmup=3)
    def test_leaky(resource):
        EVENTS.append("call")
        leak_one()

    def test_counts():
        # pytest's own run, 2 more warm-up calls, 4 measured rounds; the
        # last teardown is pytest's, in the teardown phase that follows.
        assert EVENTS == ["module setup"] + ["setup", "call", "teardown"] * 7
    """,
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=1, failed=1)
    assert "grew in each of 4 rounds" in result.stdout.str()
    assert "tests that leak memory" in result.stdout.str()


def test_a_clean_test_is_measured_once_after_the_warm_up(run):
    result = run(
        """
    import itertools
    import sys

    CALLS = itertools.count()

    def test_clean():
        next(CALLS)
        [object() for _ in range(100)]

    def test_count():
        # pytest's run, one more warm-up call, then one measured round: no
        # site grew in it, so none can grow in every round.  On 3.14 and
        # later one site may still settle in the first measured round (more
        # free lists to refill), and the check stops after the second.
        assert next(CALLS) in ((3,) if sys.version_info < (3, 14) else (3, 4))
    """,
        "--leakhunt",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=2)


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
        CALLS.append(object())

    def test_count():
        assert len(CALLS) == 4 + 3
    """,
        "--leakhunt",
        "--leakhunt-rounds=3",
        "--leakhunt-warmup=4",
        "-p",
        "no:randomly",
    )
    # test_count itself is checked too, and its list only grows in test_a.
    result.assert_outcomes(passed=1, failed=1)
    assert "grew in each of 3 rounds" in result.stdout.str()


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
    out = result.stdout.str()
    failed = re.findall(r"FAILED test_subject\.py::(\w+)\[", out)
    # KNOWN FALSE ALARMS of the bounded lru_cache of lists, whose site gains
    # 2 fresh blocks a round as it evicts lists made before tracing; the
    # check tells that from a leak by the process's count of pymalloc blocks
    # (sys.getallocatedblocks), which did not grow:
    # - on 3.10, in 1 or 2 of its 50 runs inside this 350-test session
    #   (alone, never), the count happens to rise as much;
    # - without pymalloc (PYTHONMALLOC=malloc, as under ASan) there is no
    #   count at all, and every run of it is reported.
    # Every other clean body must pass 50 times in 50, everywhere.
    no_pymalloc = sys.getallocatedblocks() == 0
    tolerated = set()
    if no_pymalloc or sys.version_info < (3, 11):
        tolerated = {"test_lru_cache_reaching_maxsize"}
    assert set(failed) <= tolerated, out[-3000:]
    if not no_pymalloc:
        assert len(failed) <= 2, out[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + len(failed) == 7 * 50


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


SMALL_LEAKS = """
    import pytest

    KEPT = []

    def keep_dict():
        KEPT.append({"order": 7})

    def keep_empty_list():
        KEPT.append([])

    def keep_list():
        KEPT.append([len(KEPT)])

    def keep_tuple():
        i = len(KEPT)
        KEPT.append((i, i + 1))

    def keep_float():
        i = len(KEPT)
        KEPT.append(i + 0.5)

    def keep_int():
        i = len(KEPT)
        KEPT.append(i + (1 << 20))

    LEAKS = [keep_dict, keep_empty_list, keep_list, keep_tuple, keep_float, keep_int]

    @pytest.mark.parametrize("leak", LEAKS)
    @pytest.mark.no_leak
    def test_marker(leak):
        leak()

    @pytest.mark.parametrize("leak", LEAKS)
    def test_fixture(leak, leakhunt):
        leakhunt.assert_no_leak(leak)

    @pytest.mark.parametrize("leak", LEAKS)
    def test_plain(leak):
        leak()
"""


def line_of(source, text):
    """The line number of *text* in *source*, as pytester writes it."""
    return textwrap.dedent(source).strip("\n").splitlines().index(text) + 1


#: The line of each leak in SMALL_LEAKS, as the failure message names it.
SMALL_LEAK_LINES = {
    "keep_dict": line_of(SMALL_LEAKS, '    KEPT.append({"order": 7})'),
    "keep_empty_list": line_of(SMALL_LEAKS, "    KEPT.append([])"),
    "keep_list": line_of(SMALL_LEAKS, "    KEPT.append([len(KEPT)])"),
    "keep_tuple": line_of(SMALL_LEAKS, "    KEPT.append((i, i + 1))"),
    "keep_float": line_of(SMALL_LEAKS, "    KEPT.append(i + 0.5)"),
    "keep_int": line_of(SMALL_LEAKS, "    KEPT.append(i + (1 << 20))"),
}


def leak_headers(out):
    """How many failures name each line of SMALL_LEAKS as a leaking site."""
    # The short summary repeats each message in full where pytest sees a CI
    # environment (CI=true): count the failures section only.
    out = out.split("short test summary info")[0]
    return {
        name: len(re.findall(r"test_subject\.py:%d: \d+ B per round" % line, out))
        for name, line in SMALL_LEAK_LINES.items()
    }


def test_one_small_dict_list_tuple_float_or_int_a_call_fails_naming_its_line(run):
    # Free lists (CPython's caches of dead lists, dicts, tuples, floats;
    # ints from 3.14) hand these out without an allocation: the check
    # empties them first.  On 3.15 it once left a float in its free list
    # (and on 3.14+ an int), and a float or int kept per call went unseen.
    cases = len(SMALL_LEAK_LINES)
    result = run(SMALL_LEAKS, "-p", "no:randomly")
    result.assert_outcomes(failed=2 * cases, passed=cases)
    assert leak_headers(result.stdout.str()) == dict.fromkeys(SMALL_LEAK_LINES, 2)

    result = run(SMALL_LEAKS, "--leakhunt", "-p", "no:randomly")
    result.assert_outcomes(failed=3 * cases)
    assert leak_headers(result.stdout.str()) == dict.fromkeys(SMALL_LEAK_LINES, 3)


CHURN_AND_KEEP = """
KEPT = []


def churn(i):
    return len([((j, i), [j], {j: i}, {"k": i}, j + 0.5) for j in range(40)])


def test_keeps_a_tuple_beside_a_churn():
    churn(1)
    KEPT.append((len(KEPT), -len(KEPT)))
    churn(2)


def test_keeps_a_dict_beside_a_churn():
    churn(1)
    KEPT.append({"id": len(KEPT)})
    churn(2)
"""


def test_a_small_object_kept_beside_a_churn_of_its_type_is_named_at_its_line(run):
    # The kept object would be made in the memory of one the churn freed:
    # before 3.13 only an empty free list (fresh_objects) puts it at its
    # own line; on every version a dict's key table (no object, so no
    # reference tracer sees its reuse) only while its free list is off.
    result = run(CHURN_AND_KEEP, "--leakhunt")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    for kept in (
        "    KEPT.append((len(KEPT), -len(KEPT)))",
        '    KEPT.append({"id": len(KEPT)})',
    ):
        line = line_of(CHURN_AND_KEEP, kept)
        assert re.search(r"test_subject\.py:%d: \d+ B per round" % line, out), out
    churn = line_of(
        CHURN_AND_KEEP,
        '    return len([((j, i), [j], {j: i}, {"k": i}, j + 0.5) for j in range(40)])',
    )
    assert not re.search(r"test_subject\.py:%d: \d+ B per round" % churn, out), out


def test_unittest_testcases_are_checked_with_setup_and_teardown_each_round(run):
    result = run(
        """
    import unittest

    KEPT = []
    EVENTS = []

    class Orders(unittest.TestCase):
        def setUp(self):
            EVENTS.append("setUp")
            self.scratch = [object() for _ in range(10)]

        def tearDown(self):
            EVENTS.append("tearDown")
            self.scratch.clear()

        def test_keeps_one_order(self):
            KEPT.append({"order": len(KEPT)})

        def test_clean(self):
            self.scratch.append(object())  # released by tearDown each round
            self.assertEqual(len(self.scratch), 11)

    class Later(unittest.TestCase):
        def test_events(self):
            # Orders ran setUp, the test and tearDown in each of its rounds.
            self.assertEqual(EVENTS.count("setUp"), EVENTS.count("tearDown"))
            self.assertGreater(EVENTS.count("setUp"), 2 * 2)
    """,
        "--leakhunt",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "Orders::test_keeps_one_order" in out.split("tests that leak memory")[1]
    assert re.search(r"test_subject\.py:16: \d+ B per round", out)
    assert 'KEPT.append({"order": len(KEPT)})' in out


BOUNDED_CACHE_CHURNED = """
    import functools
    import unittest

    @functools.lru_cache(maxsize=128)
    def halves(n):
        return n >> 1, n & 1

    def pair(a, b):
        return a

    KEPT = []

    class Primes(unittest.TestCase):
        def test_subtests_churning_a_bounded_cache(self):
            for n in range(20000):
                with self.subTest(n=n):
                    self.assertTrue(halves(n + 1000))

        def test_subtests_and_one_object_kept_per_call(self):
            for n in range(200):
                with self.subTest(n=n):
                    self.assertTrue(halves(n))
            KEPT.append(object())

    # Last: after the subtests, its check meets a site first seen in a late
    # round, whose frames the tracer then keeps (15 blocks in the process's
    # count on 3.11): the count must still tell the cache from a leak.
    def test_function_churning_a_bounded_cache():
        for n in range(20000):
            pair(*(n, n))
            halves(n + 1000)
"""


def test_a_bounded_cache_churned_under_subtests_is_no_leak(run):
    # more-itertools' test_primes: 9,592 subtests, each through a bounded
    # lru_cache of 2-tuples (_shift_to_odd).  The cache's size is fixed and
    # the process holds no more blocks from round to round; but the tuples
    # reuse freed blocks through the tuple free list, and each round one
    # block made before tracing leaves the cache for one traced afresh (at
    # subTest's argument tuple, the first 2-tuple made once the check has
    # emptied the free lists).  That site grew by one block every round.
    result = run(BOUNDED_CACHE_CHURNED, "--leakhunt", "-p", "no:randomly")
    out = result.stdout.str()
    if sys.getallocatedblocks() == 0 and sys.version_info >= (3, 13):
        # Without pymalloc (PYTHONMALLOC=malloc, as under ASan) there is no
        # count of blocks to tell the cache from a leak: reported, as in
        # test_clean_tests_never_fail_50_times_over.  The leak still is.
        result.assert_outcomes(failed=3)
    else:
        # 3.10 to 3.12 keep the free lists empty while the check measures
        # (even right after its collections): the tuples are allocated
        # afresh, so no churn is reported there without pymalloc either.
        result.assert_outcomes(passed=2, failed=1)
    leakers = out.split("tests that leak memory")[1]
    if sys.getallocatedblocks() != 0 or sys.version_info < (3, 13):
        assert "churning" not in leakers, out[-3000:]
    assert "test_subtests_and_one_object_kept_per_call" in leakers, out[-3000:]
    assert re.search(r"test_subject\.py:23: \d+ B per round", out), out[-3000:]


def test_tests_that_cannot_be_checked_are_listed_with_reason_and_count(run):
    result = run(
        """
    import asyncio

    async def test_async_one():
        await asyncio.sleep(0)

    async def test_async_two():
        await asyncio.sleep(0)

    RAN = []

    def test_passes_only_once():
        assert not RAN
        RAN.append(1)

    def test_checked():
        pass
    """,
        "--leakhunt",
        "-p",
        "no:randomly",
        conftest="""
    import asyncio
    import inspect

    import pytest

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem):  # the async plugin
        if inspect.iscoroutinefunction(pyfuncitem.obj):
            asyncio.run(pyfuncitem.obj())
            return True
    """,
    )
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    summary = out.split("pyleakhunt: tests not checked for leaks")[1]
    assert "2 not checked: async test" in summary
    assert "test_subject.py::test_async_one" in summary
    assert re.search(r"1 not checked: failed when run again: AssertionError", summary)
    assert "test_checked" not in summary


FIXTURES_USED_CLEANLY = """
    import logging
    import os
    import sys
    import warnings

    import pytest

    class Config:
        def mode(self):
            return "real"

    CONFIG = Config()

    @pytest.mark.parametrize("i", range(5))
    def test_monkeypatch_with_lambdas(monkeypatch, i):
        monkeypatch.setattr(CONFIG, "mode", lambda: "fake")
        monkeypatch.setattr(os, "getcwd", lambda: "/nowhere")
        monkeypatch.setenv("PYLEAKHUNT_TEST_VAR", str(i))
        monkeypatch.setitem(sys.modules, "fake_module_%d" % i, object())
        assert CONFIG.mode() == "fake"

    def test_caplog(caplog):
        caplog.set_level(logging.INFO)
        logging.getLogger("app").info("hello %s", "there")
        assert caplog.messages == ["hello there"]
        assert [r.levelname for r in caplog.records] == ["INFO"]

    def test_capsys(capsys):
        print("hello")
        print("oops", file=sys.stderr)
        captured = capsys.readouterr()
        assert captured.out == "hello\\n"
        assert captured.err == "oops\\n"

    def test_capfd(capfd):
        os.write(1, b"raw\\n")
        assert capfd.readouterr().out == "raw\\n"

    def test_tmp_path(tmp_path):
        (tmp_path / "data.txt").write_text("x" * 100)
        assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]

    def test_recwarn(recwarn):
        warnings.warn("careful", UserWarning)
        assert len(recwarn) == 1
"""


def test_function_fixtures_give_no_false_alarm_and_capsys_still_works(run):
    result = run(FIXTURES_USED_CLEANLY, "--leakhunt")
    out = result.stdout.str()
    failed = set(re.findall(r"FAILED test_subject\.py::(\w+)", out))
    # KNOWN FALSE ALARM, 3.12 only: tmp_path is reported, one str of 55 B a
    # round at pathlib.py:404, kept by pytest's own tmp_path machinery (no
    # frame of the test in it).  Every other fixture must pass, everywhere.
    tolerated = {"test_tmp_path"} if sys.version_info[:2] == (3, 12) else set()
    assert failed <= tolerated, out[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] + len(failed) == 10
    assert "not checked" not in result.stdout.str()


def test_the_failure_shows_the_users_line_first_and_the_library_beneath(run):
    result = run(
        """
    import json

    import pytest

    KEPT = []

    @pytest.mark.no_leak
    def test_keeps_parsed_bodies():
        KEPT.append(json.loads('{"order": [1, 2, 3], "id": "%d"}' % len(KEPT)))
    """
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    header = re.search(r"^(\S+):(\d+): \S+ \S+ per round", out, re.MULTILINE)
    assert header.group(1).endswith("test_subject.py"), out
    assert header.group(2) == "9"
    assert re.search(r"via json/decoder\.py:\d+", out)


COMMON_LEAKS = """
    import unittest

    import pytest

    KEPT = []

    def keep_dict():
        KEPT.append({"order": len(KEPT)})

    def keep_empty_list():
        KEPT.append([])

    def keep_list():
        KEPT.append([len(KEPT)])

    def keep_tuple():
        i = len(KEPT)
        KEPT.append((i, i + 1))

    def keep_str():
        KEPT.append("order %d" % len(KEPT))

    def keep_float():
        i = len(KEPT)
        KEPT.append(i + 0.5)

    def keep_int():
        i = len(KEPT)
        KEPT.append(i + (1 << 20))

    def keep_object():
        KEPT.append(object())

    LEAKS = [
        keep_dict,
        keep_empty_list,
        keep_list,
        keep_tuple,
        keep_str,
        keep_float,
        keep_int,
        keep_object,
    ]

    @pytest.mark.parametrize("leak", LEAKS)
    @pytest.mark.no_leak
    def test_marker(leak):
        leak()

    @pytest.mark.parametrize("leak", LEAKS)
    def test_fixture(leak, leakhunt):
        leakhunt.assert_no_leak(leak)

    @pytest.mark.parametrize("leak", LEAKS)
    def test_plain(leak):
        leak()

    class Leaks(unittest.TestCase):
        def test_dict(self):
            keep_dict()

        def test_empty_list(self):
            keep_empty_list()

        def test_list(self):
            keep_list()

        def test_tuple(self):
            keep_tuple()

        def test_str(self):
            keep_str()

        def test_float(self):
            keep_float()

        def test_int(self):
            keep_int()

        def test_object(self):
            keep_object()
"""

#: What a suite may do to the garbage collector that the check must cope
#: with: nothing; freeze its collected tests (packaging 26.4's conftest
#: does, for speed); watch collections with a callback, which runs after
#: the collector empties the free lists, and frees its info dict there.
GC_SETUPS = {
    "untouched": None,
    "frozen": """
        import gc

        def pytest_collection_finish(session):
            gc.collect()
            gc.freeze()
    """,
    "callback": """
        import gc

        SEEN = []

        def watch(phase, info):
            SEEN[:] = [dict(info), [phase]]

        gc.callbacks.append(watch)
    """,
}


@pytest.mark.parametrize("gc_setup", GC_SETUPS)
def test_common_small_leaks_fail_every_way_a_test_is_checked(run, gc_setup):
    # The check's short cuts for clean tests (one full collection empties
    # the free lists; the program's frozen objects are thawed and frozen
    # again with the check's own) must not hide the commonest leaks.
    result = run(
        COMMON_LEAKS, "--leakhunt", "-p", "no:randomly", conftest=GC_SETUPS[gc_setup]
    )
    result.assert_outcomes(failed=4 * 8)
    out = result.stdout.str().split("short test summary info")[0]
    for line_text in re.findall(r"^    (\s*KEPT\.append\(.*\))$", COMMON_LEAKS, re.M):
        line = line_of(COMMON_LEAKS, line_text)
        found = re.findall(r"test_subject\.py:%d: \d+ B per round" % line, out)
        assert len(found) == 4, (line_text, out[-3000:])
