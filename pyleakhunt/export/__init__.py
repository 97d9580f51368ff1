"""Standard profile formats, so that existing tools read pyleakhunt's data.

- `write_pprof`: gzipped pprof (``profile.proto``), for ``go tool pprof``,
  Pyroscope, Parca and Grafana;
- `write_folded`: folded stacks, for flamegraph.pl, inferno and speedscope.

Both take a `~pyleakhunt.Snapshot` (its live memory, one sample per call
site) or a `StackProfile`, such as `growth(old, new)`: what grew between
two snapshots.  ``Snapshot.to_pprof(path)`` and ``Snapshot.to_folded(path)``
are the short forms.  Nothing here depends on the tracer: snapshots loaded
from files export the same way.
"""

from .folded import FOLDED_VALUES, folded_lines, write_folded
from .pprof import encode_pprof, pprof_bytes, write_pprof
from .stacks import StackProfile, StackSample, growth, live_memory

__all__ = [
    "FOLDED_VALUES",
    "StackProfile",
    "StackSample",
    "encode_pprof",
    "folded_lines",
    "growth",
    "live_memory",
    "pprof_bytes",
    "write_folded",
    "write_pprof",
]
