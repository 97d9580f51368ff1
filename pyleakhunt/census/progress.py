"""Progress of a long census, on a terminal.

A census of a big core takes a while (reading it, counting, then the
paths and holders).  On a terminal, once it has run for :data:`DELAY`
seconds, one status line on stderr says what it is doing and for how
long; it is erased when the census ends.  When stderr is not a terminal
(a pipe, a file, a test), nothing is written.

The steps say what they start with :func:`phase`; it does nothing unless
a :class:`Progress` is active (the command line makes one).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TextIO

#: Seconds before the status line appears.
DELAY = 2.0
#: Seconds between updates of the elapsed time.
INTERVAL = 0.5

_ERASE = "\r\x1b[K"

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
        self.enabled = _is_terminal(stream)
        self._phase = ""
        self._started = 0.0
        self._shown = False
        self._broken = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> Progress:
        global _active
        if self.enabled:
            self._started = self.clock()
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
            if self._shown:
                self._write(_ERASE)

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
        elapsed = self.clock() - self._started
        if not self._phase or elapsed < self.delay:
            return
        self._write(f"{_ERASE}pyleakhunt: census: {self._phase}... {elapsed:.0f} s")
        self._shown = True

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self._broken = True  # the terminal went away: stay quiet


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
