"""Victims for the census tests: a Python process with known objects, its
core (taken with gdb's gcore), and a way to run the census command.

conftest.py turns these into fixtures; tests import the helpers directly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)

#: The victim's module: every count here is asserted by the tests.
VICTIM_MODULE = textwrap.dedent(
    '''
    import sys
    import threading


    class CensusUser:
        def __init__(self, i):
            self.id = i
            self.name = "user-%d" % i


    class CensusSlotted:
        __slots__ = ("a", "b")

        def __init__(self, a):
            self.a = a
            self.b = None


    class CensusEntry:
        pass


    class CensusCached:
        pass


    class CensusValue:
        pass


    class CensusLocal:
        pass


    class Registry:
        entries = []


    def make_getter():
        cache = [CensusCached() for _ in range(1234)]

        def getter():
            return cache

        return getter


    users = [CensusUser(i) for i in range(12345)]
    slotted_by_id = {i: CensusSlotted(i) for i in range(3456)}
    Registry.entries.extend(CensusEntry() for _ in range(2345))
    getter = make_getter()
    GLOBAL_MAP = {i: CensusValue() for i in range(1500)}
    dicts = [{"k": i} for i in range(4000)]
    lists = [[i, i + 1] for i in range(3000)]
    tuples = [(i, "t") for i in range(5000)]
    strings = ["census-string-%d" % i for i in range(6000)]
    blobs = [(b"%d" % i) * 50 for i in range(700)]
    arrays = [bytearray(100 + i % 7) for i in range(300)]


    def grow(n):
        Registry.entries.extend(CensusEntry() for _ in range(n))


    def worker(ready, stop):
        rows = [CensusLocal() for _ in range(800)]
        ready.set()
        stop.wait()
        return rows


    def start_worker():
        ready = threading.Event()
        stop = threading.Event()
        threading.Thread(target=worker, args=(ready, stop), daemon=True).start()
        ready.wait()


    def expected():
        """What the census must find: counts, and sizes by sys.getsizeof."""
        return {
            "strings_size": sum(sys.getsizeof(s) for s in strings),
            "blobs_size": sum(sys.getsizeof(b) for b in blobs),
            "lists_size": sum(sys.getsizeof(x) for x in lists),
            "tuples_size": sum(sys.getsizeof(t) for t in tuples),
            "dicts_size": sum(sys.getsizeof(d) for d in dicts),
            "arrays_size": sum(sys.getsizeof(a) for a in arrays),
            "version": "%d.%d.%d" % sys.version_info[:3],
        }
    '''
)

#: The victim's main script: reports, then obeys one command a line.
VICTIM_MAIN = textwrap.dedent(
    """
    import json
    import os
    import sys

    import census_victim

    census_victim.start_worker()
    print(json.dumps(dict(census_victim.expected(), pid=os.getpid())), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command and command[0] == "grow":
            census_victim.grow(int(command[1]))
        print("done", flush=True)
    """
)


#: Variables a sanitizer build of the tests sets, which the processes the
#: tests only observe must not inherit: with the sanitizer runtime
#: preloaded, a victim maps terabytes of shadow memory, that a core (and a
#: census) would then have to copy.
_SANITIZER_VARIABLES = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


def clean_env() -> Dict[str, str]:
    """The environment for victims, gcore and other observed processes."""
    return {k: v for k, v in os.environ.items() if k not in _SANITIZER_VARIABLES}


@dataclass
class Victim:
    """A running victim process."""

    process: subprocess.Popen
    pid: int
    expected: Dict[str, object]
    directory: str

    def command(self, text: str) -> None:
        """Sends one command and waits until it is done."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "done"

    def state(self) -> str:
        """The state letter in /proc/PID/stat."""
        with open(f"/proc/{self.pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def start_victim(
    directory: str,
    python: str = sys.executable,
    env: Optional[Dict[str, str]] = None,
) -> Victim:
    """Writes the victim's files into *directory* and starts it (with
    *env* added to its environment)."""
    with open(os.path.join(directory, "census_victim.py"), "w") as f:
        f.write(VICTIM_MODULE)
    main = os.path.join(directory, "victim_main.py")
    with open(main, "w") as f:
        f.write(VICTIM_MAIN)
    process = subprocess.Popen(
        [python, main],
        cwd=directory,
        env={**clean_env(), **(env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError(f"the victim under {python} did not start")
    expected = json.loads(line)
    return Victim(process, int(expected["pid"]), expected, directory)


def stop_victim(victim: Victim) -> None:
    """Ends the victim, whatever state it is in."""
    try:
        os.kill(victim.pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    victim.process.kill()
    victim.process.wait(timeout=10)


def take_core(pid: int, prefix: str) -> str:
    """A core of *pid* taken with gcore; skips the test if gcore cannot."""
    if shutil.which("gcore") is None:
        pytest.skip("gcore (from gdb) is not installed: cannot take a core")
    done = subprocess.run(
        ["gcore", "-o", prefix, str(pid)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    path = f"{prefix}.{pid}"
    if done.returncode != 0 or not os.path.exists(path):
        pytest.skip(f"gcore could not dump PID {pid} (ptrace not permitted?)")
    return path


@dataclass
class CLIResult:
    """What ``python -m pyleakhunt.census ARGS`` did."""

    returncode: int
    stdout: str
    stderr: str
    lines: List[str] = field(default_factory=list)

    def json(self) -> object:
        return json.loads(self.stdout)


def run_cli(*args: str, user: Optional[int] = None, timeout: float = 120) -> CLIResult:
    """Runs the census command in a new process (as *user*, if given)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    kwargs = {"user": user} if user is not None else {}
    done = subprocess.run(
        [sys.executable, "-m", "pyleakhunt.census", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    return CLIResult(
        done.returncode, done.stdout, done.stderr, done.stdout.splitlines()
    )


def core_file_offset(core: str, address: int) -> int:
    """Where the byte of the process at *address* is in the core file."""
    from pyleakhunt.census.elf import open_core

    elf = open_core(core)
    try:
        for seg in elf.loads:
            if seg.vaddr <= address < seg.vaddr + seg.filesz:
                return seg.offset + (address - seg.vaddr)
    finally:
        elf.close()
    raise AssertionError(f"{address:#x} is not in the core")


def patch_core(core: str, copy: str, patches: Dict[int, bytes]) -> str:
    """Copies *core* to *copy*, writing each of *patches* (process address:
    bytes) over the memory it holds there."""
    shutil.copy(core, copy)
    with open(copy, "r+b") as f:
        for address, data in patches.items():
            f.seek(core_file_offset(core, address))
            f.write(data)
    return copy


def read_core(core: str, address: int, size: int) -> bytes:
    """*size* bytes of the process at *address*, from the core file."""
    with open(core, "rb") as f:
        f.seek(core_file_offset(core, address))
        return f.read(size)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Polls *predicate* until true or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
