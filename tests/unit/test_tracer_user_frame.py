"""The tracer records the user's frame below library frames, when asked.

The web integrations record one frame.  When that frame is a library's
(``kept.append(json.loads(body))`` allocates in ``json/decoder.py``), the
tracer adds the first frame of the user's code below it, so that reports
can name the line a person must change.  It does so for tagged
allocations (made while a request is served), once the library's site
holds many blocks (64: what a leak soon does), so that the framework's own
short-lived allocations cost no stack search.  The tracer classifies files
in C as `pyleakhunt.userframe` does in Python.
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import sysconfig

import pytest

import pyleakhunt
from pyleakhunt import _core, demo, userframe

KEPT = []
TAG = contextvars.ContextVar("pyleakhunt_test_request", default=0)


@pytest.fixture
def tagged():
    """Allocations carry a tag, as a web request's do."""
    _core.set_tag_var(TAG)
    token = TAG.set(3)
    try:
        yield
    finally:
        TAG.reset(token)
        _core.set_tag_var(None)


@pytest.fixture
def user_frames(tagged):
    """Trace with one frame and the user-frame rule on."""
    was_tracing = pyleakhunt.is_tracing()
    if was_tracing:
        pytest.skip("needs the tracer off")
    _core.set_user_frames(*userframe.tracer_rule())
    pyleakhunt.start(1, total_nframe=False)
    try:
        yield
    finally:
        pyleakhunt.stop()
        _core.set_user_frames(None)
        KEPT.clear()


def traceback_of(obj):
    """The object's traceback, most recent call first, as (file, line)."""
    tb = pyleakhunt.get_object_traceback(obj)
    assert tb is not None
    return [(frame.filename, frame.lineno) for frame in reversed(tb)]


# Objects of types without a free list (bytearray, a long str), so that
# each is a fresh allocation on every Python.
BODY = json.dumps("x" * 200)


def keep_parsed(body):
    KEPT.append(json.loads(body))
    return KEPT[-1]


#: More than the blocks a library's site must hold before its allocations
#: look for the user's frame.
MANY = 100


def test_an_allocation_in_the_standard_library_also_records_the_users_line(
    user_frames,
):
    for _ in range(MANY):
        obj = keep_parsed(BODY)
    frames = traceback_of(obj)
    assert len(frames) == 2, frames
    assert userframe.library_path(frames[0][0]) == "json/decoder.py"
    line = keep_parsed.__code__.co_firstlineno + 1
    assert frames[1] == (__file__, line)
    user, via = userframe.user_frame(pyleakhunt.get_object_traceback(obj))
    assert (user.filename, user.lineno) == (__file__, line)
    assert via is not None and via.filename == frames[0][0]


def test_an_allocation_in_the_users_code_records_one_frame(user_frames):
    obj = bytearray(100)
    assert traceback_of(obj) == [(__file__, caller_line() - 1)]


def caller_line():
    return sys._getframe(1).f_lineno


def test_a_library_site_of_few_blocks_records_one_frame(user_frames):
    obj = keep_parsed(BODY)
    frames = traceback_of(obj)
    assert len(frames) == 1
    assert userframe.library_path(frames[0][0]) == "json/decoder.py"


def test_untagged_allocations_record_one_frame(user_frames):
    token = TAG.set(0)
    try:
        for _ in range(MANY):
            obj = keep_parsed(BODY)
    finally:
        TAG.reset(token)
    assert len(traceback_of(obj)) == 1


def test_without_the_rule_one_frame_is_the_librarys(tagged):
    if pyleakhunt.is_tracing():
        pytest.skip("needs the tracer off")
    pyleakhunt.start(1, total_nframe=False)
    try:
        for _ in range(MANY):
            obj = keep_parsed(BODY)
        frames = traceback_of(obj)
    finally:
        pyleakhunt.stop()
        KEPT.clear()
    assert len(frames) == 1
    assert userframe.library_path(frames[0][0]) == "json/decoder.py"


# A code object of each kind of file: does the tracer call it a library's
# exactly when userframe.is_user_file says so?
_STDLIB = sysconfig.get_paths()["stdlib"]
_PURELIB = sysconfig.get_paths()["purelib"]
FILES = [
    os.path.join(_STDLIB, "json", "fake.py"),
    os.path.join(_PURELIB, "flask", "fake.py"),
    "/srv/venv/lib/python3.99/site-packages/pkg/mod.py",
    "/opt/other/lib/python3.12/json/decoder.py",
    "/opt/other/lib64/python3.13t/json/decoder.py",
    "/opt/app/dist-packages/pkg/mod.py",
    "/home/me/site-packages-notes/app.py",
    "/home/me/lib/python/app.py",
    "/home/me/app.py",
    "/home/j\u00f3zef/\u30a2\u30d7\u30ea/app.py",
    "/srv/venv/lib/python3.99/site-packages/pkg/m\u00f6dule\U0001f600.py",
    "<frozen importlib._bootstrap>",
    "<string>",
    "__init__",
    os.path.join(os.path.dirname(pyleakhunt.__file__), "cli.py"),
    demo.__file__,
]


@pytest.mark.parametrize("filename", FILES)
def test_the_tracer_classifies_files_as_userframe_does(user_frames, filename):
    namespace = {}
    source = "def make():\n    return bytearray(100)\n"
    exec(compile(source, filename, "exec"), namespace)
    KEPT.extend(namespace["make"]() for _ in range(MANY))
    obj = namespace["make"]()
    frames = traceback_of(obj)
    assert frames[0] == (filename, 2)
    recorded_below = len(frames) == 2
    # Code made from a string gives way to a file of the user's below it.
    made_from_a_string = filename.startswith("<")
    assert recorded_below == (
        not userframe.is_user_file(filename) or made_from_a_string
    ), frames
    if recorded_below:
        assert frames[1][0] == __file__
