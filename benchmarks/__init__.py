"""Benchmarks of pyleakhunt's core tracer against the stdlib tracemalloc.

``python -m benchmarks --help``.  Layout:

- `benchmarks.run`: the command line, runs children, saves, reports;
- `benchmarks.runner`: the child process, one measurement;
- `benchmarks.tracers`: tracer configurations ("none", "tracemalloc-25"...);
- `benchmarks.workloads`: the workload registry and workloads;
- `benchmarks.experiments`: which workload under which configurations;
- `benchmarks.figures`: the report's figures, targets and checks;
- `benchmarks.report`: text and Markdown rendering.
"""
