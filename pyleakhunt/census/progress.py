"""Progress of a long census, on a terminal.

A census of a big core takes a while (reading it, counting, then the
paths and holders).  On a terminal, once it has run for :data:`DELAY`
seconds, one status line on stderr says what it is doing and for how
long; it is erased when the census ends.  When stderr is not a terminal
(a pipe, a file, a test), nothing is written.

The steps say what they start with :func:`phase`; it does nothing unless
a :class:`Progress` is active (the command line makes one).  A phase can
be one long call into C, so a thread of its own keeps the elapsed time
moving; the line itself is `pyleakhunt.progress.StatusLine`.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TextIO

from ..progress import StatusLine, is_terminal

#: Seconds before the status line appears.
DELAY = 2.0
#: Seconds between updates of the elapsed time.
INTERVAL = 0.5

_active: Optional[Progress] = None


def phase(text: str) -> None:
    """Says that the census now does *text* ("counting objects")."""
    current = _active
    if current is not None:
        current.set_phase(text)


class Progress:
    """The status line of one command, as a context manager.

    *stream* is where it goes (stderr); it is used only if it is a
    terminal.  The line is written when a phase starts and every
    *interval* seconds, once *delay* seconds have passed.
    """

    def __init__(
        self,
        stream: TextIO,
        delay: float = DELAY,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self.enabled = is_terminal(stream)
        self._phase = ""
        self._line: Optional[StatusLine] = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> Progress:
        global _active
        if self.enabled:
            self._line = StatusLine(self.stream, self.delay, 0.0, self.clock, True)
            _active = self
            self._thread = threading.Thread(
                target=self._tick, name="census-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _active
        if not self.enabled:
            return
        _active = None
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._line is not None:
                self._line.finish()

    def set_phase(self, text: str) -> None:
        """Starts phase *text*; shows it at once if past the delay."""
        with self._lock:
            self._phase = text
            self._show()

    def _tick(self) -> None:
        while not self._done.wait(self.interval):
            with self._lock:
                self._show()

    def _show(self) -> None:
        if self._line is None or not self._phase:
            return
        elapsed = self.clock() - self._line.started
        self._line.update(
            f"pyleakhunt: census: {self._phase}... {elapsed:.0f} s", force=True
        )
