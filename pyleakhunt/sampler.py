"""One background thread per process for everything that samples on a timer.

The watcher (`pyleakhunt.watcher.LeakWatcher`) and the web attribution
(`pyleakhunt.web.attribution.Attribution`) both take a snapshot every few
seconds.  Rather than a thread each, they register a callback here::

    registration = pyleakhunt.sampler.register("watcher", sample, 1.0)
    ...
    registration.cancel()

The rules, decided here and nowhere else:

- **One daemon thread** runs every callback, each at its own *interval*:
  it sleeps until the nearest one is due.  A callback is next due
  *interval* seconds after its call was due, so that the time a call
  takes does not stretch the spacing (behind a busy main thread, every
  time a call gives up the GIL costs it up to the switch interval); but
  never before the call returned and the thread has waited as long as
  the call computed (up to *interval*): a slow snapshot never makes calls
  pile up, and the program keeps at least as much time as the sampling
  takes.  Callbacks run one at a time: a slow one delays the others,
  never overlaps them.
- **The thread starts with the first registration and stops when the last
  one is cancelled**; `Registration.cancel` returns once the thread has
  left (unless called from a callback, see below).
- **Errors stay with their client.**  A callback that raises is called
  again at its next interval, and the others are not disturbed; a client
  keeps its own errors (the watcher in ``.error``, the attribution in its
  report).  A callback that returns False is cancelled.
- **`cancel` waits for a running call** of its callback, so that after it
  the client can close what the callback writes to.  Called from a
  callback (its own or another's), it cannot wait for the thread it runs
  on: it only takes the callback off, and the thread leaves when that
  call returns if nothing else is registered.
- **A starved sampler gets the GIL from the main thread.**  Behind an
  asyncio loop of many small tasks the thread may wait seconds for the
  GIL: the loop gives it up around every ``select()`` and takes it back
  at once.  So the thread says when it next needs the GIL (when a call
  is due, or right after one for its own bookkeeping), and if it has not
  come back *GRACE* after that, the main thread gives the GIL up until it
  does, for at most the call's interval (at least 50 ms, at most 1 s):
  see ``src/gil_handoff.h``.
- **A forked child has no thread and no registrations**: the parent's
  thread did not survive the fork, and a client decides for itself
  whether it samples in the child by registering again (the attribution
  on its first request, production tracing with a new watcher; a
  parent's LeakWatcher stays quiet in a child, as its own thread did).

The thread is named for its clients (``pyleakhunt-watcher``,
``pyleakhunt-attribution``, or ``pyleakhunt-watcher+attribution`` while it
serves both), so that a thread listing shows who is sampling.
"""

from __future__ import annotations

import atexit
import contextvars
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import _core

__all__ = ["Registration", "register", "registrations"]

#: Seconds after a call was due before the main thread is asked to give
#: the GIL up for it: a thread that is not starved has it by then.
GRACE = 0.02


class Registration:
    """One client's callback and interval; `cancel` it when done (extra
    calls, and calls in a forked child, do nothing)."""

    __slots__ = ("name", "callback", "interval", "_due", "_running_on")

    def __init__(
        self, name: str, callback: Callable[[], Any], interval: float, due: float
    ) -> None:
        self.name = name
        self.callback = callback
        self.interval = interval
        #: time.monotonic() at which the callback is next due.
        self._due = due
        #: The thread running the callback now, if one is.
        self._running_on: Optional[threading.Thread] = None

    @property
    def active(self) -> bool:
        """Whether the callback is still registered."""
        with _State.condition:
            return self in _State.registrations

    def cancel(self) -> None:
        """Call the callback no more (see the module's rules)."""
        _cancel(self)

    def __repr__(self) -> str:
        return f"<Registration {self.name!r} every {self.interval}s>"


class _State:
    """The registrations and the thread that serves them."""

    #: Guards everything below.  The thread holds it only between calls,
    #: never while a callback runs: a callback may register or cancel.
    condition = threading.Condition(threading.Lock())
    registrations: List[Registration] = []
    #: The serving thread; None when there is none, or when the one still
    #: running has been told to leave (it checks this before each call).
    thread: Optional[threading.Thread] = None


def register(
    name: str,
    callback: Callable[[], Any],
    interval: float,
    *,
    delay: Optional[float] = None,
) -> Registration:
    """Call *callback* every *interval* seconds on the sampling thread.

    The first call comes after *delay* seconds (default: *interval*; 0 for
    at once).  *name* says who the client is, in the thread's name.
    """
    if not 0 < interval < math.inf:
        raise ValueError(f"interval must be a finite number > 0, not {interval!r}")
    first = interval if delay is None else delay
    with _State.condition:
        registration = Registration(name, callback, interval, time.monotonic() + first)
        _State.registrations.append(registration)
        if _State.thread is None:
            _State.thread = _new_thread()
            # A new thread needs the GIL to start: a busy main thread would
            # keep it waiting as it does a sample (see _serve).
            _arm_handoff(GRACE, registration)
            _State.thread.start()
        else:
            _State.thread.name = _thread_name()
        _State.condition.notify_all()  # it may be due before the others
    return registration


def registrations() -> List[Registration]:
    """The registrations of this process, oldest first (a copy)."""
    with _State.condition:
        return list(_State.registrations)


def _thread_name() -> str:
    names: Dict[str, None] = dict.fromkeys(r.name for r in _State.registrations)
    return "pyleakhunt-" + "+".join(names)


def _new_thread() -> threading.Thread:
    options: Dict[str, Any] = {}
    if sys.version_info >= (3, 14):
        # Python 3.14 can have a thread inherit its starter's context
        # (-X thread_inherit_context): the starter may be serving a request,
        # and the callbacks' own memory must carry no endpoint's tag.
        options["context"] = contextvars.Context()
    return threading.Thread(target=_serve, name=_thread_name(), daemon=True, **options)


def _cancel(registration: Registration) -> None:
    me = threading.current_thread()
    with _State.condition:
        # Let a running call finish first, unless it runs on this very
        # thread (waiting for ourselves would never end) or on a parent's
        # thread that a fork left behind (it will never finish).
        while (
            registration._running_on not in (None, me)
            and registration._running_on.is_alive()
        ):
            _State.condition.wait()
        leaving = _remove(registration)
    if leaving is not None and leaving is not me:
        # Outside the lock: the thread takes it once more on its way out.
        leaving.join()


def _remove(registration: Registration) -> Optional[threading.Thread]:
    """Take *registration* off; return the thread if it must now leave.

    Called with the condition held.
    """
    if registration not in _State.registrations:
        return None  # cancelled already, or registered before a fork
    _State.registrations.remove(registration)
    thread = _State.thread
    if thread is None:
        return None
    if _State.registrations:
        thread.name = _thread_name()
        return None
    _State.thread = None
    _State.condition.notify_all()
    return thread


def _serve() -> None:
    # The thread is the tracer's: nothing it allocates is recorded, between
    # callbacks as in them.  A dict it made and threw away (a call's
    # keyword arguments) was reused from CPython's free list by the
    # program's next small dict, whose line then read pyleakhunt/sampler.py.
    _core.pause_thread(True)
    me = threading.current_thread()
    condition = _State.condition
    try:
        with condition:
            while _State.thread is me:
                registration = min(_State.registrations, key=lambda r: r._due)
                wait = registration._due - time.monotonic()
                if wait > 0:
                    _arm_handoff(wait + GRACE, registration)
                    # Woken early by a registration, a cancel or a stop.
                    # (A lock's wait has a longest timeout: a call due in
                    # years is waited for in steps.)
                    condition.wait(min(wait, threading.TIMEOUT_MAX))
                    continue
                registration._running_on = me
                condition.release()
                computing = time.thread_time()
                lengths = _core.free_list_lengths()
                try:
                    keep = _call(registration)
                finally:
                    _core.trim_free_lists(lengths)
                    # A parked main thread goes on; this thread still needs
                    # the GIL for a moment, until it arms before sleeping.
                    _arm_handoff(GRACE, registration)
                    condition.acquire()
                    registration._running_on = None
                    condition.notify_all()  # a cancel may wait for this call
                registration._due = _next_due(
                    registration._due,
                    registration.interval,
                    time.monotonic(),
                    time.thread_time() - computing,
                )
                if not keep:
                    _remove(registration)
    finally:
        # The C thread that watches for an overdue call leaves with this
        # one: a thread left over would make os.fork() warn (3.12+).
        _core.gil_handoff_stop()
        # Normally already so; but if a callback raised SystemExit, say,
        # the next registration must start a new thread.
        with condition:
            if _State.thread is me:
                _State.thread = None


def _next_due(due: float, interval: float, ended: float, computed: float) -> float:
    """When a callback that was *due*, and whose call returned at *ended*
    (`time.monotonic` times) after computing for *computed* seconds of
    the thread's CPU time, is next due.

    On the clock of its dues, not of its returns: behind a busy main
    thread a call starts late and runs slow (each time it gives up the
    GIL, to write a file or to wait, getting it back costs up to the
    switch interval, 5 ms by default, while the program runs), and
    *interval* after each return put the samples of ``run --interval
    0.25`` 0.31 to 0.39 s apart.  But never before the call returned and
    the program has had as much time as the call computed (up to
    *interval*): the thread holds the GIL at most half of the time, and a
    call that came late (another callback ran long) or ran past its next
    due is followed by one call, not by the calls it missed.  What the
    call spent waiting for the GIL or for the disk is not counted: the
    program ran meanwhile.
    """
    return max(due + interval, ended + min(interval, computed))


def _arm_handoff(delay: float, registration: Registration) -> None:
    """Arm the hand-off of the GIL (see the module's rules) for *delay*
    seconds, the main thread to wait for at most *registration*'s
    interval, within 50 ms and 1 s (a call that takes longer, behind a
    lock the program holds or with a huge snapshot, finishes sharing the
    GIL).  Best effort: when its thread cannot start, the sampler waits
    for the GIL as it always did."""
    park_limit = min(1.0, max(0.05, registration.interval))
    try:
        _core.gil_handoff_arm(min(delay, 1e9), park_limit)
    except OSError:
        pass


def _call(registration: Registration) -> bool:
    """Run one callback; whether it stays registered."""
    try:
        return registration.callback() is not False
    except Exception:  # the client's own error: the others go on
        return True


def _after_fork_in_child() -> None:
    # The thread did not survive the fork, and another thread of the parent
    # may have held the lock.  Handlers run in the order they were
    # registered, and a module can only call register() from its own fork
    # handler after importing this one, whose handler is then already in
    # place: production's, which starts a new watcher in the child, runs
    # after this one.
    _State.condition = threading.Condition(threading.Lock())
    _State.registrations = []
    _State.thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# While Python shuts down, the main thread must not be asked to wait for a
# daemon thread that may never run again.
atexit.register(_core.gil_handoff_shutdown)
