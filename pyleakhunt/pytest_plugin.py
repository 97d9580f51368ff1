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

import inspect
import logging
from typing import Any, Callable, Dict, List, Optional

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


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    settings = _check_settings(pyfuncitem)
    if settings is None:
        return None
    test = pyfuncitem.obj
    if inspect.iscoroutinefunction(test) or inspect.isasyncgenfunction(test):
        return None  # left to the async plugin; not leak-checked
    from .leakcheck import check

    arguments = {
        name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames
    }
    report = check(
        test,
        (),
        arguments,
        between_rounds=_framework_cleanup(pyfuncitem.config),
        **settings,
    )
    if report.leaked:
        pyfuncitem.config.stash.setdefault(_LEAKERS, []).append(pyfuncitem.nodeid)
        pytest.fail(report.format(), pytrace=False)
    return True


_LEAKERS = pytest.StashKey[List[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    leakers = config.stash.get(_LEAKERS, [])
    if leakers:
        terminalreporter.section("pyleakhunt: tests that leak memory")
        for nodeid in leakers:
            terminalreporter.line(nodeid)


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
        if capture is not None and capture.is_globally_capturing():
            capture.suspend_global_capture()
            out, err = capture.read_global_capture()
            capture.resume_global_capture()
            _replay(out, err)
        for handler in logging.getLogger().handlers:
            if type(handler).__name__ == "LogCaptureHandler" and hasattr(
                handler, "reset"
            ):
                handler.reset()

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
