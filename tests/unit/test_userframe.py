"""The classification of frames into the user's code and libraries."""

from __future__ import annotations

import collections
import json
import logging
import os
import sysconfig

import pytest

import pyleakhunt
from pyleakhunt import demo, userframe
from pyleakhunt.snapshot import Traceback


@pytest.mark.parametrize(
    "module, relative",
    [
        (json.decoder, "json/decoder.py"),
        (logging, "logging/__init__.py"),
        (collections, "collections/__init__.py"),
    ],
)
def test_standard_library_files_are_not_the_users(module, relative):
    assert not userframe.is_user_file(module.__file__)
    assert userframe.library_path(module.__file__) == relative


def test_frozen_modules_and_unknown_frames_are_not_the_users():
    assert not userframe.is_user_file("<frozen importlib._bootstrap>")
    assert not userframe.is_user_file("<unknown>")
    assert userframe.is_user_file("<string>")


def test_installed_packages_are_not_the_users():
    purelib = sysconfig.get_paths()["purelib"]
    assert not userframe.is_user_file(os.path.join(purelib, "flask", "app.py"))
    assert userframe.library_path(os.path.join(purelib, "flask", "app.py")) == (
        "flask/app.py"
    )
    for path in (
        "/srv/venv/lib/python3.12/site-packages/flask/app.py",
        "/usr/lib/python3/dist-packages/yaml/constructor.py",
    ):
        assert not userframe.is_user_file(path)
        assert userframe.library_path(path).endswith(
            ("flask/app.py", "yaml/constructor.py")
        )


def test_another_installations_standard_library_is_not_the_users():
    # Snapshot files are read by another Python than the one that wrote them.
    path = "/opt/python/3.99/lib/python3.99/json/decoder.py"
    assert not userframe.is_user_file(path)
    assert userframe.library_path(path) == "json/decoder.py"


def test_pyleakhunt_itself_is_not_the_users():
    assert not userframe.is_user_file(pyleakhunt.__file__)
    assert userframe.library_path(pyleakhunt.__file__) == "pyleakhunt/__init__.py"
    # The demo's service plays the user's program.
    assert userframe.is_user_file(demo.__file__)


def test_the_users_files_are_theirs(tmp_path):
    assert userframe.is_user_file(__file__)
    assert userframe.is_user_file(str(tmp_path / "app.py"))
    assert userframe.library_path(__file__) == __file__


def test_user_frame_is_the_most_recent_user_frame_with_the_library_frame_as_via():
    app = "/srv/app/handlers.py"
    tb = Traceback(  # most recent first, as the tracer reports frames
        (
            (json.decoder.__file__, 353),
            (json.__file__, 346),
            (app, 12),
            (app, 40),
        )
    )
    frame, via = userframe.user_frame(tb)
    assert (frame.filename, frame.lineno) == (app, 12)
    assert (via.filename, via.lineno) == (json.decoder.__file__, 353)
    assert userframe.via_text(via) == "via json/decoder.py:353"
    assert userframe.user_frame_json(tb) == {
        "user_frame": [app, 12],
        "via": [json.decoder.__file__, 353],
    }
    assert userframe.user_raw_frame(tb._frames[::-1]) == (app, 12)


def test_user_frame_without_library_frames_has_no_via():
    tb = Traceback((("/srv/app/handlers.py", 12),))
    frame, via = userframe.user_frame(tb)
    assert frame.lineno == 12 and via is None


def test_user_frame_falls_back_to_the_most_recent_frame():
    tb = Traceback(((json.decoder.__file__, 353), (json.__file__, 346)))
    frame, via = userframe.user_frame(tb)
    assert (frame.filename, frame.lineno) == (json.decoder.__file__, 353)
    assert via is None
    assert userframe.user_frame(Traceback(())) == (None, None)
    assert userframe.user_raw_frame(()) == ("<unknown>", 0)


def test_cpythons_init_shim_frame_is_not_the_users():
    # From 3.13 a class's Python __init__ runs under a frame of CPython's own
    # (named "__init__", at line 0), between the library and its caller.
    assert not userframe.is_user_file("__init__")
    lib = "/srv/venv/lib/python3.13/site-packages/fakelib/thing.py"
    tb = Traceback(((lib, 3), ("__init__", 0), ("/srv/app/main.py", 7)))
    frame, via = userframe.user_frame(tb)
    assert (frame.filename, frame.lineno, via.lineno) == ("/srv/app/main.py", 7, 3)
    assert userframe.user_raw_frame(tb._frames[::-1]) == ("/srv/app/main.py", 7)


def test_code_made_from_a_string_gives_way_to_the_file_that_called_it():
    # namedtuple's __new__ and dataclasses' __init__ are compiled from
    # strings: the user's line is the file's line that made the object.
    tb = Traceback((("<string>", 1), ("/srv/app/main.py", 6)))
    frame, via = userframe.user_frame(tb)
    assert (frame.filename, frame.lineno) == ("/srv/app/main.py", 6)
    assert (via.filename, via.lineno) == ("<string>", 1)
    assert userframe.user_raw_frame(tb._frames[::-1]) == ("/srv/app/main.py", 6)


def test_code_run_from_a_string_is_the_users_when_no_file_called_it():
    # python -c "...": no file of the user's beneath it.
    tb = Traceback((("<string>", 1), ("<frozen runpy>", 88)))
    frame, via = userframe.user_frame(tb)
    assert (frame.filename, frame.lineno, via) == ("<string>", 1, None)
    assert userframe.user_raw_frame(tb._frames[::-1]) == ("<string>", 1)
