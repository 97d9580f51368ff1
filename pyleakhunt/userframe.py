"""Which frame of a traceback is the user's own: the line to show first.

A memory leak is nearly always caused by a line of the program being
debugged, even when the allocation itself happens deep inside the standard
library or an installed package (``kept.append(json.loads(body))``
allocates in ``json/decoder.py``).  Every human-readable location therefore
shows the most recent frame in the user's code first, and the library frame
where the memory was actually allocated beneath it, as
``via json/decoder.py:353``.

A file is the user's unless it is:

- in the standard library: under sysconfig's ``stdlib`` or ``platstdlib``
  path, or a ``<frozen ...>`` module;
- in an installed package: under sysconfig's ``purelib`` or ``platlib``
  path, a ``site`` directory, or any ``site-packages`` or
  ``dist-packages`` directory;
- under ``lib/pythonX.Y/`` of any installation (snapshot files are often
  read on another machine or by another Python than the one that wrote
  them, so the local paths alone are not enough);
- in pyleakhunt itself (but for ``pyleakhunt/demo.py``, whose service
  stands for a user's program);
- CPython's own frame named ``__init__`` (3.13+), under which a class's
  Python ``__init__`` runs.

Code compiled from a string (``<string>``: namedtuple's ``__new__``,
dataclasses' ``__init__``, ``python -c``) is the user's, but gives way to a
file of the user's beneath it, whose line made the object.

Public API (pure Python, no tracer needed; anything with ``filename`` and
``lineno`` attributes is a frame, and tracebacks are sequences of frames
from the oldest call to the most recent, as `pyleakhunt.Traceback` and
`tracemalloc.Traceback` are):

- `is_user_file(filename)`: the classification;
- `user_frame(traceback)`: ``(frame, via)``, the frame to show first and
  the library frame that allocated (None when that is the same frame);
- `user_raw_frame(frames)`: the same on the tracer's raw frames;
- `library_path(filename)`: ``json/decoder.py`` for a library file;
- `via_text(frame)`: ``"via json/decoder.py:353"``;
- `user_frame_json(traceback)`: ``{"user_frame": [file, line], "via":
  [file, line] | None}``, the fields the JSON outputs add;
- `tracer_rule()`: the same rule for the tracer, which can record the
  user's frame below the frames it was asked for (``set_user_frames``:
  the web integrations record one frame, often a library's).
"""

from __future__ import annotations

import functools
import os
import re
import site
import sysconfig
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

__all__ = [
    "is_user_file",
    "library_path",
    "user_frame",
    "user_frame_json",
    "user_raw_frame",
    "via_text",
]

#: Directory names that hold installed packages, whatever the installation.
_PACKAGE_DIRS = ("site-packages", "dist-packages")
#: ``.../lib/python3.11/`` (or ``lib/python3.13t/``) of any Unix
#: installation, and ``...\\Lib\\`` of a Windows one.
_LIB_PYTHON = re.compile(r"[/\\]lib(?:64)?[/\\]python\d+\.\d+t?[/\\]", re.IGNORECASE)
#: This package's directory: pyleakhunt's frames are never the user's...
_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
#: ... but for the demo's web service, which plays the user's program.
_DEMO_FILE = os.path.join(_OWN_DIR, "demo.py")

_Frame = TypeVar("_Frame")
#: A frame as the tracer reports it: ``(filename, lineno)``.
RawFrame = Tuple[str, int]


def _variants(path: str) -> List[str]:
    """*path* as written and with its symbolic links resolved."""
    found = {os.path.normpath(path)}
    try:
        found.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(found)


@functools.lru_cache(maxsize=1)
def _library_roots() -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(standard library roots, installed-package roots), longest first."""
    paths = sysconfig.get_paths()
    stdlib = [paths.get(k) for k in ("stdlib", "platstdlib")]
    packages = [paths.get(k) for k in ("purelib", "platlib")]
    try:
        packages += site.getsitepackages()
    except AttributeError:  # an old virtualenv's site module
        pass

    def roots(candidates: Sequence[Optional[str]]) -> Tuple[str, ...]:
        found = {v for p in candidates if p for v in _variants(p)}
        return tuple(sorted(found, key=len, reverse=True))

    return roots(stdlib), roots(packages)


def prepare() -> None:
    """Compute in the calling thread what classifying a file needs: the
    library roots, from `sysconfig`, which imports a module on first use.

    A sampling thread would do it at its first sample of the program's
    files.  An import reads files, and a thread that gives up the GIL for
    each read waits for it again while the program computes: under an
    asyncio loop on 3.11 the watcher's second sample took 1.5 s to 2.5 s
    instead of 2 ms, and a three-second `pyleakhunt run` had too few
    samples to judge.
    """
    _library_roots()


def _under(filename: str, root: str) -> bool:
    return filename.startswith(root) and filename[len(root) : len(root) + 1] in (
        os.sep,
        "/",
    )


@functools.lru_cache(maxsize=4096)
def _classify(filename: str) -> Optional[str]:
    """The library-relative path of a library file, or None for the user's."""
    if filename == _INIT_SHIM:
        return filename
    if filename.startswith("<"):
        # <frozen importlib._bootstrap>: the standard library.  Code run
        # from a string (<string>, <stdin>) is the user's; <unknown> (no
        # Python frame) is nobody's, so never the line to show first.
        if filename.startswith("<frozen ") or filename == "<unknown>":
            return filename
        return None
    path = os.path.normpath(filename)
    if _under(path, _OWN_DIR) and path != _DEMO_FILE:
        return "pyleakhunt" + path[len(_OWN_DIR) :].replace(os.sep, "/")
    parts = re.split(r"[/\\]", path)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in _PACKAGE_DIRS:
            return "/".join(parts[index + 1 :])
    stdlib, packages = _library_roots()
    for root in packages + stdlib:
        if _under(path, root):
            return path[len(root) + 1 :].replace(os.sep, "/")
    match = _LIB_PYTHON.search(path)
    if match:
        return path[match.end() :].replace("\\", "/")
    return None


#: The file name of the frame CPython 3.13+ runs a class's Python
#: ``__init__`` under (its ``_Py_InitCleanup`` shim, at line 0): between
#: the library's ``__init__`` and its caller, and the interpreter's own.
#: No real file is named so: a file's name is a path ending in ``.py``.
_INIT_SHIM = "__init__"


def _made_from_a_string(filename: str) -> bool:
    """Whether a user's frame runs code compiled from a string (``<string>``:
    namedtuple's ``__new__``, dataclasses' ``__init__``, ``python -c``)."""
    return filename.startswith("<")


def _user_index(filenames: Iterable[str]) -> Optional[int]:
    """The index of the user's frame among *filenames*, the most recent
    first: the first of the user's files; or, when only code made from a
    string is the user's, the first of those (None if neither is there).

    Code made from a string gives way to a file of the user's beneath it:
    the file's line is the one that made the namedtuple or the dataclass
    instance, and the generated ``<string>:1`` names no line at all."""
    generated = None
    for index, filename in enumerate(filenames):
        if _classify(filename) is None:
            if not _made_from_a_string(filename):
                return index
            if generated is None:
                generated = index
    return generated


def is_user_file(filename: str) -> bool:
    """True unless *filename* is in the standard library, an installed
    package or pyleakhunt (see the module documentation)."""
    return _classify(filename) is None


def library_path(filename: str) -> str:
    """*filename* relative to its library root (``json/decoder.py``,
    ``flask/app.py``, ``pyleakhunt/cli.py``); a user's file unchanged."""
    relative = _classify(filename)
    return filename if relative is None else relative


def user_frame(
    traceback: Sequence[_Frame],
) -> Tuple[Optional[_Frame], Optional[_Frame]]:
    """``(frame, via)`` for a traceback ordered oldest call first.

    *frame* is the most recent frame in the user's code, or the most recent
    frame when no frame is the user's (an allocation made while importing a
    library, or a traceback cut short before reaching the user's code).
    *via* is the most recent frame, where the memory was allocated, when it
    is not *frame*; otherwise None.  An empty traceback gives (None, None).
    """
    if not len(traceback):
        return None, None
    last = traceback[-1]
    recent_first = [traceback[i] for i in range(len(traceback) - 1, -1, -1)]
    index = _user_index([f.filename for f in recent_first])  # type: ignore[attr-defined]
    if index is None:
        return last, None
    return recent_first[index], (None if index == 0 else last)


def user_raw_frame(frames: Sequence[RawFrame]) -> RawFrame:
    """The user's frame of raw frames, ordered **most recent first** as the
    tracer reports them; the most recent frame when none is the user's."""
    index = _user_index(frame[0] for frame in frames)
    if index is not None:
        return frames[index]
    return frames[0] if frames else ("<unknown>", 0)


def via_text(frame: Any) -> str:
    """``"via json/decoder.py:353"`` for a library frame."""
    return "via %s:%d" % (library_path(frame.filename), frame.lineno)


def user_frame_json(traceback: Sequence[Any]) -> Dict[str, Any]:
    """The fields JSON outputs add beside ``filename``/``lineno``:
    ``"user_frame": [filename, lineno]`` (null for an empty traceback) and
    ``"via": [filename, lineno]`` or null."""
    frame, via = user_frame(traceback)
    return {
        "user_frame": None if frame is None else [frame.filename, frame.lineno],
        "via": None if via is None else [via.filename, via.lineno],
    }


def tracer_rule() -> Tuple[Tuple[str, ...], str, str]:
    """The rule as the tracer applies it while allocating
    (``_core.set_user_frames``): the library roots, pyleakhunt's own
    directory and the demo's file."""
    stdlib, packages = _library_roots()
    return packages + stdlib, _OWN_DIR, _DEMO_FILE


def _reset_cache() -> None:
    """Forget cached classifications (for tests that change sys paths)."""
    _classify.cache_clear()
    _library_roots.cache_clear()
