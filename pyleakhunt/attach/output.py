"""What ``pyleakhunt attach`` prints: notes and errors on stderr, the
progress line, and the lines that describe a result."""

from __future__ import annotations

import sys
import time
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Optional,
)

from ..progress import StatusLine
from ..units import format_size
from .base import Request


def note(message: str) -> None:
    """Print *message* on stderr, as what the command is doing (--verbose)."""
    sys.stderr.write("pyleakhunt: %s\n" % message)
    sys.stderr.flush()


class Progress:
    """One line of progress on stderr for long waits, only on a terminal.

    Nothing is shown in the first `delay` seconds (a short command stays
    quiet) nor when stderr is not a terminal (a log or a pipe gets no
    carriage returns); `close` erases the line.
    """

    def __init__(
        self,
        text: Callable[[], str],
        stream: Optional[Any] = None,
        delay: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.text = text
        self.line = StatusLine(stream, delay, every=0.25, clock=monotonic)

    def update(self) -> None:
        """Redraw the line, at most 4 times a second, once `delay` is over."""
        if self.line.enabled:
            self.line.update("pyleakhunt: " + self.text())

    def close(self) -> None:
        """Erase the line, if one was shown."""
        self.line.finish()


# --------------------------------------------------------------------------
# Output


def describe(request: Request, result: Dict[str, Any]) -> List[str]:
    """The lines printed for a successful *result*."""
    pid = result.get("pid", request.pid)
    where = "PID %d (Python %s)" % (pid, result.get("python", "?"))
    lines = []
    if request.command == "start":
        if result.get("was_tracing"):
            lines.append(
                "%s was already tracing; traceback limit now %d frames"
                % (where, result.get("nframe", request.nframe))
            )
        else:
            sampling = ""
            if result.get("sample_bytes"):
                sampling = ", sampling every %s" % format_size(result["sample_bytes"])
            lines.append(
                "%s is tracing, %d frames per traceback%s"
                % (where, result.get("nframe", request.nframe), sampling)
            )
        lines.append(
            "next: pyleakhunt attach %d --snapshot FILE; stop with "
            "pyleakhunt attach %d --detach" % (pid, pid)
        )
    elif request.command == "snapshot":
        kind = "an aggregated" if result.get("aggregated") else "a full"
        lines.append(
            "%s wrote %s snapshot to %s: %s in %d blocks at %d call sites "
            "(file %s, %.2f s)"
            % (
                where,
                kind,
                result.get("path"),
                format_size(result.get("snapshot_bytes", 0)),
                result.get("snapshot_blocks", 0),
                result.get("sites", 0),
                format_size(result.get("file_bytes", 0)),
                result.get("seconds", 0.0),
            )
        )
        lines.append("see: pyleakhunt top %s" % result.get("path"))
    elif request.command == "watch":
        state = "recorded" if result.get("watch_finished") else "is recording"
        lines.append(
            "%s %s a timeline in %s: a sample every %g s for %g s"
            % (where, state, result.get("path"), request.interval, request.duration)
        )
        lines.append("then: pyleakhunt suspects %s" % result.get("path"))
    elif request.command == "detach":
        if result.get("tracing"):
            # attach gave back its lease; the program still uses the tracer.
            owners = ", ".join(result.get("kept_by") or [])
            why = "held by " + owners if owners else "started by the program itself"
            lines.append(
                "%s detached; tracing goes on (%s), %d frames per traceback"
                % (where, why, result.get("nframe", 0))
            )
        elif result.get("was_tracing"):
            lines.append("%s stopped tracing; its allocators are restored" % where)
        else:
            lines.append("%s was not tracing; nothing to stop" % where)
    else:
        if result.get("tracing"):
            lines.append(
                "%s is tracing, %d frames per traceback: %s traced now, %s at "
                "most; the tracer uses %s"
                % (
                    where,
                    result.get("nframe", 0),
                    format_size(result.get("traced_bytes", 0)),
                    format_size(result.get("traced_peak", 0)),
                    format_size(result.get("tracer_memory", 0)),
                )
            )
        else:
            lines.append("%s is not tracing" % where)
        if result.get("watches"):
            lines.append("%d timeline watch(es) running" % result["watches"])
    origin = result.get("pyleakhunt_source")
    if request.verbose and origin:
        lines.append(
            "pyleakhunt %s from %s (%s), via %s"
            % (
                result.get("pyleakhunt_version"),
                result.get("pyleakhunt_file"),
                "the target's own" if origin == "target" else "this installation",
                result.get("method"),
            )
        )
    return lines
