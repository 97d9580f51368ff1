"""pytest plugin: fail tests that leak memory, and say where.

Registered through the ``pytest11`` entry point.  It costs nothing until
used: nothing is imported or traced unless a test uses the ``leakhunt``
fixture, the ``no_leak`` marker, or the run has ``--leakhunt``.

- ``leakhunt.assert_no_leak(func, *args, rounds=5, warmup=2, limit="0 B",
  nframe=10, ignore=None, **kwargs)``
- ``@pytest.mark.no_leak(rounds=5, warmup=2, limit="0 B")``: reruns the
  test's call phase ``warmup + rounds`` times, with fixtures set up once.
- ``@pytest.mark.leak_ok``: exempt from ``--leakhunt``.
- ``--leakhunt``: ``no_leak`` on every test not marked ``leak_ok``;
  ``--leakhunt-rounds`` and ``--leakhunt-warmup`` change the defaults.

The rule is in `pyleakhunt.leakcheck`; see docs/pytest.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

import pytest

DEFAULT_ROUNDS = 5
DEFAULT_WARMUP = 2

# The one place markers and options are declared.
MARKERS = {
    "no_leak": "no_leak(rounds=5, warmup=2, limit='0 B', nframe=10, ignore=None): "
    "fail the test if calling it repeatedly leaks memory (pyleakhunt)",
    "leak_ok": "leak_ok: exempt this test from --leakhunt (pyleakhunt)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("leakhunt", "memory leak checks (pyleakhunt)")
    group.addoption(
        "--leakhunt",
        action="store_true",
        default=False,
        help="check every test not marked leak_ok for memory leaks",
    )
    group.addoption(
        "--leakhunt-rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        metavar="N",
        help="measured rounds per leak check (default: %(default)s)",
    )
    group.addoption(
        "--leakhunt-warmup",
        type=int,
        default=DEFAULT_WARMUP,
        metavar="N",
        help="warm-up calls before measuring (default: %(default)s)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Summary(), "pyleakhunt-summary")
    for description in MARKERS.values():
        config.addinivalue_line("markers", description)
    if config.getoption("leakhunt_rounds") < 2:
        raise pytest.UsageError("--leakhunt-rounds must be at least 2")
    if config.getoption("leakhunt_warmup") < 0:
        raise pytest.UsageError("--leakhunt-warmup must be >= 0")


# --------------------------------------------------------------------------
# The fixture


class LeakHunt:
    """The ``leakhunt`` fixture."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def assert_no_leak(
        self,
        func: Callable[..., Any],
        *args: Any,
        rounds: Optional[int] = None,
        warmup: Optional[int] = None,
        limit: Any = "0 B",
        nframe: int = 10,
        ignore: Any = None,
        **kwargs: Any,
    ):
        """Call *func* ``warmup + rounds`` times; AssertionError if it leaks."""
        from .leakcheck import check

        report = check(
            func,
            args,
            kwargs,
            rounds=rounds if rounds is not None else _rounds(self._config),
            warmup=warmup if warmup is not None else _warmup(self._config),
            limit=limit,
            nframe=nframe,
            ignore=ignore,
            between_rounds=_framework_cleanup(self._config),
        )
        if report.leaked:
            raise AssertionError(report.format())
        return report


@pytest.fixture
def leakhunt(request: pytest.FixtureRequest) -> LeakHunt:
    """Assert that calling a function does not leak memory."""
    return LeakHunt(request.config)


# --------------------------------------------------------------------------
# The marker and --leakhunt


def _rounds(config: pytest.Config) -> int:
    return config.getoption("leakhunt_rounds")


def _warmup(config: pytest.Config) -> int:
    return config.getoption("leakhunt_warmup")


def _check_settings(item: pytest.Item) -> Optional[Dict[str, Any]]:
    """Leak-check settings for *item*, or None if it is not checked."""
    marker = item.get_closest_marker("no_leak")
    if marker is None:
        if not item.config.getoption("leakhunt"):
            return None
        if item.get_closest_marker("leak_ok") is not None:
            return None
    settings: Dict[str, Any] = {
        "rounds": _rounds(item.config),
        "warmup": _warmup(item.config),
        "limit": "0 B",
        "nframe": 10,
        "ignore": None,
    }
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                "%s: no_leak takes keyword arguments only" % item.nodeid
            )
        unknown = set(marker.kwargs) - set(settings)
        if unknown:
            raise pytest.UsageError(
                "%s: no_leak got unknown argument(s): %s"
                % (item.nodeid, ", ".join(sorted(unknown)))
            )
        settings.update(marker.kwargs)
    return settings


def _cannot_check(item: pytest.Item) -> Optional[str]:
    """Why *item* cannot be leak-checked, or None if it can."""
    if not isinstance(item, pytest.Function):
        return "not a Python test function (%s)" % type(item).__name__
    function = getattr(item, "function", None)
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        return "async test"
    return None


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """Run the test once as pytest does; then, if it passed, the check."""
    settings = _check_settings(item)
    if settings is None:
        yield
        return
    reason = _cannot_check(item)
    if reason is not None:
        _note(item, _NOT_CHECKED, reason)
        yield
        return
    outcome = yield
    if outcome.excinfo is not None or _unittest_outcome(item):
        return  # failed, skipped or xfailed: its outcome stands
    failure = _check_item(item, settings)
    if failure is not None:
        if hasattr(outcome, "force_exception"):
            outcome.force_exception(failure)
        else:  # pluggy < 1.1
            raise failure


def _check_item(item: pytest.Function, settings: Dict[str, Any]) -> Optional[Any]:
    """Leak-check *item*, which just passed: the failure to report, if any.

    Each round sets the test's function-scoped fixtures up, runs the test
    and tears the fixtures down, as pytest's run protocol does; fixtures of
    wider scope stay set up.  The first round was pytest's own.
    """
    from .leakcheck import check
    from .snapshot import untraced

    rounds = _Rounds(item)
    try:
        rounds.teardown()
    except BaseException as exc:  # noqa: B036 (re-raised at teardown)
        item.stash[_TEARDOWN_ERROR] = exc
        return None
    # Not traced: what it keeps for the next round is pytest's business.
    cleanup = untraced(_framework_cleanup(item.config))

    def setup() -> None:
        # What pytest gathered from the last round goes first: captured
        # output, log records (which caplog reads), recorded warnings.
        cleanup()
        rounds.setup()

    try:
        report = check(
            rounds.call,
            before_call=setup,
            after_call=rounds.teardown,
            **dict(settings, warmup=max(settings["warmup"] - 1, 0)),
        )
    except _RepeatFailed as exc:
        _note(item, _NOT_CHECKED, "failed when run again: %s" % exc)
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: B036 (a repeat of a passing test)
        _note(item, _NOT_CHECKED, "failed when run again: %s" % _summary(exc))
        return None
    finally:
        rounds.done()
    if report.leaked:
        _note(item, _LEAKED, "%s per round" % _size(report.bytes_per_round))
        return pytest.fail.Exception(report.format(), pytrace=False)
    return None


class _RepeatFailed(Exception):
    """A round of a TestCase test failed (unittest reports, not raises)."""


class _Parents:
    """Stands for the next item, so that pytest tears down only the item."""

    def __init__(self, item: pytest.Item) -> None:
        self._chain = item.listchain()[:-1]

    def listchain(self) -> List[Any]:
        return self._chain


class _Rounds:
    """Set up, run and tear down one test again, as pytest does."""

    def __init__(self, item: pytest.Function) -> None:
        self.item = item
        self.state = item.session._setupstate
        self.parents = _Parents(item)
        self.unittest = _is_unittest(item)
        self.direct = not self.unittest and _plain_pyfunc_call(item)
        self.failures: List[Any] = []
        self.names = tuple(item._fixtureinfo.argnames) if self.direct else ()
        self.positional = self.direct and _positional(item.obj, self.names)
        self.args: Tuple[Any, ...] = ()
        self.kwargs: Dict[str, Any] = {}
        # What pytest put in the item's stash for the whole test, which a
        # fixture's teardown may take out (tmp_path's result record).
        self.stash = dict(getattr(item.stash, "_storage", {}))

    def teardown(self) -> None:
        self._restore_stash()
        self.state.teardown_exact(self.parents)

    def setup(self) -> None:
        self._restore_stash()
        self.item._initrequest()
        self.state.setup(self.item)
        if self.unittest:
            self._wrap_test_method()
        # The arguments are ready before the free lists are emptied.
        values = tuple(self.item.funcargs[name] for name in self.names)
        if self.positional:
            self.args = values
        else:
            self.kwargs = dict(zip(self.names, values))

    def _restore_stash(self) -> None:
        for key, value in self.stash.items():
            if key not in self.item.stash:
                self.item.stash[key] = value

    def call(self) -> None:
        item = self.item
        if self.direct:
            # pytest's own pytest_pyfunc_call, without the layers between
            # the free lists being emptied and the test: positional
            # arguments when they line up, as a call with ``**`` frees a
            # dict's parts on its way in (3.11).
            if self.positional:
                item.obj(*self.args)
            else:
                item.obj(**self.kwargs)
            return
        if self.unittest:
            item.addSubTest = self._add_subtest  # type: ignore[method-assign]
            try:
                item.runtest()
            finally:
                del item.addSubTest
            failures = item.__dict__.pop("_excinfo", None) or self.failures
            if failures:
                self.failures = []
                raise _RepeatFailed(_summary(failures[0].value))
            return
        item.runtest()

    def _add_subtest(self, test_case: Any, test: Any, exc_info: Any) -> None:
        if exc_info is not None:
            exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info.value
            self.failures.append(pytest.ExceptionInfo.from_exception(exc))

    def _wrap_test_method(self) -> None:
        # unittest runs setUp and more of its own before the test method:
        # what that frees must not be reused by the test (see _freelist).
        from . import _freelist

        method = self.item.obj

        @functools.wraps(method)
        def test_method(*args: Any, **kwargs: Any) -> Any:
            _freelist.again()
            return method(*args, **kwargs)

        self.item._obj = test_method

    def done(self) -> None:
        """Leave the item as pytest's teardown phase expects it."""
        self.item._initrequest()


def _positional(function: Any, names: Tuple[str, ...]) -> bool:
    """True if *function* takes arguments *names* first, in that order,
    each by position or keyword."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(parameters) >= len(names) and all(
        p.name == name and p.kind is p.POSITIONAL_OR_KEYWORD
        for p, name in zip(parameters, names)
    )


def _is_unittest(item: pytest.Item) -> bool:
    unittest_plugin = sys.modules.get("_pytest.unittest")
    cls = getattr(unittest_plugin, "TestCaseFunction", None)
    return cls is not None and isinstance(item, cls)


def _plain_pyfunc_call(item: pytest.Item) -> bool:
    """True if only pytest itself implements pytest_pyfunc_call here."""
    impls = item.ihook.pytest_pyfunc_call.get_hookimpls()
    return all(impl.plugin_name in ("python", __name__) for impl in impls)


def _unittest_outcome(item: pytest.Item) -> bool:
    """True if a TestCase test recorded a failure, skip or xfail."""
    return bool(item.__dict__.get("_excinfo"))


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (": " + text[0] if text else "")


def _size(value: float) -> str:
    from .units import format_size

    return format_size(value)


_TEARDOWN_ERROR = pytest.StashKey[BaseException]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A fixture teardown that failed in the first round is the test's
    teardown error, as it would have been without the check."""
    error = item.stash.get(_TEARDOWN_ERROR, None)
    if error is not None:
        del item.stash[_TEARDOWN_ERROR]
        raise error


# --------------------------------------------------------------------------
# The summary at the end of the run

_LEAKED = "leakhunt-leaked"
_NOT_CHECKED = "leakhunt-not-checked"


def _note(item: pytest.Item, key: str, text: str) -> None:
    # In the report's user_properties, so that pytest-xdist carries it to
    # the process that prints the summary.
    item.user_properties.append((key, text))


class _Summary:
    """Gathers the notes from the reports (of every xdist worker too)."""

    def __init__(self) -> None:
        self.notes: Dict[str, List[Tuple[str, str]]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, text in report.user_properties:
            if key in (_LEAKED, _NOT_CHECKED):
                self.notes.setdefault(key, []).append((report.nodeid, text))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.line
        leakers = self.notes.get(_LEAKED, [])
        if leakers:
            terminalreporter.section("pyleakhunt: tests that leak memory")
            for nodeid, text in leakers:
                write("%s (%s)" % (nodeid, text))
        by_reason: Dict[str, List[str]] = {}
        for nodeid, text in self.notes.get(_NOT_CHECKED, []):
            by_reason.setdefault(text, []).append(nodeid)
        if by_reason:
            terminalreporter.section("pyleakhunt: tests not checked for leaks")
        for reason, nodeids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
            write("%d not checked: %s" % (len(nodeids), reason))
            for nodeid in nodeids[:_LISTED]:
                write("    " + nodeid)
            if len(nodeids) > _LISTED:
                write("    ... and %d more" % (len(nodeids) - _LISTED))


#: Tests listed by name under each reason they were not checked.
_LISTED = 10


# --------------------------------------------------------------------------
# pytest's own buffers


def _framework_cleanup(config: pytest.Config) -> Callable[[], None]:
    """Empty what pytest accumulates while a test runs, between rounds.

    Captured output is drained and written back at the end, so reports
    keep it; log records captured by pytest are kept for the last round
    only (each round's records are replaced by the next's).
    """
    capture = config.pluginmanager.getplugin("capturemanager")
    recorded = _WarningsLog()

    def cleanup() -> None:
        recorded.keep_first_round()
        if (
            capture is not None
            and capture.is_globally_capturing()
            # With capsys or capfd active, output is the test's to read.
            and getattr(capture, "_capture_fixture", None) is None
        ):
            capture.suspend_global_capture()
            out, err = capture.read_global_capture()
            capture.resume_global_capture()
            _replay(out, err)
        for handler in logging.getLogger().handlers:
            if type(handler).__name__ == "LogCaptureHandler":
                # clear() empties the list caplog.get_records() also holds
                clear = getattr(handler, "clear", None) or handler.reset
                clear()

    return cleanup


class _WarningsLog:
    """pytest records the warnings a test emits (``catch_warnings(record=
    True)``, whose list is what ``warnings._showwarnmsg_impl`` appends to);
    a warning emitted on every call would grow that list every round.
    Keep the first round's warnings, so the report still shows them once."""

    def __init__(self) -> None:
        self.kept: Optional[int] = None

    def keep_first_round(self) -> None:
        import warnings

        append = getattr(warnings, "_showwarnmsg_impl", None)
        log = getattr(append, "__self__", None)
        if not isinstance(log, list):
            return
        if self.kept is None:
            self.kept = len(log)
        del log[self.kept :]


def _replay(out: str, err: str) -> None:
    # Write what was captured back through the (now resumed) capture, so it
    # lives in pytest's buffer again rather than in a string of ours; the
    # buffer is a temporary file with the default fd capture.
    import sys

    if out:
        sys.stdout.write(out)
    if err:
        sys.stderr.write(err)
