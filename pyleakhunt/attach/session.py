"""The exchange with the bootstrap: the program queued in the target, the
directory with a token to claim and a result to read."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Tuple,
)

from ..process.proc import ProcFS
from .base import CLAIMED_GRACE, Clock, Environment
from .checks import Target

# --------------------------------------------------------------------------
# The program queued in the target


#: Placeholder for the address and size of the memory gdb maps for the
#: program; gdb overwrites it in place, so it has the same length.
PAGE_MARK = "(0x5f5f5f5f5f5f5f5f, 0x5f5f5f5f)"


#: Prefix of the module, in the target's ``sys.modules``, that keeps the
#: compiled bootstrap between commands (until --detach removes it); the
#: rest of its name is a hash of the bootstrap's source.
BOOTSTRAP_MODULE = "__pyleakhunt_attach_"


def bootstrap_source() -> Tuple[str, str]:
    """The bootstrap's source, and the module name it gets in the target."""
    import hashlib

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "bootstrap.py"), encoding="utf-8") as f:
        source = f.read()
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return source, BOOTSTRAP_MODULE + digest


def bootstrap_program(
    request_path: str,
    source_path: str,
    module: str,
    with_page: bool,
    script_path: Optional[str] = None,
) -> str:
    """The Python source queued in the target.

    It calls `main` of the bootstrap module *module* with *request_path*,
    after building that module from *source_path* if the target does not
    have it yet (both paths as the target sees them; see the end of
    `bootstrap`).  It is kept to a few lines: the target compiles
    it anew for every command, keeps its syntax tree while it runs, and the
    tracer keeps the code objects of frames it saw.  The outer ``try``
    makes sure that no exception escapes (`bootstrap` says why),
    and nothing is bound in the target's ``__main__``.

    *script_path* is the file of this program when ``sys.remote_exec`` runs
    it: the program then deletes that file, and its directory if nothing
    else is left there (`Session.close` says why it may outlive the command).
    """
    page = PAGE_MARK if with_page else "None"
    cleanup = ""
    if script_path is not None:
        cleanup = (
            "finally:\n"
            "    try:\n"
            "        __import__('os').unlink(%r)\n"
            "    except BaseException:\n"
            "        pass\n"
            "    try:\n"
            "        __import__('os').rmdir(%r)\n"
            "    except BaseException:\n"
            "        pass\n" % (script_path, os.path.dirname(script_path))
        )
    # The loader runs only when the module is missing, in its own globals:
    # a file left unclosed would warn, and the warning would create
    # __warningregistry__ in the target's __main__.
    loader = (
        "with open(PATH, encoding='utf-8') as f:\n"
        "    exec(compile(f.read(), '<pyleakhunt attach>', 'exec'), "
        "{'__name__': NAME})\n"
    )
    return (
        "try:\n"
        "    __import__('sys').modules.get(%(module)r) or exec(%(loader)r, "
        "{'PATH': %(source)r, 'NAME': %(module)r})\n"
        "    __import__('sys').modules[%(module)r].main(%(request)r, %(page)s)\n"
        "except BaseException:\n"
        "    pass\n"
        % {
            "module": module,
            "loader": loader,
            "source": source_path,
            "request": request_path,
            "page": page,
        }
    ) + cleanup


# --------------------------------------------------------------------------
# The exchange with the bootstrap: a token to claim, a result to read


#: The exchange directories, in the target's ``/tmp``: PID, then random hex.
SESSION_NAME = re.compile(r"^pyleakhunt-attach-(\d+)-[0-9a-f]+$")
#: The script queued by ``sys.remote_exec``; it deletes itself once run.
SCRIPT_NAME = "program.py"


class Session:
    """A private directory the target can reach: the token and the result.

    Made under ``/tmp`` as the target sees it (through ``/proc/PID/root``),
    owned by the target's user when we are root, so that the target can
    rename the token and write its result.
    """

    def __init__(self, target: Target, proc: ProcFS) -> None:
        self.target = target
        name = "pyleakhunt-attach-%d-%s" % (target.pid, secrets.token_hex(6))
        self.inside = "/tmp/" + name  # as the target sees it
        self.outside = proc.target_file(target.pid, self.inside)  # as we do
        #: The name of a script queued by sys.remote_exec, once it is.
        self.queued_script: Optional[str] = None
        os.mkdir(self.outside, 0o700)
        with open(self._out("token"), "w"):
            pass
        if os.geteuid() == 0 and target.uid != 0:
            for path in (self.outside, self._out("token")):
                os.chown(path, target.uid, target.gid)

    def _out(self, name: str) -> str:
        return os.path.join(self.outside, name)

    def same_path_here(self) -> bool:
        """Whether the session's path names the same directory here as there.

        Not so for a target with another ``/tmp`` (a container, systemd's
        PrivateTmp): we reach its files through ``/proc/PID/root`` only.
        """
        try:
            return os.path.samestat(os.stat(self.outside), os.stat(self.inside))
        except OSError:
            return False

    def path(self, name: str) -> str:
        """*name* in the session, as the target sees it."""
        return self.inside + "/" + name

    def write_file(self, name: str, text: str) -> str:
        """A file the target can read; returns its path as the target sees it."""
        with open(self._out(name), "w", encoding="utf-8") as f:
            f.write(text)
        if os.geteuid() == 0 and self.target.uid != 0:
            os.chown(self._out(name), self.target.uid, self.target.gid)
        return self.path(name)

    def result(self, name: str = "result.json") -> Optional[Dict[str, Any]]:
        """The result the target wrote, or None yet."""
        try:
            with open(self._out(name), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def withdraw(self) -> bool:
        """Give up: delete the token.  False if the target claimed it first."""
        try:
            os.unlink(self._out("token"))
            return True
        except FileNotFoundError:
            return False

    def close(self) -> None:
        """Delete the directory (a late bootstrap then finds no token).

        A script queued by ``sys.remote_exec`` that has not claimed the token
        is still to run: the interpreter opens its file later, and would
        print an error on the target's stderr if it were gone.  So that file
        stays, withdrawn; when it runs, it finds no request, does nothing and
        deletes itself and this directory.  Whichever of the two ends last
        removes the directory.
        """
        keep = None
        if self.queued_script is not None:
            self.withdraw()
            if not os.path.exists(self._out("claimed")):
                keep = self.queued_script
        if keep is None:
            shutil.rmtree(self.outside, ignore_errors=True)
            return
        try:
            names = os.listdir(self.outside)
        except OSError:
            names = []
        for name in names:
            if name != keep:
                try:
                    os.unlink(self._out(name))
                except OSError:
                    pass
        try:
            os.rmdir(self.outside)
        except OSError:
            pass  # the script is still there; it removes the directory


def _started_at(pid: int, proc: ProcFS) -> Optional[float]:
    """When process *pid* started (wall clock), or None if it is gone."""
    try:
        ticks = int(proc.stat_fields(pid)[19])
        for line in proc.read("stat").splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sessions(target: Target, proc: ProcFS) -> List[Tuple[int, str]]:
    """The exchange directories in *target*'s ``/tmp``: (PID, path from here)."""
    tmp = proc.target_file(target.pid, "/tmp")
    try:
        names = os.listdir(tmp)
    except OSError:
        return []
    found = []
    for name in names:
        match = SESSION_NAME.match(name)
        path = os.path.join(tmp, name)
        if match and os.path.isdir(path) and not os.path.islink(path):
            found.append((int(match.group(1)), path))
    return found


def sweep_orphans(target: Target, proc: ProcFS) -> None:
    """Delete the exchange directories of processes that are gone.

    A withdrawn script stays until its process runs it (`Session.close`);
    if the process ended first, or its PID now names a newer process, it
    never will.  So do a command killed before it could clean up.
    """
    for pid, path in _sessions(target, proc):
        started = _started_at(pid, proc)
        try:
            made = os.lstat(path).st_mtime
        except OSError:
            continue
        if started is None or started > made + 1:
            shutil.rmtree(path, ignore_errors=True)


def withdrawn_scripts(target: Target, proc: ProcFS) -> List[str]:
    """Directories of *target* that hold only a withdrawn, still queued script.

    ``sys.remote_exec`` keeps one script per process: the one it queues
    next replaces any that is still pending.  So once a new script has run,
    the ones found here before it was queued either ran (and deleted
    themselves) or never will; the caller deletes what is left.
    """
    found = []
    for pid, path in _sessions(target, proc):
        try:
            names = os.listdir(path)
        except OSError:
            continue
        if pid == target.pid and names == [SCRIPT_NAME]:
            found.append(path)
    return found


def wait_for_result(
    session: Session,
    clock: Clock,
    env: Environment,
    name: str = "result.json",
    tick: Optional[Callable[[], None]] = None,
) -> Optional[Dict[str, Any]]:
    """The target's result, or None after withdrawing the request in time.

    *tick* is called at each poll (to show progress).
    """
    while True:
        result = session.result(name)
        if result is not None:
            return result
        if tick is not None:
            tick()
        if not clock.waiting():
            break
    if session.withdraw():
        return None
    # The target claimed the token just now: it is working on it.
    grace = env.clock(CLAIMED_GRACE, step=0.02)
    while grace.waiting():
        result = session.result(name)
        if result is not None:
            return result
    return session.result(name) or {
        "ok": False,
        "kind": "late",
        "message": (
            "the target started the command but did not finish in time; it "
            "goes on there (a snapshot or timeline file will still be written)"
        ),
    }
