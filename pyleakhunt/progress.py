"""One line of progress on a terminal: the one printer behind every command.

Long work (reading a big timeline, writing a report, a census of a core,
``attach --watch``) shows what it does on stderr, on one line redrawn in
place, and only where a person reads it: nothing when stderr is a pipe or
a file (a log gets no carriage returns), nothing in the first *delay*
seconds (a short command stays quiet), and at most one redraw every
*every* seconds.  A terminal that went away mid-command makes the line
quiet, never the command fail.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional

__all__ = ["StatusLine", "is_terminal"]

#: Carriage return, then erase to the end of the line.
_ERASE = "\r\x1b[K"


def is_terminal(stream: Any) -> bool:
    """Is *stream* a terminal?  (False for anything that cannot say.)"""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class StatusLine:
    """A status line on *stream* (stderr by default).

    *enabled* None means: when *stream* is a terminal.  `update` redraws
    the line, `finish` leaves a last line or erases it.
    """

    def __init__(
        self,
        stream: Any = None,
        delay: float = 2.0,
        every: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        enabled: Optional[bool] = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.every = every
        self.clock = clock
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self.started = clock()
        #: Whether a line is on the screen (to end or erase).
        self.shown = False
        self._last = 0.0
        self._broken = False

    def update(self, text: str, force: bool = False) -> None:
        """Show *text*, once *delay* has passed, and at most once every
        *every* seconds unless *force* (a new phase shows at once)."""
        now = self.clock()
        if not self.enabled or now - self.started < self.delay:
            return
        if self.shown and not force and now - self._last < self.every:
            return
        self._last = now
        self._write("\r%s\x1b[K" % text)

    def finish(self, text: Optional[str] = None) -> None:
        """End the line, if one is shown: leave *text* as its last words,
        or erase it when *text* is None."""
        if not self.shown:
            return
        self._write(_ERASE + text + "\n" if text is not None else _ERASE)
        self.shown = False

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self._broken = True  # the terminal went away: stay quiet
            return
        self.shown = True
