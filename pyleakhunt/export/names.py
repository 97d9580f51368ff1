"""Names for the frames of a traceback, as profilers show them.

The tracer records a frame as ``(filename, lineno)`` only.  Profile viewers
group by *function*, so each frame is given one:

- the qualified name of the innermost function or class whose body holds
  the line, resolved from the source file (`linecache`, then `ast`), and
  prefixed with the module name guessed from the path:
  ``app.views.Cart.add``.  Code at module level is ``app.views.<module>``; a
  function nested in another is ``outer.<locals>.inner``, as Python's
  ``__qualname__``.  Lambdas and comprehensions take the name of the
  function around them (a line alone cannot tell their frames from the
  enclosing one's), so a 3.11 comprehension shows as two frames of the same
  function.
  Frozen modules (``<frozen importlib._bootstrap>``) are read from this
  interpreter's standard library, which they were compiled from.
- when the source cannot be read (the file is gone, or the frame is
  ``<string>`` or ``<unknown>``), the module (or the file, without angle
  brackets) and the line: ``shop.cart:12``, ``string:3``.  Each such line
  is then its own "function", so unrelated lines are never merged under
  one made-up name.

Each file is parsed at most once per `FrameNamer`.  The source read is the
file as it is *now*: if it changed since the snapshot was taken, names can
be off (the line numbers stay exact).
"""

from __future__ import annotations

import ast
import linecache
import os
import re
import sysconfig
from bisect import bisect_right
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

__all__ = ["FrameName", "FrameNamer", "module_name", "short_filename"]

#: Path components after which the rest of a path is a module path.
_LIBRARY_DIRS = ("site-packages", "dist-packages")
_STDLIB_DIR = re.compile(r"^python\d+\.\d+t?$")
_FROZEN = re.compile(r"^<frozen ([\w.]+)>$")


@dataclass(frozen=True)
class FrameName:
    """What a profile shows for one frame."""

    #: Function name, module-qualified: ``app.views.Cart.add``.
    function: str
    #: Line of the ``def`` (or ``class``) of the function, 0 when unknown.
    start_line: int
    #: The filename shortened for display: the module path inside
    #: site-packages or the standard library, else the filename itself.
    short_filename: str


def _library_parts(filename: str) -> Optional[List[str]]:
    """Path components after site-packages or the stdlib directory."""
    parts = filename.replace("\\", "/").split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in _LIBRARY_DIRS:
            return parts[i + 1 :]
    for i in range(len(parts) - 2, 0, -1):
        if _STDLIB_DIR.match(parts[i]) and parts[i - 1] == "lib":
            return parts[i + 1 :]
    return None


def short_filename(filename: str) -> str:
    """*filename* relative to site-packages or the stdlib, else unchanged."""
    parts = _library_parts(filename)
    return "/".join(parts) if parts else filename


def module_name(filename: str) -> Optional[str]:
    """The dotted module name a source file most likely has, or None.

    Inside site-packages or the standard library it is the path from there;
    elsewhere the file's package directories (those with an
    ``__init__.py``) are walked up while they exist on this machine.
    """
    frozen = _FROZEN.match(filename)
    if frozen:
        return frozen.group(1)
    if filename.startswith("<") or not filename.endswith(".py"):
        return None
    parts = _library_parts(filename)
    if parts is None:
        directory, base = os.path.split(filename)
        parts = [base]
        while directory and os.path.isfile(os.path.join(directory, "__init__.py")):
            directory, package = os.path.split(directory)
            parts.insert(0, package)
    parts[-1] = parts[-1][: -len(".py")]
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    if not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def _source_path(filename: str) -> Optional[str]:
    """Where the source of *filename* can be read, or None.

    A frozen module (``<frozen importlib._bootstrap>``, 3.11+) is read from
    this interpreter's standard library: the frozen code was compiled from
    that file, if the snapshot came from the same Python version.
    """
    if not filename.startswith("<"):
        return filename
    frozen = _FROZEN.match(filename)
    stdlib = sysconfig.get_paths().get("stdlib")
    if frozen is None or not stdlib:
        return None
    path = os.path.join(stdlib, *frozen.group(1).split(".")) + ".py"
    return path if os.path.isfile(path) else None


class _Scopes:
    """The function and class scopes of one source file, by line."""

    def __init__(self, tree: ast.AST) -> None:
        #: (first line, last line, qualified name, def line), sorted.
        spans: List[Tuple[int, int, str, int]] = []
        self._collect(tree, "", spans)
        spans.sort()
        self._spans = spans
        self._starts = [span[0] for span in spans]

    def _collect(
        self,
        node: ast.AST,
        prefix: str,
        spans: List[Tuple[int, int, str, int]],
    ) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                # A scope's lines are its body's.  The def (or class) line
                # and the decorators run in the enclosing scope, which
                # creates the function there: at import time, much of a
                # module's memory is allocated on its def lines.
                first = child.body[0].lineno if child.body else child.lineno
                last = getattr(child, "end_lineno", None) or first
                spans.append((first, last, name, child.lineno))
                is_function = not isinstance(child, ast.ClassDef)
                inner = name + (".<locals>." if is_function else ".")
                self._collect(child, inner, spans)
            else:
                # Lambdas and comprehensions are not scopes here: their
                # frames share their lines with the enclosing code, and a
                # line alone cannot tell the two apart.  Both take the
                # enclosing function's name.
                self._collect(child, prefix, spans)

    def find(self, lineno: int) -> Tuple[str, int]:
        """The innermost scope holding *lineno*: (qualified name, def line)."""
        best: Tuple[str, int] = ("<module>", 0)
        best_width = None
        # Scopes nest, so every scope holding the line starts at or before
        # it; the innermost one is the narrowest of those.
        for first, last, name, def_line in self._spans[
            : bisect_right(self._starts, lineno)
        ]:
            if first <= lineno <= last:
                width = last - first
                if best_width is None or width <= best_width:
                    best, best_width = (name, def_line), width
        return best


class FrameNamer:
    """Names frames, reading and parsing each source file at most once."""

    def __init__(self) -> None:
        self._scopes: Dict[str, Optional[_Scopes]] = {}
        self._names: Dict[Tuple[str, int], FrameName] = {}

    def _scopes_of(self, filename: str) -> Optional[_Scopes]:
        if filename in self._scopes:
            return self._scopes[filename]
        scopes = None
        path = _source_path(filename)
        if path is not None:
            source = "".join(linecache.getlines(path))
            if source:
                try:
                    scopes = _Scopes(ast.parse(source, filename))
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    scopes = None
        self._scopes[filename] = scopes
        return scopes

    def name(self, filename: str, lineno: int) -> FrameName:
        """The `FrameName` of the frame ``filename:lineno``."""
        key = (filename, lineno)
        found = self._names.get(key)
        if found is not None:
            return found
        module = module_name(filename)
        scopes = self._scopes_of(filename)
        short = short_filename(filename)
        if scopes is None:
            # pprof takes "<...>" for C++ template arguments and drops it:
            # "<string>" would show as nothing.
            where = module or (short[1:-1] if short.startswith("<") else short)
            function, start = "%s:%d" % (where, lineno), 0
        else:
            qualname, start = scopes.find(lineno)
            # A script without .py (a console script, bin/gunicorn) is named
            # by its file, so that its "<module>" is not a bare "<module>".
            prefix = module or os.path.basename(filename)
            function = "%s.%s" % (prefix, qualname)
        found = self._names[key] = FrameName(function, start, short)
        return found
