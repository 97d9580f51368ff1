"""The code ``pyleakhunt attach`` runs inside the target process.

Its source is sent to the target, not imported there: `pyleakhunt.attach`
(`session.bootstrap_program`) queues a few lines that call `main` with the
path of a request file.  They find this code in a module of the target's
``sys.modules`` named after a hash of this source; the first command
compiles it into that module, ``--detach`` removes it.  The target's
``__main__`` gains no names.

Those lines run on the target's main thread with the GIL held, at a point
where the interpreter is between two bytecodes: a pending call queued by
gdb (``Py_AddPendingCall``) on Python 3.10 to 3.13, ``sys.remote_exec`` on
3.14 and later.  That is where Python runs signal handlers, so anything a
signal handler may do, this code may do.

Rules this file keeps, and why:

- Standard library only, and imports inside functions: the target may not
  have pyleakhunt at all until `_import_pyleakhunt` finds it.
- Python 3.10 syntax: the target may be any supported version.
- Never raise, never print: an exception escaping the stub would be printed
  on the target's stderr by ``PyRun_SimpleString`` (and a ``SystemExit``
  would end the target).  Every outcome goes to the result file instead.
- Do nothing in a child that inherited the queued call from a fork.
- Do nothing unless the client still wants it.  A pending call cannot be
  withdrawn: if the main thread is kept from running Python (another thread
  holds the GIL in a long C call), the client gives up, but the call stays
  queued and may run much later.  So the client creates a token file, and
  this code first claims it with an atomic ``rename``; the client gives up
  by deleting it (then its whole directory).  Exactly one of the two wins.
  A wall-clock deadline covers a client that died without deleting it.
- Never let a thread of ours print: the timer of ``--watch`` catches
  everything too.
"""

import os
import sys
import time

#: The attribute of the pyleakhunt module where attach keeps its state
#: between commands (its lease on the tracer, the watches it started,
#: whether it started tracing).
STATE_ATTRIBUTE = "_attach_state"


class Refused(Exception):
    """The target cannot be worked on at all (no usable pyleakhunt, exiting)."""


class Failed(Exception):
    """The command cannot be done as asked (not tracing, no sampling...)."""


def main(request, page=None):
    """Run *request* and report.

    *request* is the dict built by `pyleakhunt.attach`, or the path of the
    JSON file that holds it (what the queued program passes: a path keeps
    that program, and the syntax tree Python keeps while it runs, small).
    A file that is gone means the client gave up.  *page* is ``(address,
    size)`` of the memory gdb mapped for the program, to release, or None.
    """
    try:
        if isinstance(request, str):
            import json

            try:
                with open(request, encoding="utf-8") as f:
                    request = json.load(f)
            except (OSError, ValueError):
                return  # withdrawn: the client deleted its directory
        if os.getpid() != request["pid"]:
            return  # a child forked while the request was queued
        if time.time() > request["deadline"]:
            return  # the client has given up, or died
        try:
            os.rename(request["token"], request["claimed"])
        except OSError:
            return  # the client gave up first: do nothing at all
        try:
            result = dict(_run(request), ok=True)
        except Refused as exc:
            result = {"ok": False, "kind": "refused", "message": str(exc)}
        except Failed as exc:
            result = {"ok": False, "kind": "error", "message": str(exc)}
        except KeyboardInterrupt:
            # A Ctrl-C meant for the program arrived while we ran: give it
            # back to the main thread instead of swallowing it.
            result = {"ok": False, "kind": "error", "message": "interrupted"}
            _interrupt_main()
        except BaseException as exc:  # noqa: B036 (SystemExit must not escape)
            result = {"ok": False, "kind": "error", "message": _describe(exc)}
        result.update(_identity())
        _write_json(request["result"], result)
    except BaseException:  # noqa: B036, S110 (never disturb the target)
        pass
    finally:
        _unmap(page)


def _run(request):
    if getattr(sys, "is_finalizing", lambda: False)():
        raise Refused("the process is shutting down")
    pyleakhunt, source = _import_pyleakhunt(request.get("fallback_path"))
    command = request["command"]
    if command == "start":
        result = _start(pyleakhunt, request)
    elif command == "snapshot":
        result = _snapshot(pyleakhunt, request)
    elif command == "watch":
        result = _watch(pyleakhunt, request)
    elif command == "detach":
        result = _detach(pyleakhunt)
    elif command == "status":
        result = {}
    else:
        raise Failed("unknown command %r" % (command,))
    result.update(_status(pyleakhunt))
    result["pyleakhunt_source"] = source
    return result


# --------------------------------------------------------------------------
# Finding pyleakhunt in the target


def _import_pyleakhunt(fallback_path):
    """The pyleakhunt module, and ``"target"`` or ``"fallback"``.

    The target's own pyleakhunt wins.  Failing that, the client's copy in
    *fallback_path* is used if it has an extension module this interpreter
    can load; the path is on ``sys.path`` only during the import, so the
    program's own imports never see it.
    """
    try:
        import pyleakhunt

        return pyleakhunt, "target"
    except ImportError as exc:
        own_error = exc
    _forget_partial_import()
    version = "%d.%d" % sys.version_info[:2]
    if not fallback_path:
        raise Refused(
            "pyleakhunt is not importable in the target (Python %s: %s); "
            "install pyleakhunt in the target's environment" % (version, own_error)
        )
    import importlib.machinery

    package = os.path.join(fallback_path, "pyleakhunt")
    loadable = [
        suffix
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if os.path.exists(os.path.join(package, "_core" + suffix))
    ]
    if not loadable:
        raise Refused(
            "pyleakhunt is not importable in the target (Python %s), and the "
            "attaching installation (%s) has no extension built for Python %s; "
            "install pyleakhunt in the target's environment"
            % (version, fallback_path, version)
        )
    sys.path.append(fallback_path)
    try:
        import pyleakhunt
    except ImportError as exc:
        _forget_partial_import()
        raise Refused(
            "pyleakhunt is not importable in the target (Python %s), even "
            "from %s: %s" % (version, fallback_path, exc)
        ) from None
    finally:
        while fallback_path in sys.path:
            sys.path.remove(fallback_path)
    return pyleakhunt, "fallback"


def _forget_partial_import():
    """Drop what a failed ``import pyleakhunt`` left in ``sys.modules``."""
    for name in list(sys.modules):
        if name == "pyleakhunt" or name.startswith("pyleakhunt."):
            del sys.modules[name]


# --------------------------------------------------------------------------
# The commands


def _state(pyleakhunt):
    state = getattr(pyleakhunt, STATE_ATTRIBUTE, None)
    if state is None:
        state = {"started_tracing": False, "watches": []}
        setattr(pyleakhunt, STATE_ATTRIBUTE, state)
    if "lock" not in state:
        import threading

        # A watch's timer thread and a --detach on the main thread may stop
        # the same watch at once.
        state["lock"] = threading.Lock()
    return state


# The tracer is held through leases (`pyleakhunt.lease`), like every other
# user of it in the target: attach's start holds one (owner "attach"), each
# watch another.  So a detach or the end of a watch stops the tracer only if
# a lease started it and no other user (the program's own `start`, its
# production tracing, another watch) still needs it.


def _leases(pyleakhunt):
    """The target's `pyleakhunt.lease`, or None if its pyleakhunt predates it."""
    try:
        return __import__(pyleakhunt.__name__ + ".lease", fromlist=["acquire"])
    except ImportError:
        return None


def _acquire(pyleakhunt, request, owner, sample_bytes):
    """A lease on the tracer with the request's frames and *sample_bytes*."""
    leases = _leases(pyleakhunt)
    try:
        if leases is None:
            return _DirectLease(pyleakhunt, request["nframe"], sample_bytes)
        return leases.acquire(request["nframe"], sample_bytes=sample_bytes, owner=owner)
    except (NotImplementedError, TypeError, ValueError) as exc:
        if sample_bytes is None:
            raise
        if pyleakhunt.is_tracing():
            problem = "the target already traces at another sampling rate"
        else:
            problem = "the target's pyleakhunt cannot sample"
        raise Failed(
            "%s (--sample %s): %s" % (problem, sample_bytes, _describe(exc))
        ) from None


class _DirectLease:
    """A lease for a target whose own pyleakhunt predates `pyleakhunt.lease`.

    The same rules for attach's holders alone (its start and its watches):
    the deepest frames win, and the last release stops the tracer if one of
    them started it, or else puts its traceback limit back.  Such a
    pyleakhunt has no other leases to see.
    """

    def __init__(self, pyleakhunt, nframe, sample_bytes):
        self.pyleakhunt = pyleakhunt
        state = _state(pyleakhunt)
        table = state.setdefault("direct", {"holders": []})
        if not pyleakhunt.is_tracing():
            if sample_bytes is None:
                pyleakhunt.start(nframe)
            else:
                pyleakhunt.start(nframe, sample_bytes=sample_bytes)
            table.update(holders=[], started=True)
        else:
            limit = pyleakhunt.get_traceback_limit()
            if not table["holders"]:
                table.update(started=False, base=limit)
            if nframe > limit:
                pyleakhunt.start(nframe)
        with state["lock"]:
            table["holders"].append(self)

    def release(self):
        pyleakhunt = self.pyleakhunt
        state = _state(pyleakhunt)
        table = state["direct"]
        with state["lock"]:
            if self not in table["holders"]:
                return  # released already, or the tracer restarted since
            table["holders"].remove(self)
            if table["holders"] or not pyleakhunt.is_tracing():
                return
        if table["started"]:
            pyleakhunt.stop()
            return
        try:
            pyleakhunt.start(table["base"])
        except Exception:  # noqa: S110 (a sampled tracer keeps the deeper limit)
            pass


def _preload(pyleakhunt):
    """Import what later commands use while the tracer is still off.

    Modules imported while tracing would show up in every later snapshot
    as allocations of the import system.
    """
    for name in ("json", "threading"):
        __import__(name)
    try:
        _get_munmap()
    except BaseException:  # noqa: B036, S110 (no ctypes: pages stay mapped)
        pass
    for name in ("lease", "fileformat", "watcher", "growth", "snapshot"):
        try:
            __import__(pyleakhunt.__name__ + "." + name)
        except ImportError:
            pass


def _start(pyleakhunt, request):
    was_tracing = pyleakhunt.is_tracing()
    if not was_tracing:
        _preload(pyleakhunt)
    state = _state(pyleakhunt)
    # A second start replaces attach's lease: the new one is taken first, so
    # the tracer does not stop in between.
    held = _acquire(pyleakhunt, request, "attach", request.get("sample_bytes"))
    previous, state["lease"] = state.get("lease"), held
    if previous is not None:
        previous.release()
    if not was_tracing:
        state["started_tracing"] = True
    return {"was_tracing": was_tracing}


def _snapshot(pyleakhunt, request):
    if not pyleakhunt.is_tracing():
        raise Failed(
            "the target is not tracing; start with 'pyleakhunt attach %d' first"
            % os.getpid()
        )
    full = bool(request.get("full"))
    started = time.monotonic()
    snapshot = pyleakhunt.take_snapshot(traces=full)
    path = request["path"]
    _write_atomically(path, snapshot.dump)
    raw = snapshot.raw
    return {
        "path": path,
        "file_bytes": os.path.getsize(path),
        "aggregated": not full,
        "sites": len(raw.sites),
        "snapshot_bytes": sum(site.size for site in raw.sites),
        "snapshot_blocks": sum(site.count for site in raw.sites),
        "seconds": time.monotonic() - started,
    }


def _watch(pyleakhunt, request):
    import threading

    from pyleakhunt.watcher import LeakWatcher

    state = _state(pyleakhunt)
    # --nframe and --sample are the settings of a tracer the watch starts; a
    # running tracer keeps its rate (and gets deeper if asked).
    sample_bytes = None
    if not pyleakhunt.is_tracing():
        _preload(pyleakhunt)
        sample_bytes = request.get("sample_bytes")
    held = _acquire(pyleakhunt, request, "attach --watch", sample_bytes)
    try:
        watcher = LeakWatcher(
            interval=request["interval"], nframe=request["nframe"], path=request["path"]
        )
    except BaseException:
        held.release()  # no watch to give it back later
        raise
    watch = {"watcher": watcher, "timer": None, "lease": held}

    def finish():
        try:
            _stop_watch(pyleakhunt, watch)
            if request.get("done"):
                _write_json(request["done"], {"ok": watcher.error is None})
        except BaseException:  # noqa: B036, S110 (a thread must not print)
            pass

    timer = threading.Timer(request["duration"], finish)
    timer.daemon = True
    timer.name = "pyleakhunt-attach-watch"
    watch["timer"] = timer
    state["watches"].append(watch)
    try:
        watcher.start()
        timer.start()
    except BaseException:
        _stop_watch(pyleakhunt, watch)
        raise
    return {
        "path": request["path"],
        "interval": request["interval"],
        "duration": request["duration"],
    }


def _stop_watch(pyleakhunt, watch):
    """Stop one watch and give back its lease."""
    state = _state(pyleakhunt)
    with state["lock"]:
        if watch not in state["watches"]:
            return  # already stopped (by detach, or by its timer)
        state["watches"].remove(watch)
    if watch["timer"] is not None:
        watch["timer"].cancel()
    try:
        # The process goes on: its last sample is no closing one.
        watch["watcher"].stop(closing=False)
    finally:
        if watch.get("lease") is not None:
            watch["lease"].release()


def _detach(pyleakhunt):
    state = _state(pyleakhunt)
    watches = list(state["watches"])
    for watch in watches:
        _stop_watch(pyleakhunt, watch)
    was_tracing = pyleakhunt.is_tracing()
    held = state.pop("lease", None)
    started_by_attach = state["started_tracing"]
    if held is not None:
        held.release()
    elif started_by_attach and was_tracing:
        pyleakhunt.stop()  # started by an attach from before leases
    state["started_tracing"] = False
    result = {
        "was_tracing": was_tracing,
        "started_by_attach": started_by_attach,
        "watches_stopped": len(watches),
    }
    if pyleakhunt.is_tracing():
        # Who keeps it: the leases left, or the program's own start().
        leases = _leases(pyleakhunt)
        held_by = leases.held() if leases is not None else []
        result["kept_by"] = [other.owner for other in held_by]
    # Forget the compiled bootstrap too: the target is left as it was found
    # (its module object lives until this call returns).
    sys.modules.pop(__name__, None)
    return result


def _status(pyleakhunt):
    tracing = pyleakhunt.is_tracing()
    status = {
        "tracing": tracing,
        "watches": len(_state(pyleakhunt)["watches"]),
        "pyleakhunt_version": getattr(pyleakhunt, "__version__", "?"),
        "pyleakhunt_file": getattr(pyleakhunt, "__file__", "?"),
    }
    if tracing:
        current, peak = pyleakhunt.get_traced_memory()
        status.update(
            nframe=pyleakhunt.get_traceback_limit(),
            traced_bytes=current,
            traced_peak=peak,
        )
        stats = pyleakhunt.get_stats()
        for key in ("sample_bytes", "live_blocks", "tracer_memory", "lost_blocks"):
            if key in stats:
                status[key] = stats[key]
    return status


# --------------------------------------------------------------------------
# Helpers


def _identity():
    return {
        "pid": os.getpid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
    }


def _describe(exc):
    text = str(exc)
    name = type(exc).__name__
    return "%s: %s" % (name, text) if text else name


def _write_json(path, document):
    """Write *document* to *path* atomically (a temporary file, then rename)."""
    import json

    text = json.dumps(document)  # one shot: the C encoder, no garbage cycles

    def write(partial):
        with open(partial, "w") as f:
            f.write(text)

    _write_atomically(path, write)


def _write_atomically(path, write):
    """Call ``write(partial)`` beside *path*, then rename it over *path*: a
    reader never sees half a file, and a failed write leaves no debris.

    The same as `pyleakhunt._files.write_atomically`, written again on
    purpose: this file uses the standard library only (the target's own
    pyleakhunt, if any, may be a version without that module).
    """
    partial = "%s.%d.partial" % (path, os.getpid())
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


def _interrupt_main():
    try:
        import _thread

        _thread.interrupt_main()
    except BaseException:  # noqa: B036, S110
        pass


_munmap = []  # the ctypes function, made once (see _preload)


def _get_munmap():
    if not _munmap:
        import ctypes

        function = ctypes.CDLL(None).munmap
        function.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        function.restype = ctypes.c_int
        _munmap.append(function)
    return _munmap[0]


def _unmap(page):
    """Release the memory gdb mapped for the queued program.

    ``PyRun_SimpleString`` compiles its string before running it and keeps
    no reference to it, so the page can go while this code runs.  Without
    ctypes the page (a few KiB) stays mapped: harmless.
    """
    if not page:
        return
    try:
        _get_munmap()(page[0], page[1])
    except BaseException:  # noqa: B036, S110
        pass


def _register():
    """Become ``sys.modules[__name__]``, where the next commands find `main`.

    The queued program executes this source in a fresh namespace named
    ``__pyleakhunt_attach_<hash>`` when the target has no such module yet.
    """
    module = type(sys)(__name__)
    module.__dict__.update(globals())
    sys.modules[__name__] = module


if __name__.startswith("__pyleakhunt_attach_") and __name__ not in sys.modules:
    _register()
