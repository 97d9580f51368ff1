"""The report's figures: each reads the results of some experiments and
makes one `Section` (tables, targets, correctness checks, notes).

To add a figure: write a function ``(results) -> Section`` decorated with
``@figure(key, title, [experiment keys])``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import svg
from .experiments import FIELD_WORKLOADS, PYPERFORMANCE, SCALE_EXPERIMENTS
from .report import (
    ERROR,
    MET,
    MISMATCH,
    MISSED,
    NA,
    OK,
    Check,
    Section,
    Table,
    count,
    mib,
    per_block,
    ratio,
    seconds,
    size,
    speedup,
    spread,
    target_status,
)
from .tracers import FIELD_CONFIGS, SAMPLE_BYTES, parse_config

# -- access to results --------------------------------------------------------


class Results:
    """The runs of every experiment, as saved in the JSON results file.

    ``data[key]`` is ``{"workload", "configs", "params", "reps", "runs"}``;
    each run is ``{"config", "rep", "ok", "result" | "error", ...}``.
    """

    def __init__(self, data: Dict[str, Dict[str, Any]], quick: bool) -> None:
        self.data = data
        self.quick = quick

    def has(self, exp: str) -> bool:
        return exp in self.data

    def params(self, exp: str) -> Dict[str, Any]:
        return self.data[exp]["params"]

    def configs(self, exp: str) -> List[str]:
        return list(self.data[exp]["configs"])

    def results(self, exp: str, config: str) -> List[Dict[str, Any]]:
        return [
            run["result"]
            for run in self.data.get(exp, {}).get("runs", [])
            if run["config"] == config and run.get("ok")
        ]

    def failures(self, exp: str) -> List[Dict[str, Any]]:
        return [run for run in self.data[exp]["runs"] if not run.get("ok")]

    def values(self, exp: str, config: str, field: str) -> List[float]:
        return [r[field] for r in self.results(exp, config) if r.get(field) is not None]

    def median(self, exp: str, config: str, field: str) -> Optional[float]:
        values = self.values(exp, config, field)
        return statistics.median(values) if values else None

    def median_sum(
        self, exp: str, config: str, fields: Sequence[str]
    ) -> Optional[float]:
        """Median over runs of the per-run sum of *fields*."""
        totals = [
            sum(r[f] for f in fields)
            for r in self.results(exp, config)
            if all(r.get(f) is not None for f in fields)
        ]
        return statistics.median(totals) if totals else None

    def first(self, exp: str, config: str, field: str) -> Any:
        for r in self.results(exp, config):
            if r.get(field) is not None:
                return r[field]
        return None


def div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


# -- the figure registry ------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    experiments: List[str]
    summarize: Callable[[Results], Section]


FIGURES: Dict[str, Figure] = {}


def figure(key: str, title: str, experiments: List[str]) -> Callable[..., Any]:
    def decorate(func: Callable[[Results], Section]) -> Callable[[Results], Section]:
        FIGURES[key] = Figure(key, title, experiments, func)
        return func

    return decorate


def build_sections(results: Results, keys: Sequence[str]) -> List[Section]:
    sections = []
    for key in keys:
        fig = FIGURES[key]
        if not all(results.has(exp) for exp in fig.experiments):
            continue
        section = fig.summarize(results)
        section.key, section.title = fig.key, fig.title
        for exp in fig.experiments:
            failed = results.failures(exp)
            if failed:
                configs = sorted({run["config"] for run in failed})
                section.checks.append(
                    Check(
                        "runs of %r" % exp,
                        ERROR,
                        "%d failed" % len(failed),
                        detail="configurations: %s; first error: %s"
                        % (", ".join(configs), failed[0].get("error", "?")[-300:]),
                    )
                )
        builds = {
            r["tracer_build"]
            for exp in fig.experiments
            for run in results.data[exp]["runs"]
            if run.get("ok")
            for r in [run["result"]]
            if r.get("tracer_build")
        }
        if len(builds) > 1:
            section.notes.append(
                "Warning: the pyleakhunt extension changed during these runs "
                "(%d different builds); the figures mix them." % len(builds)
            )
        sections.append(section)
    return sections


# -- shared bits --------------------------------------------------------------


def _tracemalloc_twin(config: str) -> Optional[str]:
    kind, nframe = parse_config(config)
    if not kind.startswith("pyleakhunt"):
        return None
    return "tracemalloc-%d" % nframe


def _runs_note(results: Results, exps: Sequence[str]) -> str:
    parts = []
    for exp in exps:
        data = results.data[exp]
        parts.append("%s: %d" % (exp, data["reps"]))
    return (
        "Each number is the median over fresh processes, one per run, "
        "configurations interleaved (for rep in reps: for config in configs); "
        "runs per configuration: %s." % ", ".join(parts)
    )


def _blocks_counted(r: Dict[str, Any]) -> Optional[int]:
    """Live blocks as the tracer counted them, else the nominal count."""
    for field in ("live_blocks", "snapshot_traces", "blocks"):
        if r.get(field):
            return r[field]
    return None


def _accounting_per_block(results: Results, exp: str, config: str) -> Optional[float]:
    per = [
        r["tracer_memory"] / _blocks_counted(r)
        for r in results.results(exp, config)
        if r.get("tracer_memory") is not None and _blocks_counted(r)
    ]
    return statistics.median(per) if per else None


def _rss_per_block(results: Results, exp: str, config: str) -> Optional[float]:
    growth = results.median(exp, config, "rss_growth")
    base = results.median(exp, "none", "rss_growth")
    blocks = results.first(exp, config, "blocks")
    if growth is None or base is None or not blocks:
        return None
    return (growth - base) / blocks


QUICK_NOTE = "quick mode"

#: Result fields of a timed step: CPU time (used for ratios and targets)
#: and wall-clock time.
CPU, WALL = "%s_cpu_seconds", "%s_seconds"
CLOCK_NOTE = (
    "Times are CPU time of the measuring process (`time.process_time()`, "
    "user + system), which leaves out the time it waited for a CPU while "
    "other programs ran on this shared machine; wall-clock times are in "
    "the raw results (and, for W1, in the table)."
)


def _vs_tracemalloc(results: Results, exp: str, config: str, field: str) -> Any:
    twin = _tracemalloc_twin(config)
    if twin is None:
        return None
    return div(results.median(exp, config, field), results.median(exp, twin, field))


# -- Figure 1: W1 speed -------------------------------------------------------

W1_TARGETS = {"pyleakhunt-1": 1.5, "pyleakhunt-25": 2.5}
W1_ISSUE_TRACEMALLOC = {"tracemalloc-1": "~8.2x", "tracemalloc-25": "~20x"}


@figure("w1", "Figure 1: W1 speed (JSON churn)", ["w1"])
def w1_speed(results: Results) -> Section:
    exp = "w1"
    params = results.params(exp)
    cpu, wall = CPU % "loop", WALL % "loop"
    base = results.median(exp, "none", cpu)
    base_wall = results.median(exp, "none", wall)
    rows = []
    for config in results.configs(exp):
        med = results.median(exp, config, cpu)
        nframe = parse_config(config)[1]
        rows.append(
            [
                config,
                str(nframe) if nframe else "-",
                seconds(med),
                spread(results.values(exp, config, cpu)),
                ratio(div(med, base)),
                ratio(_vs_tracemalloc(results, exp, config, cpu)),
                seconds(results.median(exp, config, wall)),
                ratio(div(results.median(exp, config, wall), base_wall)),
                size(results.median(exp, config, "tracer_memory")),
            ]
        )
    table = Table(
        [
            "Configuration",
            "nframe",
            "CPU time",
            "Min - max",
            "vs untraced",
            "vs tracemalloc",
            "Wall time",
            "Wall vs untraced",
            "Tracer memory",
        ],
        rows,
    )
    section = Section(
        "",
        "",
        intro=(
            '%s iterations of: build `{"id": i, "name": "user%%d" %% i, '
            '"tags": [i, i+1, i+2]}`, `json.dumps` it, `json.loads` that, '
            "append the result to a list cleared every 1,000 items.  Only the "
            "loop is timed; the tracer starts before the timer and stops after.  "
            "Ratios and targets use CPU time (see the notes)." % count(params["n"])
        ),
        tables=[table],
    )
    for config, limit in W1_TARGETS.items():
        value = div(results.median(exp, config, cpu), base)
        section.targets.append(
            Check(
                "W1 time, %s vs untraced" % config,
                target_status(value, limit),
                ratio(value),
                "<= %s" % ratio(limit),
                "runs: %s - %s; wall clock: %s; vs tracemalloc at the same "
                "nframe: %s"
                % (
                    ratio(
                        div(min(results.values(exp, config, cpu), default=None), base)
                    ),
                    ratio(
                        div(max(results.values(exp, config, cpu), default=None), base)
                    ),
                    ratio(div(results.median(exp, config, wall), base_wall)),
                    ratio(_vs_tracemalloc(results, exp, config, cpu)),
                ),
            )
        )
    measured = ", ".join(
        "%s %s (issue: %s)"
        % (config, ratio(div(results.median(exp, config, cpu), base)), ref)
        for config, ref in W1_ISSUE_TRACEMALLOC.items()
    )
    section.notes.append("Stdlib tracemalloc vs untraced here: %s." % measured)
    depth = results.first(exp, "none", "stack_depth")
    if depth:
        section.notes.append(
            "The loop runs %d Python frames deep (json adds up to 3 more), so "
            "nframe 25 keeps whole tracebacks.  tracemalloc's cost grows with "
            "the frames it keeps, so its ratio at nframe 25 depends on the "
            "stack depth; figure 4 repeats W1 on a deeper stack." % depth
        )
    section.notes.append(CLOCK_NOTE)
    section.notes.append(
        "Tracer memory: `get_tracemalloc_memory()` at the end of the loop, "
        "before stop()."
    )
    if results.quick:
        section.notes.append(
            "%s: %s iterations instead of 200,000; ratios stay meaningful but "
            "are noisier." % (QUICK_NOTE.capitalize(), count(params["n"]))
        )
    section.notes.append(_runs_note(results, [exp]))
    return section


# -- Figure 2: memory per live block ------------------------------------------

MEMORY_TARGET = 40.0


@figure("memory", "Figure 2: tracer memory per live block", ["heap"])
def memory(results: Results) -> Section:
    exp = "heap"
    params = results.params(exp)
    blocks = params["n"] * 6
    tracemalloc_per_block = _rss_per_block(results, exp, "tracemalloc-1")
    rows = []
    for config in results.configs(exp):
        traced = parse_config(config)[0] != "none"
        rss_per_block = _rss_per_block(results, exp, config) if traced else None
        live = [_blocks_counted(r) for r in results.results(exp, config) if traced]
        rows.append(
            [
                config,
                mib(results.median(exp, config, "rss_growth")),
                per_block(rss_per_block),
                ratio(div(rss_per_block, tracemalloc_per_block))
                if config.startswith("pyleakhunt")
                else "-",
                mib(results.median(exp, config, "tracer_memory")),
                per_block(_accounting_per_block(results, exp, config)),
                count(statistics.median(live)) if live and all(live) else "-",
                mib(results.median(exp, config, "maxrss_after_build")),
                mib(results.median(exp, config, "maxrss_end")),
            ]
        )
    table = Table(
        [
            "Configuration",
            "RSS growth",
            "Tracer bytes/block (RSS)",
            "vs tracemalloc",
            "Tracer's own memory",
            "Own memory/block",
            "Live blocks counted",
            "Peak RSS after build",
            "Peak RSS at end",
        ],
        rows,
    )
    value = _rss_per_block(results, exp, "pyleakhunt-1")
    section = Section(
        "",
        "",
        intro=(
            '%s live blocks: %s each of a short str (`"s%%07d" %% i`), a '
            "one-int list (`[i]`, object + item array) and a one-key dict "
            '(`{"k": i}`, object + keys), plus the ints `i`, made by three '
            "functions and kept alive in lists; nframe 1.  RSS growth is "
            "measured from just before `start()` to after building; tracer "
            "bytes per block = (RSS growth traced - RSS growth untraced) / %s."
            % (count(blocks), count(params["n"]), count(blocks))
        ),
        tables=[table],
    )
    section.targets.append(
        Check(
            "Memory per live block, pyleakhunt-1 (RSS)",
            target_status(value, MEMORY_TARGET),
            per_block(value),
            "<= %s" % per_block(MEMORY_TARGET),
            "tracemalloc-1: %s (issue: ~100 B)" % per_block(tracemalloc_per_block),
        )
    )
    section.notes.append(
        "Own memory: `get_tracemalloc_memory()` after building; per block, "
        "divided by the live blocks the tracer counted (pyleakhunt: "
        "`get_stats()['live_blocks']`; tracemalloc: `len(take_snapshot().traces)`)."
    )
    section.notes.append(
        "Peak RSS (`ru_maxrss`) after building, and at the end of the process, "
        "after the snapshots of figure 3 taken in the same processes."
    )
    if results.quick:
        section.notes.append(
            "%s: %s blocks instead of 6,000,000; hash tables grow by powers of "
            "two, so per-block figures differ somewhat from the full run."
            % (QUICK_NOTE.capitalize(), count(blocks))
        )
    section.notes.append(_runs_note(results, [exp]))
    return section


# -- Figure 3: snapshot cost --------------------------------------------------

FULL_SNAPSHOT_TARGET = 1.5
AGGREGATED_TARGET = 0.05
SITES_TARGET = 0.2
FULL_HEAP_ITEMS = 1_000_000
FULL_SITES = 100_000


def _snapshot_row(
    results: Results,
    exp: str,
    config: str,
    label: str,
    prefix: str,
    second: str,
    reference: Optional[float],
) -> List[str]:
    total = _total(results, exp, config, prefix, second)
    return [
        config,
        label,
        seconds(results.median(exp, config, CPU % (prefix + "_snapshot"))),
        seconds(results.median(exp, config, CPU % (prefix + "_" + second))),
        seconds(total),
        seconds(_total(results, exp, config, prefix, second, WALL)),
        speedup(div(reference, total))
        if reference is not None and not config.startswith("tracemalloc")
        else "-",
    ]


def _total(
    results: Results,
    exp: str,
    config: str,
    prefix: str,
    second: str,
    clock: str = CPU,
) -> Any:
    fields = [clock % (prefix + "_snapshot"), clock % (prefix + "_" + second)]
    return results.median_sum(exp, config, fields)


def _agreement(results: Results, exp: str, config: str, name: str) -> Check:
    verdicts = results.values(exp, config, "full_vs_aggregated")
    bad = [v for v in verdicts if v != OK]
    if not verdicts:
        return Check(name, NA, "no runs")
    return Check(
        name,
        MISMATCH if bad else OK,
        "%d of %d runs identical" % (len(verdicts) - len(bad), len(verdicts)),
    )


def _cross_check(results: Results, exp: str, configs: List[str], field: str) -> Check:
    seen = {config: results.first(exp, config, field) for config in configs}
    name = "pyleakhunt and tracemalloc count the same (%s)" % field.replace("_", " ")
    if any(v is None for v in seen.values()):
        return Check(name, NA, "missing runs")
    values = list(seen.values())
    if all(v == values[0] for v in values):
        detail = ""
        if isinstance(values[0], list):
            detail = "%d lines" % len(values[0])
        return Check(name, OK, "identical", detail=detail)
    detail = "; ".join("%s: %s" % (c, str(v)[:120]) for c, v in seen.items())
    return Check(name, MISMATCH, "different", detail=detail)


@figure("snapshot", "Figure 3: snapshot cost", ["heap", "sites"])
def snapshot(results: Results) -> Section:
    heap, sites = "heap", "sites"
    heap_items = results.params(heap)["n"]
    n_sites = results.params(sites)["sites"]
    frames = results.params(sites)["frames"]
    full_heap = heap_items >= FULL_HEAP_ITEMS
    full_sites = n_sites >= FULL_SITES

    tm_heap = _total(results, heap, "tracemalloc-1", "full", "statistics")
    heap_table = Table(
        [
            "Configuration",
            "Operation",
            "Snapshot",
            "Then",
            "Total",
            "Total (wall)",
            "Speed-up",
        ],
        [
            _snapshot_row(
                results,
                heap,
                "tracemalloc-1",
                "take_snapshot() + statistics('lineno')",
                "full",
                "statistics",
                tm_heap,
            ),
            _snapshot_row(
                results,
                heap,
                "pyleakhunt-1",
                "take_snapshot() + statistics('lineno')",
                "full",
                "statistics",
                tm_heap,
            ),
            _snapshot_row(
                results,
                heap,
                "pyleakhunt-1",
                "take_snapshot(traces=False) + top(10)",
                "aggregated",
                "top",
                tm_heap,
            ),
            _snapshot_row(
                results,
                heap,
                "pyleakhunt-1",
                "the same, again",
                "aggregated_again",
                "top",
                tm_heap,
            ),
        ],
        align="llrrrrr",
        caption="On the heap of figure 2 (%s live blocks, nframe 1):"
        % count(heap_items * 6),
    )
    tm_sites = _total(results, sites, "tracemalloc-%d" % frames, "full", "statistics")
    plh = "pyleakhunt-%d" % frames
    sites_table = Table(
        [
            "Configuration",
            "Operation",
            "Snapshot",
            "Then",
            "Total",
            "Total (wall)",
            "Speed-up",
        ],
        [
            _snapshot_row(
                results,
                sites,
                "tracemalloc-%d" % frames,
                "take_snapshot() + statistics('lineno')",
                "full",
                "statistics",
                tm_sites,
            ),
            _snapshot_row(
                results,
                sites,
                plh,
                "take_snapshot(traces=False) + top(10), first",
                "aggregated",
                "top",
                tm_sites,
            ),
            _snapshot_row(
                results,
                sites,
                plh,
                "the same, again",
                "aggregated_again",
                "top",
                tm_sites,
            ),
            _snapshot_row(
                results,
                sites,
                plh,
                "take_snapshot() + statistics('lineno'), after those",
                "full",
                "statistics",
                tm_sites,
            ),
        ],
        align="llrrrrr",
        caption="With %s distinct tracebacks of %d frames (2 live blocks each, "
        "nframe %d):" % (count(n_sites), frames, frames),
    )
    build_rows = []
    for config in results.configs(sites):
        memory = results.median(sites, config, "tracer_memory")
        build_rows.append(
            [
                config,
                seconds(results.median(sites, config, CPU % "build")),
                mib(memory),
                per_block(div(memory, n_sites)),
                count(results.median(sites, config, "unique_tracebacks")),
            ]
        )
    build_table = Table(
        [
            "Configuration",
            "Build (traced)",
            "Tracer memory",
            "Per traceback",
            "Unique tracebacks",
        ],
        build_rows,
        caption="Building that heap under the tracer (calls through the chain, "
        "first sight of each traceback):",
    )

    section = Section(
        "",
        "",
        intro=(
            "Full snapshots copy every live block; pyleakhunt's aggregated "
            "snapshots (`take_snapshot(traces=False)`) copy the per-site totals "
            "its tracer keeps up to date, so their cost follows the number of "
            "call sites, not of blocks.  The 'Then' column times "
            "`statistics('lineno')` or `top(10)` on that snapshot; 'Speed-up' "
            "is tracemalloc's total divided by this row's.  CPU times but "
            "'Total (wall)'."
        ),
        tables=[heap_table, sites_table, build_table],
    )
    value = _total(results, heap, "pyleakhunt-1", "full", "statistics")
    section.targets.append(
        Check(
            "Full snapshot + statistics, 6M blocks, pyleakhunt-1",
            target_status(value, FULL_SNAPSHOT_TARGET, full_heap),
            seconds(value),
            "<= %s" % seconds(FULL_SNAPSHOT_TARGET),
            "tracemalloc-1: %s (issue: ~15 s)" % seconds(tm_heap)
            if full_heap
            else "%s: %s blocks only; target is for 6,000,000"
            % (QUICK_NOTE, count(heap_items * 6)),
        )
    )
    for prefix, label in (
        ("aggregated", "after a full one"),
        ("aggregated_again", "repeated"),
    ):
        value = _total(results, heap, "pyleakhunt-1", prefix, "top")
        section.targets.append(
            Check(
                "Aggregated snapshot + top(10), 6M-block heap, %s" % label,
                target_status(value, AGGREGATED_TARGET),
                seconds(value),
                "<= %s" % seconds(AGGREGATED_TARGET),
            )
        )
    for prefix, label in (
        ("aggregated", "first in the process"),
        ("aggregated_again", "repeated"),
    ):
        value = _total(results, sites, plh, prefix, "top")
        section.targets.append(
            Check(
                "Aggregated snapshot + top(10), %s tracebacks x %d frames, %s"
                % (count(n_sites), frames, label),
                target_status(value, SITES_TARGET, full_sites),
                seconds(value),
                "<= %s" % seconds(SITES_TARGET),
                ""
                if full_sites
                else "%s: %s tracebacks; target is for 100,000"
                % (QUICK_NOTE, count(n_sites)),
            )
        )
    section.checks.append(
        _agreement(
            results,
            heap,
            "pyleakhunt-1",
            "full and aggregated snapshots: same statistics('lineno') "
            "for the heap's lines",
        )
    )
    section.checks.append(
        _agreement(
            results,
            sites,
            plh,
            "full and aggregated snapshots: same statistics('lineno') "
            "for the %s generated lines" % count(n_sites),
        )
    )
    section.checks.append(
        _cross_check(results, heap, ["tracemalloc-1", "pyleakhunt-1"], "heap_lines")
    )
    section.checks.append(
        _cross_check(
            results,
            sites,
            ["tracemalloc-%d" % frames, plh],
            "traced_blocks_on_site_lines",
        )
    )
    section.notes.append(
        "The agreement checks compare (line, size, count) of every "
        "'lineno' statistic in the module that built the heap (or in the "
        "generated code); lines of the benchmark itself and of the tracer "
        "change between two snapshots and are left out.  For the 6M-block "
        "heap both snapshots are taken one after the other, after the timed "
        "ones: code run in between may reuse an object from a free list "
        "(from 3.14 ints have one), and a reused object rightly moves to "
        "the line that reuses it."
    )
    section.notes.append(
        "The sites heap: %s lines in `exec`-compiled functions of %d lines, "
        "each line allocating a one-item list, called through a chain so "
        "that every allocation is %d frames deep; compiled before tracing "
        "starts."
        % (count(n_sites), results.params(sites).get("per_function", 10), frames)
    )
    section.notes.append(
        "In each process the first aggregated snapshot pays for cold caches "
        "(frames turned into Python objects for the first time), hence the "
        "two rows."
    )
    section.notes.append(CLOCK_NOTE)
    section.notes.append(_runs_note(results, [heap, sites]))
    return section


# -- Figure 4: nframe sweep ---------------------------------------------------


@figure(
    "nframe",
    "Figure 4: overhead and memory against nframe",
    ["w1-nframe", "heap-nframe"],
)
def nframe(results: Results) -> Section:
    speed_exp, heap_exp = "w1-nframe", "heap-nframe"
    nframes = sorted({parse_config(c)[1] for c in results.configs(speed_exp)} - {0})
    base = results.median(speed_exp, "none", CPU % "loop")
    speed_rows = [["untraced", seconds(base), "1.00x", "-", "-", "-"]]
    memory_rows = []
    for n in nframes:
        tm, plh = "tracemalloc-%d" % n, "pyleakhunt-%d" % n
        tm_s = results.median(speed_exp, tm, CPU % "loop")
        plh_s = results.median(speed_exp, plh, CPU % "loop")
        speed_rows.append(
            [
                str(n),
                seconds(tm_s),
                ratio(div(tm_s, base)),
                seconds(plh_s),
                ratio(div(plh_s, base)),
                ratio(div(plh_s, tm_s)),
            ]
        )
        memory_rows.append(
            [
                str(n),
                per_block(_rss_per_block(results, heap_exp, tm)),
                per_block(_rss_per_block(results, heap_exp, plh)),
                per_block(_accounting_per_block(results, heap_exp, tm)),
                per_block(_accounting_per_block(results, heap_exp, plh)),
            ]
        )
    speed_table = Table(
        [
            "nframe",
            "tracemalloc",
            "vs untraced",
            "pyleakhunt",
            "vs untraced",
            "vs tracemalloc",
        ],
        speed_rows,
        caption="W1, %s iterations (CPU time):" % count(results.params(speed_exp)["n"]),
    )
    heap_items = results.params(heap_exp)["n"]
    memory_table = Table(
        [
            "nframe",
            "tracemalloc B/block (RSS)",
            "pyleakhunt B/block (RSS)",
            "tracemalloc own/block",
            "pyleakhunt own/block",
        ],
        memory_rows,
        caption="Memory per live block, heap of figure 2 with %s blocks:"
        % count(heap_items * 6),
    )
    depth_w1 = results.first(speed_exp, "none", "stack_depth")
    depth_heap = results.first(heap_exp, "none", "stack_depth")
    section = Section(
        "",
        "",
        intro=(
            "The same workloads run %d extra Python frames deep, so that "
            "tracebacks are longer than the smaller limits: W1 runs %s frames "
            "deep (json adds a few more), the heap builders %s."
            % (results.params(speed_exp).get("depth", 0), depth_w1, depth_heap)
        ),
        tables=[speed_table, memory_table],
    )
    section.notes.append("No targets here; figure 1's targets are for a shallow stack.")
    if results.has("w1"):
        shallow = div(
            results.median("w1", "pyleakhunt-1", CPU % "loop"),
            results.median("w1", "none", CPU % "loop"),
        )
        deep = div(results.median(speed_exp, "pyleakhunt-1", CPU % "loop"), base)
        section.notes.append(
            "pyleakhunt-1 vs untraced: %s with W1 %s frames deep (figure 1), "
            "%s here, %s frames deep: at nframe 1 too, the cost per allocation "
            "grows with the depth of the stack."
            % (
                ratio(shallow),
                results.first("w1", "none", "stack_depth"),
                ratio(deep),
                depth_w1,
            )
        )
    section.notes.append(CLOCK_NOTE)
    if results.quick:
        section.notes.append(
            "%s: %s W1 iterations and %s heap blocks."
            % (
                QUICK_NOTE.capitalize(),
                count(results.params(speed_exp)["n"]),
                count(heap_items * 6),
            )
        )
    section.notes.append(_runs_note(results, [speed_exp, heap_exp]))
    return section


# -- Figure 5: against the field ----------------------------------------------


@figure(
    "field", "Figure 5: against the field (overhead per benchmark)", FIELD_WORKLOADS
)
def field_figure(results: Results) -> Section:
    return field_section(results)


# -- Figure 6: scaling with live blocks ----------------------------------------


@figure(
    "scaling",
    "Figure 6: snapshot cost and memory against live blocks",
    SCALE_EXPERIMENTS + ["heap"],
)
def scaling_figure(results: Results) -> Section:
    return scaling_section(results)


FIELD_GEOMEAN_TARGET = 1.5
FIELD_OVERHEAD_SHARE = 0.25
FIELD_LABELS = {
    "field-w1": "W1 JSON churn",
    "field-w2": "W2 object churn",
    "field-w3": "W3 Flask requests",
}
FIELD_NOTE_CONFIGS = {
    "none": "untraced",
    "tracemalloc-1": "stdlib `tracemalloc.start(1)`",
    "tracemalloc-25": "stdlib `tracemalloc.start(25)`",
    "pyleakhunt-1": "`pyleakhunt.start(1)` (exact)",
    "pyleakhunt-25": "`pyleakhunt.start(25)` (exact)",
    "pyleakhunt-sampled-25": "`pyleakhunt.start(25, sample_bytes=%d)` (sampled, "
    "512 KiB)" % SAMPLE_BYTES,
    "memray": "`memray.Tracker(path)` (defaults)",
    "memray-pyalloc": "`memray.Tracker(path, trace_python_allocators=True)`",
}


def _label(exp: str) -> str:
    return FIELD_LABELS.get(exp, exp[3:] if exp.startswith("pp-") else exp)


def geomean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v]
    if not present or len(present) != len(values):
        return None
    return math.exp(sum(math.log(v) for v in present) / len(present))


def field_section(results: Results) -> Section:
    cpu = CPU % "loop"
    exps = [e for e in FIELD_WORKLOADS if results.has(e)]
    pp = [e for e in exps if e.startswith("pp-") and results.configs(e)]
    configs = [c for c in FIELD_CONFIGS if any(c in results.configs(e) for e in exps)]
    traced = [c for c in configs if c != "none"]

    def ratio_of(exp: str, config: str) -> Optional[float]:
        return div(results.median(exp, config, cpu), results.median(exp, "none", cpu))

    time_rows, ratio_rows, rss_rows = [], [], []
    for exp in exps:
        if not results.configs(exp):
            continue
        time_rows.append(
            [_label(exp)] + [seconds(results.median(exp, c, cpu)) for c in configs]
        )
        ratio_rows.append([_label(exp)] + [ratio(ratio_of(exp, c)) for c in traced])
        rss_rows.append(
            [_label(exp)] + [mib(results.median(exp, c, "maxrss_end")) for c in configs]
        )
    geo = {c: geomean([ratio_of(e, c) for e in pp]) for c in traced}
    geo_all = {
        c: geomean([ratio_of(e, c) for e in exps if results.configs(e)]) for c in traced
    }
    if pp:
        ratio_rows.append(
            ["**geomean, pyperformance (%d)**" % len(pp)]
            + ["**%s**" % ratio(geo[c]) for c in traced]
        )
    ratio_rows.append(["geomean, all workloads"] + [ratio(geo_all[c]) for c in traced])
    tables = [
        Table(
            ["Workload"] + traced,
            ratio_rows,
            caption="CPU time vs untraced (median of the runs' CPU time divided "
            "by the untraced median; 1.00x = no overhead):",
        ),
        Table(["Workload"] + configs, time_rows, caption="Median CPU time:"),
        Table(
            ["Workload"] + configs,
            rss_rows,
            caption="Peak RSS of the measuring process (`ru_maxrss` at its end; "
            "includes the interpreter, the workload's setup and the tracer):",
        ),
    ]
    section = Section(
        "",
        "",
        intro=(
            "Every workload under every tracer, the same work for each: W1, W2 "
            "(class instances, dicts, lists and strings; one small record in 50 "
            "iterations retained for good), W3 (Flask requests through the test "
            "client: a template page, two JSON routes, a form POST) and %d "
            "benchmarks of the pyperformance package, run unmodified in-process "
            "(each `run_benchmark.py` imported from the installed package under "
            "another module name, its work function called a fixed number of "
            "times: see `benchmarks/workloads/pyperformance_bm.py` and "
            "`PYPERFORMANCE` in `benchmarks/experiments.py`).  The tracer starts "
            "right before the timed loop and stops after it.  Tracers: %s."
            % (
                len(PYPERFORMANCE),
                "; ".join(
                    "`%s`: %s" % (c, FIELD_NOTE_CONFIGS.get(c, c))
                    for c in FIELD_CONFIGS
                ),
            )
        ),
        tables=tables,
    )

    # Targets.
    value = geo.get("pyleakhunt-1") if pp else None
    section.targets.append(
        Check(
            "pyleakhunt-1 geomean vs untraced, pyperformance set",
            target_status(value, FIELD_GEOMEAN_TARGET, bool(pp)),
            ratio(value),
            "<= %s" % ratio(FIELD_GEOMEAN_TARGET),
            "tracemalloc-1: %s, tracemalloc-25: %s (the CPython sampling "
            "proposal measured exact tracemalloc at 3.33x)"
            % (ratio(geo.get("tracemalloc-1")), ratio(geo.get("tracemalloc-25")))
            if pp
            else "pyperformance not installed",
        )
    )
    for nframe in (1, 25):
        plh, tm = "pyleakhunt-%d" % nframe, "tracemalloc-%d" % nframe
        shares = []
        for exp in exps:
            r_plh, r_tm = ratio_of(exp, plh), ratio_of(exp, tm)
            if r_plh is None or r_tm is None:
                continue
            shares.append(((r_plh - 1) / (r_tm - 1) if r_tm > 1 else math.inf, exp))
        if not shares:
            section.targets.append(Check("overhead share, nframe %d" % nframe, NA))
            continue
        worst, worst_exp = max(shares)
        failing = [_label(e) for share, e in shares if share > FIELD_OVERHEAD_SHARE]
        section.targets.append(
            Check(
                "Overhead of %s / overhead of %s, every workload (worst)" % (plh, tm),
                MET if not failing else MISSED,
                "%.2f (%s)" % (worst, _label(worst_exp)),
                "<= %.2f" % FIELD_OVERHEAD_SHARE,
                "overhead = ratio vs untraced - 1; above the goal on %d of %d: %s"
                % (len(failing), len(shares), ", ".join(failing) or "none"),
            )
        )
    for plh in ("pyleakhunt-1", "pyleakhunt-25"):
        pairs = [
            (div(ratio_of(e, plh), ratio_of(e, "memray-pyalloc")), e)
            for e in exps
            if ratio_of(e, plh) and ratio_of(e, "memray-pyalloc")
        ]
        if not pairs:
            section.targets.append(
                Check(
                    "%s faster than memray-pyalloc" % plh,
                    NA,
                    detail="memray not installed"
                    if "memray-pyalloc" not in configs
                    else "no runs",
                )
            )
            continue
        slower = [_label(e) for r, e in pairs if r is not None and r >= 1]
        worst, worst_exp = max(pairs, key=lambda p: p[0] or 0)
        section.targets.append(
            Check(
                "%s faster than memray-pyalloc, every workload" % plh,
                MET if not slower else MISSED,
                "time ratio at worst %s (%s)" % (ratio(worst), _label(worst_exp)),
                "< 1x",
                "geomean over all workloads: %s vs %s; slower on %d of %d: %s"
                % (
                    ratio(geo_all.get(plh)),
                    ratio(geo_all.get("memray-pyalloc")),
                    len(slower),
                    len(pairs),
                    ", ".join(slower) or "none",
                ),
            )
        )

    # Where pyleakhunt loses, say so.
    for plh in ("pyleakhunt-1", "pyleakhunt-25"):
        for other in ("memray",):
            if other not in configs:
                continue
            losses = [
                "%s (%s vs %s)"
                % (_label(e), ratio(ratio_of(e, plh)), ratio(ratio_of(e, other)))
                for e in exps
                if ratio_of(e, plh)
                and ratio_of(e, other)
                and ratio_of(e, plh) > ratio_of(e, other)
            ]
            section.notes.append(
                "%s is slower than %s on %s."
                % (plh, other, ", ".join(losses) if losses else "no workload")
                + (
                    "  (memray's defaults do not trace small Python objects one "
                    "by one, so it does less work than an exact tracer.)"
                    if losses and other == "memray"
                    else ""
                )
            )

    # Notes: skipped configurations and workloads.
    for exp in exps:
        skipped = results.data[exp].get("skipped") or {}
        if skipped and not results.configs(exp):
            section.notes.append(
                "%s not run: %s." % (_label(exp), sorted(set(skipped.values()))[0])
            )
        elif skipped:
            section.notes.append(
                "%s: skipped %s (%s)."
                % (
                    _label(exp),
                    ", ".join(skipped),
                    "; ".join(sorted(set(skipped.values()))),
                )
            )
    section.notes.append(
        "Overhead = ratio vs untraced - 1 (a tracer at 1.20x has overhead "
        "0.20).  The target 'at most a quarter of tracemalloc's' compares "
        "those overheads at the same nframe."
    )
    section.notes.append(
        "memray writes every allocation event to a file (deleted after the "
        "run) and keeps whole stacks, so it has no nframe; by default it does "
        "not see pymalloc's small objects one by one.  pyleakhunt-sampled "
        "records about one allocation per 512 KiB allocated (estimates, not "
        "exact counts)."
    )
    section.notes.append(
        "pyperformance work per run (calls of the benchmark's work function): "
        + ", ".join("%s %d" % (e[3:], results.params(e).get("loops", 1)) for e in pp)
        + ".  xml_etree was left out: one call takes 0.3 s untraced and ~40x "
        "that under tracemalloc-25, too long for this run's time budget."
        if pp
        else "pyperformance not installed: no pyperformance benchmarks."
    )
    section.notes.append(CLOCK_NOTE)
    if results.quick:
        section.notes.append(
            "%s: less work per run and one run per configuration; the ratios "
            "are rough." % QUICK_NOTE.capitalize()
        )
    section.notes.append(
        _runs_note(results, [e for e in exps if results.configs(e)][:1])
    )

    groups = [_label(e) for e in exps if results.configs(e)]
    values = {
        (_label(e), c): ratio_of(e, c)
        for e in exps
        if results.configs(e)
        for c in traced
    }
    if pp:
        groups.append("geomean (pyperformance)")
        for c in traced:
            values[("geomean (pyperformance)", c)] = geo[c]
    name = "img/bench-overhead.svg"
    section.svgs[name] = svg.bar_chart(
        "Overhead per benchmark: CPU time vs untraced (log scale)",
        groups,
        traced,
        values,
        "CPU time / untraced",
    )
    section.plots.append(name)
    return section


def scaling_section(results: Results) -> Section:
    exps = [e for e in SCALE_EXPERIMENTS + ["heap"] if results.has(e)]
    points = sorted(exps, key=lambda e: results.params(e)["n"])
    rows = []
    series: Dict[str, List[Any]] = {
        "tracemalloc-1: take_snapshot() + statistics": [],
        "pyleakhunt-1: take_snapshot() + statistics": [],
        "pyleakhunt-1: take_snapshot(traces=False) + top(10)": [],
    }
    for exp in points:
        blocks = results.params(exp)["n"] * 6
        tm_full = _total(results, exp, "tracemalloc-1", "full", "statistics")
        plh_full = _total(results, exp, "pyleakhunt-1", "full", "statistics")
        plh_agg = _total(results, exp, "pyleakhunt-1", "aggregated_again", "top")
        for key, value in zip(series, (tm_full, plh_full, plh_agg)):
            if value:
                series[key].append((blocks, value))
        rows.append(
            [
                count(blocks),
                seconds(tm_full),
                seconds(plh_full),
                speedup(div(tm_full, plh_full)),
                seconds(plh_agg),
                per_block(_rss_per_block(results, exp, "tracemalloc-1")),
                per_block(_rss_per_block(results, exp, "pyleakhunt-1")),
                per_block(_accounting_per_block(results, exp, "tracemalloc-1")),
                per_block(_accounting_per_block(results, exp, "pyleakhunt-1")),
            ]
        )
    table = Table(
        [
            "Live blocks",
            "tracemalloc-1 full",
            "pyleakhunt-1 full",
            "Speed-up",
            "pyleakhunt-1 aggregated",
            "tracemalloc B/block (RSS)",
            "pyleakhunt B/block (RSS)",
            "tracemalloc own/block",
            "pyleakhunt own/block",
        ],
        rows,
        caption="Snapshot cost (CPU time; full = take_snapshot() + "
        "statistics('lineno'), aggregated = take_snapshot(traces=False) + "
        "top(10), the second one in the process) and tracer memory per live "
        "block:",
    )
    section = Section(
        "",
        "",
        intro=(
            "The heap of figure 2 (str, list and dict blocks made by three "
            "functions, nframe 1) at several sizes; the largest is figure 2's "
            "own run.  Memory per block as in figure 2."
        ),
        tables=[table],
    )
    worse = [
        "%s blocks (%s: %s vs %s)" % (row[0], what, row[j], row[i])
        for row in rows
        for what, i, j in (("RSS", 5, 6), ("own memory", 7, 8))
        if row[i] != "-" and row[j] != "-" and float(row[j][:-2]) > float(row[i][:-2])
    ]
    section.notes.append(
        "pyleakhunt-1 uses more memory per block than tracemalloc-1 at: %s."
        % ("; ".join(worse) if worse else "no point")
        + (
            "  (Probably its tables' fixed initial sizes, which a small heap "
            "does not fill.)"
            if worse
            else ""
        )
    )
    name = "img/bench-snapshot-scaling.svg"
    section.svgs[name] = svg.line_chart(
        "Snapshot time vs live blocks (log-log)",
        series,
        "live blocks",
        "CPU time",
    )
    section.plots.append(name)
    section.notes.append(CLOCK_NOTE)
    if results.quick:
        section.notes.append(
            "%s: smaller heaps (largest %s blocks)."
            % (QUICK_NOTE.capitalize(), count(results.params(points[-1])["n"] * 6))
        )
    section.notes.append(_runs_note(results, points))
    return section
