"""An integration test waits for a condition, never for a fixed time
(issue 17, item 5).

A ``time.sleep(0.5)`` that stands for "by then the child has done it" is
either too short on a busy machine (a flaky test) or longer than needed
everywhere.  Read from the source with ast (nothing is imported): in the
functions of tests/integration (tests, fixtures, helpers), a call of
``time.sleep`` is allowed only inside a loop, where it is the tick of a
poll with a deadline.  What is not looked at, because a sleep there is the
behaviour wanted, not a wait: child scripts (they are strings), and
functions nested in another (a thread's target, a slow handler, a fake).
Wait with ``wait_until`` or ``wait_for`` from tests/helpers.py instead.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Union

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"

_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
Function = Union[ast.FunctionDef, ast.AsyncFunctionDef]


def _outside_loops(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes under *node*, not looking into loops or nested scopes."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _LOOPS + _SCOPES):
            continue
        yield child
        yield from _outside_loops(child)


def _checked_functions(tree: ast.Module) -> Iterator[Function]:
    """The module's functions and the methods of its classes, not the
    functions nested in them."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield item


def _sleeps_from_time(tree: ast.Module) -> bool:
    """True if the module says ``from time import sleep``."""
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "time"
        and any(alias.name == "sleep" and alias.asname is None for alias in node.names)
        for node in ast.walk(tree)
    )


def _is_time_sleep(call: ast.Call, bare_name: bool) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return (
            func.attr == "sleep"
            and isinstance(func.value, ast.Name)
            and func.value.id == "time"
        )
    return bare_name and isinstance(func, ast.Name) and func.id == "sleep"


def fixed_waits(directory: Path) -> List[str]:
    """``file:line: function: call`` for each fixed wait in *directory*."""
    found = []
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        bare_name = _sleeps_from_time(tree)
        for function in _checked_functions(tree):
            for node in _outside_loops(function):
                if isinstance(node, ast.Call) and _is_time_sleep(node, bare_name):
                    found.append(
                        f"{path.name}:{node.lineno}: {function.name}: "
                        f"{ast.unparse(node)}"
                    )
    return found


def test_no_integration_test_waits_a_fixed_time():
    found = fixed_waits(INTEGRATION)
    assert not found, (
        "wait for the condition (helpers.wait_until), not for a fixed time:\n"
        + "\n".join(found)
    )


def test_the_check_sees_a_fixed_wait_and_allows_a_poll_tick(tmp_path):
    (tmp_path / "test_a.py").write_text(
        """\
import asyncio
import time

CHILD = "import time; time.sleep(60)"  # a child script: a string


def test_waits():
    start()
    time.sleep(0.5)
    with open("f") as f:
        time.sleep(max(0.0, 7.5 - time.monotonic()))
    while not done():
        time.sleep(0.01)  # a poll's tick
    for _ in range(3):
        time.sleep(0.01)

    def slow_handler():
        time.sleep(1)  # behaviour: nested functions are not checked

    clock.sleep(10)  # not time.sleep
    asyncio.sleep(0)


class TestGroup:
    def test_method(self):
        try:
            time.sleep(2)
        finally:
            pass


def helper():
    sleep(1)  # not time's sleep in this module
"""
    )
    (tmp_path / "test_b.py").write_text(
        "from time import sleep\n\n\ndef test_waits():\n    sleep(0.3)\n"
    )
    assert fixed_waits(tmp_path) == [
        "test_a.py:9: test_waits: time.sleep(0.5)",
        "test_a.py:11: test_waits: time.sleep(max(0.0, 7.5 - time.monotonic()))",
        "test_a.py:27: test_method: time.sleep(2)",
        "test_b.py:5: test_waits: sleep(0.3)",
    ]
