"""The pre-check that refuses a target in the middle of a fork, read from
stand-in /proc files: a thread being made is not a fork."""

from __future__ import annotations

import struct
from typing import Dict, Optional

from pyleakhunt.attach import checks
from pyleakhunt.process.elf import EM_X86_64
from pyleakhunt.process.proc import ProcFS, Syscall

PID = 4000
SP = 0x7FFD_0000_1000
CLONE3 = 435
CLONE = 56


class Memory(ProcFS):
    """/proc with stand-in files and a stand-in memory of PID."""

    def __init__(self, files: Dict[str, str], memory: Dict[int, bytes]) -> None:
        super().__init__(overrides=files)
        self.memory = memory
        self.reads = 0

    def read_memory(self, pid: int, address: int, size: int) -> Optional[bytes]:
        self.reads += 1
        data = self.memory.get(address)
        return data[:size] if pid == PID and data else None


def _syscall(number: int, first: int, sp: int = SP) -> str:
    return "%d 0x%x 0x58 0x0 0x0 0x0 0x0 0x%x 0x7f0000000001\n" % (number, first, sp)


def _reason(call: str, memory: Optional[Dict[int, bytes]] = None) -> Optional[str]:
    files = {
        "%d/task" % PID: str(PID),
        "%d/task/%d/syscall" % (PID, PID): call,
        # Not a fresh child: no PF_FORKNOEXEC, so only the call decides.
        "%d/stat" % PID: "%d (python3) S 1 %d %d 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100\n"
        % (PID, PID, PID),
    }
    return checks._forking_reason(PID, Memory(files, memory or {}), EM_X86_64)


def _flags(value: int) -> bytes:
    return struct.pack("<Q", value)


def test_clone_with_clone_thread_is_not_a_fork():
    assert _reason(_syscall(CLONE, 0x3D0F00)) is None


def test_clone_without_clone_thread_is_a_fork():
    assert _reason(_syscall(CLONE, 0x1200011)) == "thread %d is in clone()" % PID


def test_clone3_whose_flags_say_thread_is_not_a_fork():
    args = SP + 0x200
    assert _reason(_syscall(CLONE3, args), {args: _flags(0x3D0F00)}) is None


def test_clone3_whose_flags_say_process_is_a_fork():
    args = SP + 0x200
    reason = _reason(_syscall(CLONE3, args), {args: _flags(0x1200000)})
    assert reason == "thread %d is in clone3()" % PID


def test_clone3_with_unreadable_flags_is_taken_for_a_fork():
    assert _reason(_syscall(CLONE3, SP + 0x200)) == "thread %d is in clone3()" % PID


def test_thread_made_but_not_yet_run_is_not_a_fork():
    # Its registers are its creator's (clone3's arguments point into the
    # creator's stack) but its stack pointer is its own new stack.
    args = SP + 0x200
    for own_stack in (0x7F00_0000_0000, args + checks.CLONE_ARGS_REACH + 8):
        memory = Memory({}, {args: _flags(0x1200000)})
        call = _parse(_syscall(CLONE3, args, own_stack))
        assert call is not None
        assert checks._creates_thread(PID, "clone3", call, memory)
        assert memory.reads == 0


def _parse(text: str) -> Optional[Syscall]:
    files = ProcFS(overrides={"1/task/1/syscall": text})
    return files.syscall(1, 1)


def test_syscall_gives_the_stack_pointer_when_the_kernel_does():
    call = _parse(_syscall(CLONE3, 0x10, sp=0x7FFD0))
    assert call is not None
    assert (call.number, call.args[0], call.sp) == (CLONE3, 0x10, 0x7FFD0)
    short = _parse("435 0x10 0x58\n")
    assert short is not None and short.sp is None
    assert _parse("running\n") is None
