"""Run the benchmarks and report.

    python -m benchmarks [--quick] [--write-docs] [--only FIGURE,...]
    python benchmarks/run.py ...

Every measurement runs in a fresh child process (`benchmarks.runner`);
configurations are interleaved and repeated; the report gives medians and
ratios.  Raw results go to benchmarks/results/ (gitignored); ``--write-docs``
regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

if not __package__:  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import experiments, figures, machine, report, tracers  # noqa: E402
from benchmarks.runner import MARKER  # noqa: E402

REPO = machine.REPO
RESULTS_DIR = REPO / "benchmarks" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
#: Hand-kept figures of the other scripts, appended to DOCS.
OTHER_FIGURES = REPO / "benchmarks" / "other_figures.md"
RUNNER = REPO / "benchmarks" / "runner.py"
FORMAT = 2  # of the results files; bump when result fields change

#: Environment variables that would change what the children measure.
SCRUBBED_ENV = (
    "PYTHONTRACEMALLOC",
    "PYTHONMALLOC",
    "PYTHONMALLOCSTATS",
    "PYTHONDEVMODE",
    "PYTHONASYNCIODEBUG",
    "PYTHONPROFILEIMPORTTIME",
)

#: stderr of a failed run that suggests the extension is being rebuilt.
TRANSIENT = ("ImportError", "ModuleNotFoundError", "undefined symbol", "invalid ELF")


class Stage:
    """Where the children import pyleakhunt from (None: the working tree)."""

    path: Optional[str] = None


def child_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    paths = [Stage.path, str(REPO), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONHASHSEED"] = "0"
    return env


def _import_check() -> Optional[str]:
    """None if pyleakhunt imports and traces in a child, else the error."""
    code = "import pyleakhunt as p; p.start(1); x = [1]; p.stop(); print(p.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tempfile.gettempdir(),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip() or "exit status %d" % proc.returncode)[-500:]


def _extension_id(package: Path) -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    path = package / ("_core" + suffix)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "%s missing" % path.name
    return "%s sha256 %s" % (path.name, digest)


@contextlib.contextmanager
def staged_pyleakhunt(in_place: bool) -> Iterator[str]:
    """Copy pyleakhunt/ (with its built extension) to a temporary directory
    for the children to import, so that a rebuild in the working tree during
    a long run does not mix builds.  Yields a description of the build."""
    source = REPO / "pyleakhunt"
    if in_place:
        Stage.path = None
        error = _import_check()
        if error:
            raise SystemExit("cannot import pyleakhunt: %s" % error)
        yield "%s, used in place" % _extension_id(source)
        return
    with tempfile.TemporaryDirectory(prefix="pyleakhunt-bench-") as tmp:
        error = None
        for attempt in range(5):
            dest = Path(tmp) / "pyleakhunt"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
            Stage.path = tmp
            error = _import_check()
            if error is None:
                break
            time.sleep(5.0 * (attempt + 1))  # maybe a rebuild is under way
        if error:
            Stage.path = None
            raise SystemExit("cannot import the copy of pyleakhunt: %s" % error)
        try:
            yield "%s, copied from the working tree at start" % _extension_id(dest)
        finally:
            Stage.path = None


def run_one(
    exp: experiments.Experiment, config: str, params: Dict[str, Any], rep: int
) -> Dict[str, Any]:
    """One measurement in a fresh process; retried if the import failed."""
    command = [
        sys.executable,
        str(RUNNER),
        exp.workload,
        config,
        json.dumps(params, sort_keys=True),
    ]
    record: Dict[str, Any] = {"config": config, "rep": rep, "ok": False}
    if hasattr(os, "getloadavg"):
        record["load_average"] = os.getloadavg()[0]
    for attempt in range(1, 4):
        record["attempts"] = attempt
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                command,
                cwd=REPO,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=exp.timeout,
            )
        except subprocess.TimeoutExpired:
            record["error"] = "timed out after %.0f s" % exp.timeout
            return record
        record["wall_seconds"] = time.perf_counter() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
        if proc.returncode == 0 and lines:
            record["ok"] = True
            record["result"] = json.loads(lines[-1][len(MARKER) :])
            record.pop("error", None)
            return record
        record["error"] = "exit status %d: %s" % (
            proc.returncode,
            (proc.stderr.strip() or proc.stdout.strip())[-2000:],
        )
        if not any(word in proc.stderr for word in TRANSIENT):
            return record
        time.sleep(5.0 * attempt)
    return record


def _headline(exp: experiments.Experiment, record: Dict[str, Any]) -> str:
    if not record["ok"]:
        return "FAILED: " + record.get("error", "?").splitlines()[-1][:150]
    value = record["result"].get(exp.headline)
    if value is None:
        text = "ok"
    elif exp.headline.startswith("rss"):
        text = "%s=%s" % (exp.headline, report.mib(value))
    else:
        text = "%s=%s" % (exp.headline, report.seconds(value))
    return "%s (%.1f s wall)" % (text, record["wall_seconds"])


def run_experiment(
    exp: experiments.Experiment,
    quick: bool,
    reps_override: Optional[int],
    skip: Sequence[str] = (),
) -> Dict[str, Any]:
    params, reps = exp.settings(quick)
    if reps_override:
        reps = reps_override
    skipped: Dict[str, str] = {}
    for config in exp.configs:
        if config in skip:
            reason = "left out on the command line (--skip)"
        elif quick and not exp.in_quick:
            reason = "full mode only"
        elif exp.requires and importlib.util.find_spec(exp.requires) is None:
            reason = "%s not installed (pip install -e .[bench])" % exp.requires
        else:
            reason = tracers.missing(config)
        if reason:
            skipped[config] = reason
    configs = [c for c in exp.configs if c not in skipped]
    for reason in sorted(set(skipped.values())):
        names = [c for c, r in skipped.items() if r == reason]
        what = "all configurations" if not configs else ", ".join(names)
        print("[%s] skipped %s: %s" % (exp.key, what, reason), file=sys.stderr)
    runs: List[Dict[str, Any]] = []
    for rep in range(1, (reps if configs else 0) + 1):
        for config in configs:
            record = run_one(exp, config, params, rep)
            runs.append(record)
            print(
                "[%s %d/%d] %-16s %s"
                % (exp.key, rep, reps, config, _headline(exp, record)),
                file=sys.stderr,
                flush=True,
            )
    return {
        "workload": exp.workload,
        "configs": configs,
        "skipped": skipped,
        "params": params,
        "reps": reps,
        "runs": runs,
    }


def _header(saved: Dict[str, Any]) -> List[str]:
    mode = "quick" if saved["quick"] else "full"
    return [
        "pyleakhunt benchmarks (%s mode), %s" % (mode, saved["machine"].get("date")),
        "Total time: %.0f s" % saved.get("total_seconds", 0),
    ]


def _reproduce(saved: Dict[str, Any]) -> List[str]:
    return [
        "```sh",
        "python3 setup.py build_ext --inplace   # build the extension",
        "pip install -e .[bench]                # pyperformance, pyperf, memray, flask",
        "python3 -m benchmarks                  # full run, about 25 minutes",
        "python3 -m benchmarks --write-docs     # ... and regenerate this page",
        "python3 -m benchmarks --quick          # smoke test, under 5 minutes",
        "python3 -m benchmarks --only w1,memory # some figures only",
        "python3 -m benchmarks --from-json benchmarks/results/FILE.json --write-docs",
        "```",
        "",
        "Each measurement is a fresh `%s benchmarks/runner.py WORKLOAD CONFIG "
        "PARAMS` process; the raw results of every run are saved as JSON in "
        "`benchmarks/results/`.  Workloads live in `benchmarks/workloads/`, "
        "tracer configurations in `benchmarks/tracers.py`, the runs of each "
        "figure in `benchmarks/experiments.py` and the figures in "
        "`benchmarks/figures.py`." % Path(sys.executable).name,
        "",
        "This page: `%s`." % " ".join(saved.get("argv", [])),
    ]


def _load_during(saved: Dict[str, Any]) -> Optional[str]:
    loads = [
        run["load_average"]
        for exp in saved["experiments"].values()
        for run in exp["runs"]
        if "load_average" in run
    ]
    if not loads:
        return None
    return "%.2f - %.2f (1-minute load average before each run)" % (
        min(loads),
        max(loads),
    )


def render(saved: Dict[str, Any], write_docs: bool, docs: Path) -> List[report.Section]:
    saved["machine"]["load_during_runs"] = _load_during(saved)
    results = figures.Results(saved["experiments"], saved["quick"])
    sections = figures.build_sections(results, saved["figures"])
    sys.stdout.write(report.render_text(sections, saved["machine"], _header(saved)))
    if write_docs:
        mode = "quick" if saved["quick"] else "full"
        mode_line = "Measured in %s mode on %s UTC, total %.0f s." % (
            mode,
            saved["machine"].get("date"),
            saved.get("total_seconds", 0),
        )
        if saved["quick"]:
            mode_line += (
                "  **Quick mode: smaller workloads; see the notes.  Publish a "
                "full run.**"
            )
        text = report.render_markdown(
            sections,
            saved["machine"],
            mode_line=mode_line,
            reproduce=_reproduce(saved),
        )
        # Figures that other scripts measure are kept by hand in a file of
        # their own and appended, so that regenerating keeps them.
        text = text.rstrip("\n") + "\n\n" + OTHER_FIGURES.read_text()
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(text)
        for section in sections:
            for name, svg in section.svgs.items():
                plot = docs.parent / name
                plot.parent.mkdir(parents=True, exist_ok=True)
                plot.write_text(svg)
                print("wrote %s" % plot, file=sys.stderr)
        print("wrote %s" % docs, file=sys.stderr)
    return sections


def exit_status(sections: Sequence[report.Section], strict: bool) -> int:
    bad = {report.ERROR, report.MISMATCH}
    if any(c.status in bad for c in report.all_checks(sections)):
        return 1
    if strict and any(t.status == report.MISSED for t in report.all_targets(sections)):
        return 1
    return 0


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of pyleakhunt against tracemalloc and memray.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller workloads, fewer runs: a smoke test of under 5 minutes",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="regenerate docs/benchmarks.md from the results",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS,
        help="where --write-docs writes (%(default)s)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated figures to run: %s" % ",".join(figures.FIGURES),
    )
    parser.add_argument("--reps", type=int, help="runs per configuration (override)")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated configurations to leave out (e.g. tracemalloc-25, "
        "the slowest, on a loaded machine)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="report saved results instead of measuring",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where raw JSON results go (%(default)s)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 if a target is missed (always: if a run fails "
        "or a correctness check mismatches)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="import pyleakhunt from the working tree instead of a copy made "
        "at start (a copy keeps a rebuild during the run out of the figures)",
    )
    parser.add_argument("--list", action="store_true", help="list figures and exit")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.list:
        for fig in figures.FIGURES.values():
            print(
                "%-10s %s (experiments: %s)"
                % (fig.key, fig.title, ", ".join(fig.experiments))
            )
        return 0
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        if saved.get("format") != FORMAT:
            print(
                "%s: results format %s, this version reads %d"
                % (args.from_json, saved.get("format"), FORMAT),
                file=sys.stderr,
            )
            return 2
        sections = render(saved, args.write_docs, args.docs)
        return exit_status(sections, args.strict)

    keys = [k.strip() for k in args.only.split(",") if k.strip()] or list(
        figures.FIGURES
    )
    unknown = [k for k in keys if k not in figures.FIGURES]
    if unknown:
        print(
            "unknown figure(s): %s; known: %s"
            % (", ".join(unknown), ", ".join(figures.FIGURES)),
            file=sys.stderr,
        )
        return 2
    needed: List[str] = []
    for key in keys:
        for exp in figures.FIGURES[key].experiments:
            if exp not in needed:
                needed.append(exp)

    saved: Dict[str, Any] = {
        "format": FORMAT,
        "quick": args.quick,
        "argv": [
            "python",
            "-m",
            "benchmarks",
            *(argv if argv is not None else sys.argv[1:]),
        ],
        "figures": keys,
        "machine": machine.describe(),
        "experiments": {},
    }
    removed = sorted(k for k in SCRUBBED_ENV if k in os.environ)
    if removed:
        saved["machine"]["env_removed"] = ", ".join(removed)
    t0 = time.perf_counter()
    with staged_pyleakhunt(args.in_place) as build:
        saved["machine"]["pyleakhunt_build"] = build
        print("pyleakhunt: %s" % build, file=sys.stderr)
        for key in needed:
            exp = experiments.EXPERIMENTS[key]
            skip = [c.strip() for c in args.skip.split(",") if c.strip()]
            saved["experiments"][key] = run_experiment(exp, args.quick, args.reps, skip)
    saved["total_seconds"] = time.perf_counter() - t0

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = args.results_dir / (
        "%s-%s.json" % (stamp, "quick" if args.quick else "full")
    )
    # Saved before rendering too, so that a failing figure loses no run.
    path.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    print("raw results: %s" % path, file=sys.stderr)
    sections = render(saved, args.write_docs, args.docs)
    saved["sections"] = [s.to_json() for s in sections]
    path.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    return exit_status(sections, args.strict)


if __name__ == "__main__":
    sys.exit(main())
