"""Folded-stacks export, for flamegraph.pl, inferno and speedscope.

One line per stack: the frames from the root (the oldest call) to the leaf
(where the memory was allocated), separated by ``;``, then a space and the
value::

    app.<module> (app.py:40);app.main (app.py:31);app.load (app.py:12) 1048576

A frame reads ``function (file:line)``, as py-spy writes it; the function
is resolved as in the pprof export (`pyleakhunt.export.names`), and the file
is shortened to its path inside site-packages or the standard library.  The
value is bytes by default, or blocks with ``value="count"``.  Identical
stacks are merged (their values added); lines come in decreasing value.
"""

from __future__ import annotations

import os
from typing import IO, Dict, List, Union

from ..snapshot import Snapshot
from .names import FrameNamer
from .stacks import StackProfile, as_profile

__all__ = ["FOLDED_VALUES", "folded_lines", "write_folded"]

#: What the value of a folded line can be.
FOLDED_VALUES = ("bytes", "count")


def _clean(text: str) -> str:
    """A frame label safe in a folded line: no ``;`` and no line breaks."""
    return text.replace(";", ":").replace("\n", " ").replace("\r", " ")


def folded_lines(
    source: Union[Snapshot, StackProfile], value: str = "bytes"
) -> List[str]:
    """The folded-stack lines of *source* (no line ends), biggest first.

    *source* is a snapshot (its live memory) or a `StackProfile`; *value* is
    ``"bytes"`` or ``"count"``.  Stacks whose value is 0 are left out.
    """
    if value not in FOLDED_VALUES:
        raise ValueError(
            "value must be one of %s, not %r" % (", ".join(FOLDED_VALUES), value)
        )
    profile = as_profile(source)
    namer = FrameNamer()
    labels: Dict[tuple, str] = {}
    totals: Dict[str, int] = {}
    for sample in profile.samples:
        amount = sample.size if value == "bytes" else sample.count
        if amount <= 0:
            continue
        parts = []
        for frame in reversed(sample.frames or (("<unknown>", 0),)):
            label = labels.get(frame)
            if label is None:
                name = namer.name(*frame)
                label = labels[frame] = _clean(
                    "%s (%s:%d)" % (name.function, name.short_filename, frame[1])
                )
            parts.append(label)
        stack = ";".join(parts)
        totals[stack] = totals.get(stack, 0) + amount
    ordered = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return ["%s %d" % (stack, amount) for stack, amount in ordered]


def write_folded(
    source: Union[Snapshot, StackProfile],
    dest: Union[str, os.PathLike[str], IO[str]],
    value: str = "bytes",
) -> None:
    """Write the folded stacks of *source* to *dest* (a path, or a text
    file object, left open); *value* as in `folded_lines`."""
    text = "".join(line + "\n" for line in folded_lines(source, value))
    if isinstance(dest, (str, os.PathLike)):
        with open(dest, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
    else:
        dest.write(text)
