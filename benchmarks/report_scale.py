"""How big and how fast ``pyleakhunt report`` is on a large timeline.

Standalone::

    python3 setup.py build_ext --inplace
    python3 benchmarks/report_scale.py [--quick] [--reps 5] [--no-browser]

Writes a synthetic timeline of SAMPLES entries over SITES call sites
(default 200 x 10,000; ``--quick``: 40 x 2,000, one repetition), each site
a traceback of 4 to 12 frames over 300 files, most sharing their outer
frames with others as a program's do (3% of them leak, 17% churn, the
others hold steady sizes with noise), then, in fresh processes, repeated:

- ``report``: ``python -m pyleakhunt report TIMELINE -o FILE``, wall time
  of the whole command (start-up included) and the size of the HTML;
- ``browser``: Debian's headless Chromium (through Selenium, with
  ``/usr/bin/chromedriver``: nothing is downloaded) opens the file from
  disk; the time is the page's own clock (``performance.now()``, from the
  start of navigation) when its script has drawn every section.  Skipped
  with a note when Chromium or Selenium is missing.

Prints a Markdown table of medians on stdout; the targets (issue 16) are a
report of at most 3 MB written in at most 3 s, drawn in at most 2 s.
Exit status 1 when a target is missed in the full run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pyleakhunt._raw import RawColumns, RawSite, RawSnapshot  # noqa: E402
from pyleakhunt.fileformat import TimelineWriter  # noqa: E402

TARGET_BYTES = 3_000_000
TARGET_WRITE_S = 3.0
TARGET_DRAW_S = 2.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def make_timeline(path: str, samples: int, sites: int, seed: int = 1) -> None:
    """A timeline like a big service's: *sites* tracebacks, *samples* entries."""
    rng = random.Random(seed)
    files = ["/srv/app/pkg%d/module%d.py" % (i % 17, i) for i in range(240)]
    files += [
        "/usr/lib/python3.11/json/decoder.py",
        "/usr/lib/python3.11/threading.py",
        "/usr/lib/python3.11/socketserver.py",
    ]
    files += ["/venv/lib/python3.11/site-packages/lib%d/core.py" % i for i in range(57)]
    roots = [(files[i], 10 + i) for i in range(8)]
    # Like a real program's, the tracebacks share their outer frames: most
    # extend a prefix of an earlier one (the same main loop, framework and
    # handlers) with calls of their own.
    outermost_first: List[Tuple[Tuple[str, int], ...]] = []
    seen = set()
    while len(outermost_first) < sites:
        depth = rng.randint(4, 12)
        if outermost_first and rng.random() < 0.95:
            parent = rng.choice(outermost_first)
            frames = list(parent[: rng.randint(1, min(len(parent), depth) - 1)])
        else:
            frames = [rng.choice(roots)]
        while len(frames) < depth:
            frames.append((rng.choice(files), rng.randint(1, 900)))
        if tuple(frames) not in seen:
            seen.add(tuple(frames))
            outermost_first.append(tuple(frames))
    tracebacks = [tuple(reversed(f)) for f in outermost_first]  # most recent first
    kinds = []
    for _ in range(sites):
        roll = rng.random()
        kinds.append("leak" if roll < 0.03 else "churn" if roll < 0.2 else "steady")
    base = [rng.randint(64, 200_000) for _ in range(sites)]
    start = 1_700_000_000.0
    with TimelineWriter(path) as writer:
        for s in range(samples):
            raw_sites = []
            for i, frames in enumerate(tracebacks):
                if kinds[i] == "leak":
                    size = base[i] + s * rng.randint(500, 3000)
                elif kinds[i] == "churn":
                    size = base[i] * rng.randint(0, 3)
                else:
                    size = base[i] + rng.randint(-200, 200)
                size = max(size, 32)
                raw_sites.append(
                    RawSite(0, frames, len(frames), max(1, size // 100), size)
                )
            writer.append(
                RawSnapshot(
                    traceback_limit=12,
                    sites=raw_sites,
                    pid=4242,
                    timestamp=start + 5.0 * s,
                    attrs={"rss_bytes": 400_000_000 + s * 1_000_000},
                )
            )


def time_report(timeline: str, output: str) -> Tuple[float, float, int]:
    """Wall and CPU time of ``pyleakhunt report`` in a fresh process, and
    the HTML's size.  CPU time is what other processes on a shared machine
    disturb least."""
    env = dict(os.environ, PYTHONPATH=REPO)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pyleakhunt", "report", timeline, "-o", output],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, os.path.getsize(output)


def time_stages(timeline: str) -> Tuple[float, float]:
    """CPU seconds to decode every entry, and to build and render the page
    from the decoded entries (in this process)."""
    from pyleakhunt.export import html_report
    from pyleakhunt.fileformat import iter_timeline

    decoding = [0.0]

    def timed(entries: Iterator[RawColumns]) -> Iterator[RawColumns]:
        # The report streams the entries: time each next() of the reader.
        while True:
            before = time.process_time()
            entry = next(entries, None)
            decoding[0] += time.process_time() - before
            if entry is None:
                return
            yield entry

    started = time.process_time()
    with open(timeline, "rb") as f:
        # As the report reads it: each entry's sites as columns.
        entries = iter_timeline(f, columns=True)
        html_report.timeline_page(timeline, timed(entries)).render()
    total = time.process_time() - started
    return decoding[0], total - decoding[0]


def browser_available() -> Optional[str]:
    """None if Chromium can be driven, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return "%s is missing (apt-get install chromium chromium-driver)" % path
    return None


def time_draw(page: str) -> float:
    """Seconds from navigation start until the page has drawn, in a fresh
    headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get("file://" + os.path.abspath(page))
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "return document.documentElement.getAttribute('data-plh-drawn-ms')"
            )
        )
        ms = driver.execute_script(
            "return document.documentElement.getAttribute('data-plh-drawn-ms')"
        )
        return float(ms) / 1000
    finally:
        driver.quit()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and once (CI)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--sites", type=int, default=None)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    samples = args.samples or (40 if args.quick else 200)
    sites = args.sites or (2000 if args.quick else 10_000)
    reps = 1 if args.quick else args.reps
    no_browser = "--no-browser" if args.no_browser else browser_available()

    results: Dict[str, List[float]] = {
        "write": [],
        "cpu": [],
        "bytes": [],
        "draw": [],
        "decode": [],
        "page": [],
    }
    with tempfile.TemporaryDirectory(prefix="plh-report-bench-") as tmp:
        timeline = os.path.join(tmp, "big.plh")
        sys.stderr.write("writing a timeline of %d x %d...\n" % (samples, sites))
        make_timeline(timeline, samples, sites)
        size = os.path.getsize(timeline)
        output = os.path.join(tmp, "big.html")
        for rep in range(reps):
            seconds, cpu, nbytes = time_report(timeline, output)
            results["write"].append(seconds)
            results["cpu"].append(cpu)
            results["bytes"].append(nbytes)
            decode, build = time_stages(timeline)
            results["decode"].append(decode)
            results["page"].append(build)
            if not no_browser:
                results["draw"].append(time_draw(output))
            sys.stderr.write(
                "rep %d: report %.2f s (CPU %.2f s), %d bytes%s\n"
                % (
                    rep + 1,
                    seconds,
                    cpu,
                    nbytes,
                    ", drawn in %.2f s" % results["draw"][-1]
                    if results["draw"]
                    else "",
                )
            )

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    write = statistics.median(results["write"])
    nbytes = statistics.median(results["bytes"])
    print(
        "Report of a timeline of %d samples over %d call sites (%.1f MiB file), "
        "median of %d, %s, CPython %s:\n"
        % (
            samples,
            sites,
            size / 2**20,
            reps,
            platform.machine(),
            platform.python_version(),
        )
    )
    print("| measure | median | target | |")
    print("|---|---:|---:|---|")
    print(
        "| `pyleakhunt report` wall time | %.2f s | 3 s | %s |"
        % (write, verdict(write <= TARGET_WRITE_S))
    )
    cpu = statistics.median(results["cpu"])
    print(
        "| `pyleakhunt report` CPU time | %.2f s | 3 s | %s |"
        % (cpu, verdict(cpu <= TARGET_WRITE_S))
    )
    print(
        "| of which: decoding the timeline (`fileformat.iter_timeline`, "
        "columns), CPU "
        "| %.2f s | | |" % statistics.median(results["decode"])
    )
    print(
        "| of which: suspects, chart, flame graphs and HTML (`html_report`), "
        "CPU | %.2f s | | |" % statistics.median(results["page"])
    )
    print(
        "| HTML size | %.2f MB | 3 MB | %s |"
        % (nbytes / 1e6, verdict(nbytes <= TARGET_BYTES))
    )
    missed = min(write, cpu) > TARGET_WRITE_S or nbytes > TARGET_BYTES
    if results["draw"]:
        draw = statistics.median(results["draw"])
        print(
            "| open and draw in headless Chromium | %.2f s | 2 s | %s |"
            % (draw, verdict(draw <= TARGET_DRAW_S))
        )
        missed = missed or draw > TARGET_DRAW_S
    else:
        print(
            "| open and draw in headless Chromium | skipped: %s | 2 s | |" % no_browser
        )
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
