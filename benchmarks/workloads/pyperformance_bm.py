"""Benchmarks from the pyperformance package, run unmodified in-process.

Each benchmark's ``run_benchmark.py`` is imported from the installed
pyperformance package (``pyperformance/data-files/benchmarks/bm_NAME/``)
under the module name ``bench_pyperformance_NAME``, so that its
``if __name__ == "__main__":`` block (which starts a pyperf Runner) does not
run.  `SETUPS` reproduces, for each benchmark, what that block passes to
``runner.bench_func`` / ``bench_time_func`` (the benchmark's own defaults)
and returns a callable doing one unit of the benchmark's work; the timed
loop calls it *loops* times.  Nothing in the benchmarks' code is changed or
special-cased; every tracer runs the same calls.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any, Callable, Dict

from . import register
from .common import max_rss_bytes, settle, timed

Work = Callable[[], Any]


def benchmarks_dir() -> str:
    spec = importlib.util.find_spec("pyperformance")
    if spec is None or not spec.origin:
        raise RuntimeError("pyperformance is not installed (pip install -e .[bench])")
    return os.path.join(os.path.dirname(spec.origin), "data-files", "benchmarks")


def load(name: str) -> ModuleType:
    path = os.path.join(benchmarks_dir(), "bm_" + name, "run_benchmark.py")
    spec = importlib.util.spec_from_file_location("bench_pyperformance_" + name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json_loads(m: ModuleType) -> Work:
    import json

    objs = (json.dumps(m.DICT), json.dumps(m.TUPLE), json.dumps(m.DICT_GROUP))
    return lambda: m.bench_json_loads(objs)


def _json_dumps(m: ModuleType) -> Work:
    data = []
    for case in m.CASES:
        obj, count = getattr(m, case)
        data.append((obj, range(count)))
    return lambda: m.bench_json_dumps(data)


def _richards(m: ModuleType) -> Work:
    richards = m.Richards()
    return lambda: richards.run(1)


def _deltablue(m: ModuleType) -> Work:
    return lambda: m.delta_blue(100)


def _go(m: ModuleType) -> Work:
    return m.versus_cpu


class _CaptureRunner:
    """Stands in for pyperf.Runner where a benchmark's own ``main(runner,
    args)`` builds its inputs: records the function and arguments it would
    benchmark instead of running pyperf."""

    def __init__(self) -> None:
        self.metadata: Dict[str, Any] = {}
        self.work: Any = None

    def bench_func(self, name: str, func: Any, *args: Any, **kw: Any) -> None:
        self.work = lambda: func(*args)


def _chaos(m: ModuleType) -> Work:
    from types import SimpleNamespace

    args = SimpleNamespace(
        thickness=m.DEFAULT_THICKNESS,
        width=m.DEFAULT_WIDTH,
        height=m.DEFAULT_HEIGHT,
        iterations=m.DEFAULT_ITERATIONS,
        filename=None,
        rng_seed=m.DEFAULT_RNG_SEED,
    )
    runner = _CaptureRunner()
    m.main(runner, args)
    return runner.work


def _raytrace(m: ModuleType) -> Work:
    return lambda: m.bench_raytrace(1, m.DEFAULT_WIDTH, m.DEFAULT_HEIGHT, None)


def _xml_etree(m: ModuleType) -> Work:
    import xml.etree.ElementTree as etree

    funcs = [getattr(m, "bench_" + b) for b in m.BENCHMARKS]

    def work() -> None:
        for func in funcs:
            m.bench_etree(1, etree, func)

    return work


def _unpack_sequence(m: ModuleType) -> Work:
    return lambda: m.bench_all(1000)


def _float(m: ModuleType) -> Work:
    return lambda: m.benchmark(m.POINTS)


def _nqueens(m: ModuleType) -> Work:
    return lambda: m.bench_n_queens(8)


#: Benchmark name -> function(module) -> one unit of its work.
SETUPS: Dict[str, Callable[[ModuleType], Work]] = {
    "json_loads": _json_loads,
    "json_dumps": _json_dumps,
    "richards": _richards,
    "deltablue": _deltablue,
    "go": _go,
    "chaos": _chaos,
    "raytrace": _raytrace,
    "xml_etree": _xml_etree,
    "unpack_sequence": _unpack_sequence,
    "float": _float,
    "nqueens": _nqueens,
}


def loop(work: Work, loops: int) -> None:
    for _ in range(loops):
        work()


@register("pyperformance")
def run(tracer: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """params: bench (a name in SETUPS), loops (calls of its work unit)."""
    name = params["bench"]
    loops = int(params.get("loops", 1))
    module = load(name)
    work = SETUPS[name](module)
    work()  # warm up before anything is measured
    settle()
    result: Dict[str, Any] = {"bench_file": module.__file__}
    tracer.start()
    timed(result, "loop", loop, work, loops)
    result.update(tracer.accounting())
    tracer.stop()
    result["maxrss_end"] = max_rss_bytes()
    return result
