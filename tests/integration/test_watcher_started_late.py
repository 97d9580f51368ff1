"""A watcher started in a program that already runs finds its leaks.

Attached to a server, or started after a warm-up, the watcher's first
sample already holds what the program kept so far, flat from then on.
A leak that begins later at such a line must still be found.
"""

from __future__ import annotations

import pytest
from helpers import assert_clean, run_python

SHAPES = {
    "dict": '{"id": i, "name": "user %d" % i}',
    "list": "[i, i + 1]",
    "tuple": '(i, "user %d" % i)',
    "str": '"user %d" % i',
}

#: Keeps 200 objects, starts the watcher, holds them flat for 65% of the
#: run, then keeps one per fifty calls at the same line.
SCRIPT = """
import time
import pyleakhunt
from pyleakhunt.watcher import LeakWatcher

KEPT = []

def keep(i):
    KEPT.append(OBJECT)  # the leak

pyleakhunt.start(1)
for i in range(200):
    keep(i)
watcher = LeakWatcher(interval=0.1).start()
late = time.monotonic() + 2.6
end = time.monotonic() + 4
i = 200
while time.monotonic() < end:
    rows = [{"id": j, "name": "row %d" % j} for j in range(20)]
    if i % 50 == 0 and time.monotonic() >= late:
        keep(i)
    i += 1
    time.sleep(0.0002)
watcher.stop()
found = [(s.traceback[0].filename, s.traceback[0].lineno) for s in watcher.suspects()]
print(found)
assert found[:1] == [("<string>", 9)], found
print("OK")
"""


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_leak_that_begins_late_at_a_line_already_holding_memory_is_found(shape):
    proc = run_python(SCRIPT.replace("OBJECT", SHAPES[shape]), timeout=60)
    assert_clean(proc)
