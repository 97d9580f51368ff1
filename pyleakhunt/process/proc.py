"""Reading ``/proc``: a process's status, threads, system calls, memory map.

Read-only, with files that tests may override (`ProcFS`).  Shared by
``pyleakhunt attach`` and the census.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import (
    Dict,
    List,
    Mapping,
    Optional,
    Union,
)


@dataclass(frozen=True)
class Syscall:
    """The system call a thread waits in: its number, six arguments and the
    thread's stack pointer (None when the kernel did not give it)."""

    number: int
    args: List[int]
    sp: Optional[int]


@dataclass(frozen=True)
class MappedFile:
    """One file mapped in a process: its path and its mapping at offset 0."""

    path: str
    start: int
    end: int

    @property
    def deleted(self) -> bool:
        """Whether the file was deleted or replaced since (an upgrade)."""
        return self.path.endswith(" (deleted)")

    @property
    def name(self) -> str:
        """The path without the kernel's `` (deleted)`` mark."""
        return self.path[: -len(" (deleted)")] if self.deleted else self.path


@dataclass(frozen=True)
class Region:
    """One line of ``/proc/PID/maps``."""

    start: int
    end: int
    perms: str
    offset: int
    path: str

    @property
    def readable(self) -> bool:
        """Whether the mapping may be read (``r``)."""
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        """Whether the mapping may be written (``w``)."""
        return self.perms[1] == "w"

    @property
    def file_backed(self) -> bool:
        """Whether a file is mapped (a path, not ``[heap]`` or nothing)."""
        return self.path.startswith("/")


def mapped_files(regions: List[Region]) -> List[MappedFile]:
    """The files of *regions*, each with its lowest mapping at offset 0."""
    found: Dict[str, MappedFile] = {}
    for region in regions:
        if not region.path.startswith("/"):
            continue
        if region.offset == 0 and region.path not in found:
            found[region.path] = MappedFile(region.path, region.start, region.end)
    return list(found.values())


class ProcFS:
    """Read-only access to ``/proc``, with files that tests may override.

    *overrides* maps a path relative to *root* (``"sys/kernel/yama/
    ptrace_scope"``, ``"1234/status"``) to its text, or to an exception to
    raise when it is read.  Everything else is read from *root*.
    """

    def __init__(
        self,
        root: str = "/proc",
        overrides: Optional[Mapping[str, Union[str, BaseException]]] = None,
    ) -> None:
        self.root = root
        self.overrides = dict(overrides or {})

    def path(self, relative: str) -> str:
        """The real path of *relative*."""
        return os.path.join(self.root, relative)

    def read(self, relative: str, errors: str = "replace") -> str:
        """The text of *relative* (raises OSError like ``open``).

        *errors* says what becomes of bytes that are not UTF-8: the paths
        in ``maps`` keep them (``"surrogateescape"``), to be opened.
        """
        if relative in self.overrides:
            value = self.overrides[relative]
            if isinstance(value, BaseException):
                raise value
            return value
        path = self.path(relative)
        with open(path, encoding="utf-8", errors=errors, newline="") as f:
            return f.read()

    def read_or(self, relative: str, default: str = "") -> str:
        """The text of *relative*, or *default* if it cannot be read."""
        try:
            return self.read(relative)
        except OSError:
            return default

    def exists(self, pid: int) -> bool:
        """Whether process *pid* exists."""
        try:
            self.read("%d/status" % pid)
            return True
        except OSError:
            return False

    def status(self, pid: int, tid: Optional[int] = None) -> Dict[str, str]:
        """``/proc/PID/status`` (or a thread's) as a dict of its fields."""
        relative = (
            "%d/status" % pid if tid is None else "%d/task/%d/status" % (pid, tid)
        )
        fields = {}
        for line in self.read(relative).splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        return fields

    def stat_fields(self, pid: int) -> List[str]:
        """``/proc/PID/stat`` split so that index k is field k+3 (man proc)."""
        text = self.read("%d/stat" % pid)
        return text[text.rindex(")") + 2 :].split()

    def task_ids(self, pid: int) -> List[int]:
        """The threads of *pid*, the main thread first."""
        key = "%d/task" % pid
        if key in self.overrides:
            names = self.read(key).split()
        else:
            try:
                names = os.listdir(self.path(key))
            except OSError:
                names = []
        tids = sorted(int(name) for name in names if name.isdigit())
        return sorted(tids, key=lambda tid: tid != pid) or [pid]

    def syscall(self, pid: int, tid: int) -> Optional[Syscall]:
        """The system call thread *tid* waits in, with its arguments.

        None when the thread runs user code, or cannot be read.
        """
        fields = self.read_or("%d/task/%d/syscall" % (pid, tid)).split()
        if not fields or not fields[0].lstrip("-").isdigit():
            return None  # "running", or unreadable
        number = int(fields[0])
        if number < 0:
            return None  # stopped in user space
        try:
            args = [int(arg, 16) for arg in fields[1:7]]
            sp = int(fields[7], 16) if len(fields) > 7 else None
        except ValueError:
            return None
        return Syscall(number, args, sp)

    def read_memory(self, pid: int, address: int, size: int) -> Optional[bytes]:
        """*size* bytes of *pid*'s memory at *address*, or None.

        Through ``/proc/PID/mem``, which needs the same permission as ptrace
        but does not stop the process.
        """
        try:
            with open(self.path("%d/mem" % pid), "rb", buffering=0) as f:
                f.seek(address)
                data = f.read(size)
        except (OSError, OverflowError, ValueError):
            return None
        return data if len(data) == size else None

    def state(self, pid: int) -> str:
        """The state letter of ``/proc/PID/stat`` ("R", "S", "T" stopped...)."""
        return self.stat_fields(pid)[0]

    def tracer(self, pid: int) -> int:
        """The PID of the process that traces *pid* (0: none, or unknown)."""
        try:
            return int(self.status(pid).get("TracerPid", "0") or 0)
        except (OSError, ValueError):
            return 0

    def command_line(self, pid: int) -> str:
        """*pid*'s arguments joined by spaces ("" if it cannot be read)."""
        return self.read_or("%d/cmdline" % pid).replace("\0", " ").strip()

    def maps(self, pid: int) -> List[Region]:
        """The mappings of *pid*, one per line of ``/proc/PID/maps``."""
        regions = []
        for line in self.read("%d/maps" % pid, "surrogateescape").splitlines():
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5] if len(parts) > 5 else ""
            regions.append(Region(start, end, parts[1], int(parts[2], 16), path))
        return regions

    def mapped_files(self, pid: int) -> List[MappedFile]:
        """The files mapped in *pid*, each with its lowest mapping at offset 0."""
        return mapped_files(self.maps(pid))

    def image(self, pid: int, mapped: MappedFile) -> str:
        """A path from which the file *mapped* in *pid* can be read.

        Through ``map_files`` when the file cannot be opened by its name:
        deleted since it was mapped (Python upgraded under a process that
        has run for days), or named from a root that neither we nor the
        target have (``/proc/PID/maps`` names files from the root of the
        target's mount namespace, ``/proc/PID/root`` is the target's own
        root, and a chroot in a namespace of its own has two different
        ones).
        """
        by_map = self.path("%d/map_files/%x-%x" % (pid, mapped.start, mapped.end))
        if mapped.deleted:
            return by_map
        path = self.target_file(pid, mapped.path)
        if self.root == "/proc" and not os.path.exists(path) and os.path.exists(by_map):
            return by_map
        return path

    def exe(self, pid: int) -> str:
        """The path of *pid*'s executable."""
        key = "%d/exe" % pid
        if key in self.overrides:
            return self.read(key).strip()
        return os.readlink(self.path(key))

    def target_file(self, pid: int, path: str) -> str:
        """A path in *pid*'s view of the filesystem, openable from here.

        Through ``/proc/PID/root``, so that a target in a container (another
        mount namespace, a chroot, systemd's PrivateTmp) is seen as it sees
        itself.  Falls back to *path* when that is not accessible.
        """
        root = self.path("%d/root" % pid)
        if self.root == "/proc" and os.path.isdir(root + "/"):
            return root + path
        return path


def rss_bytes() -> Optional[int]:
    """The resident set size of this process, from /proc (Linux), or None.

    The samplers (the watcher, web attribution) read it with
    `pyleakhunt._core.rss_bytes` instead, which holds the GIL: these file
    calls give it up eight times, and behind a busy program each costs the
    sampling thread up to a switch interval to get back."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
