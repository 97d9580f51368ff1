"""The training run of the profile-guided build of pyleakhunt._core.

    python src/pgo_training.py PATH_TO_CORE_SO

setup.py builds the extension once instrumented (-fprofile-generate),
runs this file against that build, and builds it again with the counts
(-fprofile-use): the compiler then lays out the allocator hooks' common
paths straight and moves the rest away.  It drives the C module directly,
so that it needs nothing of the package.

The work is generic Python, not any benchmark's: small objects of every
common kind made, kept and freed, parsing and formatting in C (json, re,
str methods), containers grown in place (reallocs),
large buffers (the RAW domain), exceptions, recursion, a second thread;
traced at one frame, at 25 frames with the total depth, and sampled,
with snapshots between.  docs/design.md ("Speed") says what it buys.
"""

from __future__ import annotations

import gc
import importlib.machinery
import importlib.util
import json
import re
import sys
import threading
from types import ModuleType
from typing import Any, List


def load_core(path: str) -> ModuleType:
    """Import the extension at *path* as pyleakhunt._core."""
    loader = importlib.machinery.ExtensionFileLoader("pyleakhunt._core", path)
    spec = importlib.util.spec_from_file_location(
        "pyleakhunt._core", path, loader=loader
    )
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class Record:
    """A small class instance, with a dict of its own."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.name = f"record-{n}"


def small_objects(n: int) -> None:
    """Make, keep for a while, and drop the commonest small objects."""
    kept: List[Any] = []
    for i in range(n):
        kept.append({"id": i, "name": "item%d" % i, "tags": [i, i + 1]})
        kept.append((i, str(i), i * 0.5))
        kept.append(Record(i))
        kept.append(list(range(i % 7)))
        kept.append(" ".join(("a", str(i), "b")))
        if len(kept) >= 2000:
            kept.clear()


def library_calls(n: int) -> None:
    """C code that makes many objects under one Python line: parsing and
    formatting, as a web service does on every request."""
    pattern = re.compile(r"(\w+)=(\d+)")
    kept: List[Any] = []
    for i in range(n):
        doc = {"user": i, "roles": ["a", "b"], "score": i / 3, "ok": True}
        kept.append(json.loads(json.dumps(doc)))
        kept.append(dict(pattern.findall(f"a={i} b={i * 2} c={i % 5}")))
        kept.append(sorted({str(j) for j in range(i % 20)}))
        kept.append("/".join(part.upper() for part in "x/y/z".split("/")))
        if len(kept) >= 1000:
            kept.clear()


def growth(n: int) -> None:
    """Containers grown in place: the reallocs."""
    for _ in range(n):
        items: List[int] = []
        text = ""
        buf = bytearray()
        for j in range(200):
            items.append(j)
            text += "x"
            buf += b"0123456789"
        del items, text, buf


def large_and_raw(n: int) -> None:
    """Buffers over 512 bytes go to the RAW domain under pymalloc."""
    kept = []
    for i in range(n):
        kept.append(bytes(1000 + i % 3000))
        kept.append([0] * (200 + i % 500))
        if len(kept) > 100:
            kept.clear()


def deep(depth: int, n: int) -> None:
    """Allocations below a stack of Python frames."""
    if depth:
        deep(depth - 1, n)
        return
    small_objects(n)


def exceptions(n: int) -> None:
    for i in range(n):
        try:
            {}[i]
        except KeyError as exc:
            str(exc)


def workload(scale: int) -> None:
    small_objects(4000 * scale)
    library_calls(2000 * scale)
    growth(40 * scale)
    large_and_raw(400 * scale)
    deep(30, 500 * scale)
    exceptions(2000 * scale)
    worker = threading.Thread(target=small_objects, args=(1000 * scale,))
    worker.start()
    small_objects(1000 * scale)
    worker.join()


def main(argv: List[str]) -> int:
    core = load_core(argv[1])
    fresh = sys.version_info < (3, 13)
    # (nframe, sample_bytes, total_nframe, scale): the exact one-frame
    # trace is the commonest configuration, so it runs most.
    configs = [(1, 0, False, 12), (25, 0, True, 1), (1, 4096, False, 1)]
    for nframe, sample_bytes, total, scale in configs:
        gc.collect()
        core.start(nframe, sample_bytes, total)
        if fresh and not sample_bytes:
            core.keep_free_lists_empty(True)
        workload(scale)
        core.snapshot(False)
        keep = [Record(i) for i in range(1000)]
        core.get_object_traceback(keep[0])
        core.snapshot(True)
        core.keep_free_lists_empty(False)
        core.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
