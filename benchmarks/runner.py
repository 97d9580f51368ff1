"""Child-process entry point: one measurement, one JSON line.

    python benchmarks/runner.py WORKLOAD CONFIG [PARAMS_JSON]

runs workload WORKLOAD (see `benchmarks.workloads`) under tracer
configuration CONFIG (see `benchmarks.tracers`) with the given parameters,
and prints the measurements as JSON on a line starting with `MARKER`.
The parent (`benchmarks.run`) starts a fresh one for every measurement.

It runs as a script, not with ``-m``, to keep the stack shallow: runpy's
frames would make every traceback two frames longer (the workload function
runs 4 frames deep: this module, `main`, the workload's ``run``, itself).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import List, Optional

MARKER = "BENCHMARK-RESULT "


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    from benchmarks import tracers, workloads

    run = workloads.get(args[0])
    tracer = tracers.make(args[1])  # imports the tracer before anything is measured
    params = json.loads(args[2]) if len(args) == 3 else {}
    result = run(tracer, params)
    result["python"] = platform.python_version()
    result["tracer_module"] = tracer.module_file()
    result["tracer_build"] = tracer.build_id()
    sys.stdout.write(MARKER + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # As a script, sys.path[0] is this directory: replace it with the
    # repository, so that `benchmarks` and `pyleakhunt` are packages; unless
    # PYTHONPATH has it already (the parent puts its staged copy of
    # pyleakhunt before it).
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if repo not in [os.path.abspath(p or ".") for p in sys.path]:
        sys.path.insert(0, repo)
    sys.exit(main())
