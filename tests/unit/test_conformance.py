"""CPython's own tracemalloc tests, run against pyleakhunt.

The running interpreter's copy of Lib/test/test_tracemalloc.py is loaded
with ``tracemalloc`` pointing at pyleakhunt, and its classes TestTraceback,
TestTracemallocEnabled, TestSnapshot and TestFilters are run.
"""

import importlib.util
import os
import sys
import unittest

import pytest

import pyleakhunt

CLASSES = ("TestTraceback", "TestTracemallocEnabled", "TestSnapshot", "TestFilters")

# Where CPython's own tests must be found (CI sets it): their absence is then
# a failure, not a skip.  Debian and Ubuntu ship them apart from the
# interpreter, in libpython3.X-testsuite.
REQUIRE_ENV = "PYLEAKHUNT_REQUIRE_CPYTHON_TESTS"
MISSING = (
    "this interpreter has no Lib/test/test_tracemalloc.py "
    "(on Debian/Ubuntu: apt-get install libpython%d.%d-testsuite)"
    % sys.version_info[:2]
)

# Tests that cannot pass for reasons outside the extension's reach.
SKIPS = {}


def load_cpython_tests():
    try:
        import test.support  # noqa: F401
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(os.__file__), "test", "test_tracemalloc.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("_cpython_test_tracemalloc", path)
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("tracemalloc")
    sys.modules["tracemalloc"] = pyleakhunt
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["tracemalloc"]
        else:
            sys.modules["tracemalloc"] = saved
    return module


CPYTHON_TESTS = load_cpython_tests()


def collect():
    if CPYTHON_TESTS is None:
        return []
    cases = []
    for class_name in CLASSES:
        cls = getattr(CPYTHON_TESTS, class_name)
        for name in unittest.defaultTestLoader.getTestCaseNames(cls):
            cases.append(pytest.param(cls, name, id=f"{class_name}.{name}"))
    return cases


def test_runner_points_tracemalloc_at_pyleakhunt():
    if CPYTHON_TESTS is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(MISSING + "; %s is set" % REQUIRE_ENV)
        pytest.skip(MISSING)
    assert CPYTHON_TESTS.tracemalloc is pyleakhunt


def test_new_reference_is_among_the_tests_run():
    # The one test of objects reused from free lists (the PyRefTracer path
    # from 3.13, fresh objects before): it must be collected and run.
    if CPYTHON_TESTS is None:
        pytest.skip(MISSING)
    names = [p.id for p in collect()]
    assert "TestTracemallocEnabled.test_new_reference" in names


@pytest.mark.parametrize(("cls", "name"), collect())
def test_cpython_tracemalloc_suite(cls, name):
    if name in SKIPS:
        pytest.skip(SKIPS[name])
    result = unittest.TestResult()
    cls(name).run(result)
    problems = result.failures + result.errors
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped
