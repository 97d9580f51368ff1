"""Shared fixtures: every test starts and ends with the tracer stopped."""

import pytest

import pyleakhunt


@pytest.fixture(autouse=True)
def tracer_stopped():
    if pyleakhunt.is_tracing():
        pyleakhunt.stop()
    yield
    if pyleakhunt.is_tracing():
        pyleakhunt.stop()


@pytest.fixture
def tracing():
    """Trace with one frame for the duration of the test."""
    pyleakhunt.start(1)
    yield pyleakhunt
    pyleakhunt.stop()
