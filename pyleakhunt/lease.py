"""The one owner of the process-wide tracer: leases.

Whoever needs tracing (the watcher, the web attribution, always-on
production tracing, ``pyleakhunt run``, the leak check) takes a lease with
its settings, and releases it when done::

    lease = pyleakhunt.lease.acquire(10, owner="watcher")
    ...
    lease.release()

The rules, decided here and nowhere else:

- **The first lease starts the tracer** with its settings, when tracing is
  off.  If it is on already (started by hand with `pyleakhunt.start`, or by
  another lease), the lease shares the running tracer.
- **Frames: the deepest wins.**  While a lease is held, the traceback limit
  is at least its *nframe*; when it is released, the limit goes back to the
  deepest of what is left (the leases still held and the limit the tracer
  had when the first lease came).  A lease never makes tracebacks shallower
  for anyone else.
- **Sampling: one rate per run.**  The rate is fixed when the tracer
  starts.  A lease that names another rate than the running one gets a
  ValueError; a lease that names none (``sample_bytes=None``) takes the
  running rate, exact or sampled.
- **Depth counting** (``total_nframe``) is on while any lease asks for it.
- **Fresh objects** (3.10 to 3.12: the free lists kept empty) are on while
  any lease asks for them, or while a tracer started by hand runs that had
  them on (`pyleakhunt.start`'s default for exact tracing).
- **The last release stops the tracer**, if a lease started it.  A tracer
  started by hand is never stopped by a lease: its limit is put back.
  If someone stopped the tracer meanwhile, releasing does nothing more.

A forked child inherits the leases of its parent (their owners, such as
production tracing, release them there as usual); only the lock is new.
"""

from __future__ import annotations

import gc
import os
import threading
from typing import List, Optional, Union

import pyleakhunt

from . import _core

__all__ = ["Lease", "acquire", "held"]


class Lease:
    """One user's hold on the tracer; `release` it exactly once (extra
    calls do nothing).  Usable as a context manager."""

    __slots__ = (
        "nframe",
        "owner",
        "sample_bytes",
        "total_nframe",
        "fresh_objects",
        "_held",
    )

    def __init__(
        self,
        owner: str,
        nframe: int,
        sample_bytes: Optional[int],
        total_nframe: bool,
        fresh_objects: bool = False,
    ) -> None:
        self.owner = owner
        self.nframe = nframe
        self.sample_bytes = sample_bytes
        self.total_nframe = total_nframe
        self.fresh_objects = fresh_objects
        self._held = True

    @property
    def active(self) -> bool:
        """Whether the lease is still held."""
        return self._held

    def release(self) -> None:
        """Give the tracer back (see the module's rules)."""
        _release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self._held else "released"
        return f"<Lease {self.owner!r} nframe={self.nframe} {state}>"


class _Table:
    """The leases held and what the tracer was before the first one."""

    lock = threading.Lock()
    leases: List[Lease] = []
    #: Whether a lease started the tracer (else it was on by hand).
    started: bool = False
    #: The traceback limit the tracer had when the first lease came.
    base_limit: int = 1
    #: Its depth counting (a tracer started by hand: assumed on, the
    #: default of `pyleakhunt.start`), and that of now.
    base_total: bool = True
    total: bool = True
    #: Whether a tracer started by hand kept objects fresh
    #: (`pyleakhunt.start`'s *fresh_objects*).
    base_fresh: bool = False


def _sample_rate(sample_bytes: Union[int, str, None]) -> Optional[int]:
    if sample_bytes is None:
        return None
    from .units import parse_size

    return parse_size(sample_bytes)


def acquire(
    nframe: int = 1,
    *,
    sample_bytes: Union[int, str, None] = None,
    total_nframe: bool = True,
    owner: str = "",
    empty_free_lists: bool = False,
    fresh_objects: bool = False,
) -> Lease:
    """Take a lease on the tracer, starting it if it is off.

    With *empty_free_lists*, a lease that starts the tracer then runs one
    full collection, which empties CPython's free lists: an object made in
    a block that waited there since before tracing began is never traced
    (3.13+'s reference tracer moves traced blocks only), so a program could
    keep thousands of small dicts, lists, tuples or floats unseen.  The
    leak check leaves it off: it empties them around every call itself.

    With *fresh_objects*, on 3.10 to 3.12 the free lists of dicts, lists,
    tuples and floats are kept empty while the lease is held, so that each
    such object is allocated, and traced, at the line that makes it (from
    3.13 the reference tracer sees their reuse, and only the free list of
    dicts' key tables, which are no objects, is turned off).  It costs an
    allocation for each of these objects.  On 3.10 the dead frame each
    code object keeps goes to the free list of frames, which a full
    collection empties.

    Raises ValueError when *sample_bytes* names another rate than the
    running tracer's, and what `pyleakhunt.start` raises for bad settings.
    """
    rate = _sample_rate(sample_bytes)
    lease = Lease(owner, nframe, rate, bool(total_nframe), bool(fresh_objects))
    with _Table.lock:
        started = False
        if not _Table.leases or not pyleakhunt.is_tracing():
            started = _first(lease)
        else:
            _join(lease)
        _Table.leases.append(lease)
        _keep_free_lists()
    if started and empty_free_lists:
        gc.collect()  # outside the lock: a finalizer may take a lease
    return lease


def _first(lease: Lease) -> bool:
    """The first lease (or the first since someone stopped the tracer).

    Returns whether it started the tracer.
    """
    _Table.leases.clear()  # those of a tracer stopped by hand meanwhile
    if pyleakhunt.is_tracing():
        _Table.started = False
        _Table.base_limit = pyleakhunt.get_traceback_limit()
        _Table.base_total = _Table.total = True
        _Table.base_fresh = _core.free_lists_kept_empty()
        _join(lease)
        return False
    pyleakhunt.start(
        lease.nframe,
        sample_bytes=lease.sample_bytes,
        total_nframe=lease.total_nframe,
        fresh_objects=False,  # as the leases ask: _keep_free_lists()
    )
    _Table.started = True
    _Table.base_fresh = False
    _Table.base_limit = lease.nframe
    _Table.base_total = _Table.total = lease.total_nframe
    return True


def _join(lease: Lease) -> None:
    """A lease on a running tracer: check the rate, deepen if asked."""
    running = pyleakhunt.get_stats()["sample_bytes"]
    if lease.sample_bytes is not None and lease.sample_bytes != running:
        raise ValueError(
            "already tracing with sample_bytes=%d; stop() before changing "
            "the sampling rate (asked: %d)" % (running, lease.sample_bytes)
        )
    limit = max(pyleakhunt.get_traceback_limit(), lease.nframe)
    _set(limit, running, _Table.total or lease.total_nframe)


def _set(limit: int, rate: int, total: bool) -> None:
    """Change the running tracer's limit and depth counting, if they differ."""
    if limit != pyleakhunt.get_traceback_limit() or total != _Table.total:
        # (fresh_objects=None: the free lists stay as they are)
        pyleakhunt.start(limit, sample_bytes=rate or None, total_nframe=total)
        _Table.total = total


def _keep_free_lists() -> None:
    """Keep the free lists empty while a held lease asks (fresh_objects),
    or while a tracer started by hand with them kept empty runs."""
    asked = any(h.fresh_objects for h in _Table.leases)
    by_hand = not _Table.started and _Table.base_fresh
    want = pyleakhunt.is_tracing() and (asked or by_hand)
    if want != _core.free_lists_kept_empty():
        _core.keep_free_lists_empty(want)


def _release(lease: Lease) -> None:
    with _Table.lock:
        if not lease._held:
            return
        lease._held = False
        if lease in _Table.leases:
            _Table.leases.remove(lease)
        try:
            _give_back()
        finally:
            _keep_free_lists()


def _give_back() -> None:
    """The tracer as the leases left ask (or stopped, after the last)."""
    if not pyleakhunt.is_tracing():
        return  # stopped by hand meanwhile: nothing to give back
    if not _Table.leases:
        if _Table.started:
            pyleakhunt.stop()
            return
    rest = _Table.leases
    # A lease-started tracer is what the leases left ask; one started by
    # hand goes back to how it was found.
    base = _Table.leases == [] or not _Table.started
    limit = max([_Table.base_limit] * base + [h.nframe for h in rest])
    total = (base and _Table.base_total) or any(h.total_nframe for h in rest)
    _set(limit, pyleakhunt.get_stats()["sample_bytes"], total)


def held() -> List[Lease]:
    """The leases held now, oldest first (a copy)."""
    with _Table.lock:
        return list(_Table.leases)


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork.
    _Table.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
