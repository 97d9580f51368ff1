"""``pyleakhunt demo``: the seed's leak, found end to end."""

import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from pyleakhunt import demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILER_LINE = "Profiler.timings.append("


def run_demo(*args, block_flask=False, timeout=60):
    """Run the demo in a fresh interpreter, as a user would."""
    env = dict(os.environ, PYTHONPATH=REPO)
    if block_flask:
        code = (
            "import sys; sys.modules['flask'] = None\n"
            "from pyleakhunt.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        argv = [sys.executable, "-c", code, "demo", *args]
    else:
        argv = [sys.executable, "-m", "pyleakhunt", "demo", *args]
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    return done, time.monotonic() - started


def test_the_demo_names_the_leaking_endpoint_and_the_profiler_line():
    done, elapsed = run_demo()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert elapsed < 30
    assert "GET /app_metric/<app>" in out
    verdict = out[out.index("Verdict:") :]
    assert verdict.startswith("Verdict: GET /app_metric/<app> leaks")
    assert "demo.py:%d" % profiler_lineno() in verdict
    assert PROFILER_LINE in verdict
    # The healthy endpoints, the bounded cache among them, are not leaking.
    for healthy in ("/exchange_rate/<currency>", "/report/<int:user>", "/healthz"):
        row = next(line for line in out.splitlines() if healthy in line)
        assert "not leaking" in row, row
    assert "LeakHunt(app, report=True)" in out  # what to run next


def test_without_flask_the_demo_serves_the_same_app_in_plain_wsgi():
    done, _ = run_demo("--seconds", "2", block_flask=True)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "plain WSGI app" in out and "Flask is not installed" in out
    assert "Verdict: GET /app_metric/<app> leaks" in out
    assert PROFILER_LINE in out
    assert "LeakHuntMiddleware(app, report=True)" in out


def test_the_demo_refuses_to_run_inside_a_traced_process(tracing, capsys):
    assert demo.run(sys.stdout, requests=10) == 1
    assert "already on" in capsys.readouterr().out


def profiler_lineno():
    """The line of the Profiler's append, in the demo's source."""
    import inspect

    lines, first = inspect.getsourcelines(demo.Profiler.__exit__)
    for offset, line in enumerate(lines):
        if PROFILER_LINE in line:
            return first + offset
    pytest.fail("the Profiler has no append line")


def test_the_findings_show_the_services_line_first_with_the_library_beneath():
    # A site the report API returns for a leak made inside json, for a line
    # of the service (traceback most recent call first, as in its JSON).
    decoder = json.decoder.__file__
    service = demo.__file__
    site = {
        "filename": decoder,
        "lineno": 353,
        "leaking": True,
        "traceback": [[decoder, 353], [json.__file__, 346], [service, 66]],
    }
    endpoint = {
        "endpoint": "GET /app_metric/<app>",
        "requests": 100,
        "retained_bytes": 10_000,
        "bytes_per_request": 100,
        "leaking": True,
        "verdict": "leaking",
        "sites": [site],
    }
    out = io.StringIO()
    code = demo._print_findings(
        out,
        {"endpoints": [endpoint]},
        served=100,
        failures=0,
        elapsed=1.0,
        clients=1,
        traced=10_000,
        rss=None,
        report_url="http://127.0.0.1:1/_leakhunt/",
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("3. ")))
    assert lines[start + 1].strip().endswith("pyleakhunt/demo.py:66")
    # The decoder's line differs between versions (353 on 3.10-3.12).
    assert re.fullmatch(r"via json/decoder\.py:\d+", lines[start + 3].strip())
    assert "decoder.py" not in "".join(lines[start + 4 :])
    verdict = next(line for line in lines if line.startswith("Verdict"))
    assert verdict.endswith("pyleakhunt/demo.py:66:")


def judge_series(retained, requests):
    """The verdict attribution gives an endpoint with this series."""
    from pyleakhunt import attribution

    line = (demo.__file__, 1)
    series = attribution._Series(
        points=[
            attribution._Point(n, size, {line: size})
            for n, size in zip(requests, retained)
        ]
    )
    floor = attribution.Options().min_bytes_per_request
    rule = attribution._rule_for(attribution.DEFAULT_RULE, series, floor)
    return attribution._judge("GET /healthz", requests[-1], series, rule, False, floor)


# The demo's rounds: 50 requests to each endpoint between samples.
DEMO_REQUESTS = [62 + 50 * i for i in range(8)]


def test_one_high_end_point_on_a_flat_endpoint_is_not_a_leak():
    # /healthz on 3.14: a flat ~1 KiB of free-listed small objects, then a
    # last sample ~2.7 KiB higher (net growth above 8 B x 350 requests,
    # mostly rising steps): the fitted slope is ~4 B a request.
    retained = [1000, 1100, 1000, 1200, 1100, 1300, 1200, 3900]
    report = judge_series(retained, DEMO_REQUESTS)
    assert report.bytes_per_request < 8
    assert report.verdict == "not leaking"
    assert not any(site.leaking for site in report.sites)


@pytest.mark.parametrize("per_request", [56, 64, 100])
def test_a_leak_of_one_small_object_a_request_is_caught_through_the_same_noise(
    per_request,
):
    # One small list (56 B), dict-sized block (64 B) or str (~100 B) kept
    # per request, with the same +-300 B free-list jitter on top.
    jitter = [0, 100, -300, 200, -100, 300, -200, 0]
    retained = [
        1000 + per_request * (n - DEMO_REQUESTS[0]) + j
        for n, j in zip(DEMO_REQUESTS, jitter)
    ]
    report = judge_series(retained, DEMO_REQUESTS)
    assert report.verdict == "leaking", report
    assert report.sites[0].leaking
