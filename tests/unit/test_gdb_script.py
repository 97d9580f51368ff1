"""The gdb program's choice of a thread (pyleakhunt/attach/gdb_script.py),
run here with a stand-in for gdb's own ``gdb`` module."""

import json
import os
import struct
import sys
import types

import pytest

import pyleakhunt.attach

#: Not importable outside gdb: it imports gdb's own module.
SCRIPT = os.path.join(os.path.dirname(pyleakhunt.attach.__file__), "gdb_script.py")

CLONE_THREAD = 0x10000
STACK = 0x7FFE_0530_0000  # the creating thread's stack pointer
CLONE_ARGS = STACK + 0x200  # its struct clone_args, in its caller's frame


@pytest.fixture
def script(monkeypatch):
    """gdb_script loaded with a fake gdb whose memory holds *memory*."""
    memory = {}

    class Inferior:
        def read_memory(self, address, length):
            if address not in memory:
                raise fake.error("Cannot access memory at %#x" % address)
            return memory[address][:length]

    fake = types.ModuleType("gdb")
    fake.error = type("error", (RuntimeError,), {})
    fake.selected_inferior = Inferior
    monkeypatch.setitem(sys.modules, "gdb", fake)
    params = {"pid": 1, "mark": "@", "blocking": {}, "fork": {"435": "clone3"}}
    with open(SCRIPT) as f:
        source = f.read().replace('PARAMS = "{}"', "PARAMS = %r" % json.dumps(params))
    module = types.ModuleType("gdb_script")
    exec(compile(source, SCRIPT, "exec"), module.__dict__)
    module.memory = memory
    return module


def test_a_thread_calling_clone3_for_a_thread_creates_one(script):
    script.memory[CLONE_ARGS] = struct.pack("<Q", CLONE_THREAD | 0x3D0F00)
    assert script.creates_thread("clone3", [CLONE_ARGS, 0x58], STACK)


def test_a_thread_calling_clone3_for_a_process_does_not(script):
    script.memory[CLONE_ARGS] = struct.pack("<Q", 0x11)  # SIGCHLD: a fork
    assert not script.creates_thread("clone3", [CLONE_ARGS, 0x58], STACK)
    del script.memory[CLONE_ARGS]  # flags unknown: not a thread either
    assert not script.creates_thread("clone3", [CLONE_ARGS, 0x58], STACK)


def test_a_new_thread_stopped_before_its_first_instruction_is_a_thread(script):
    # gdb stopped a thread of a busy server just born: its registers are
    # its creator's, its stack pointer is on its own new stack, and the
    # creator's frame that held the struct is gone (zeros, or another
    # call's data).  Attach was refused 20 times in a row for such threads.
    script.memory[CLONE_ARGS] = bytes(8)
    new_stack = 0x7F3A_1200_0000
    assert script.creates_thread("clone3", [CLONE_ARGS, 0x58], new_stack)
    assert script.creates_thread("clone3", [CLONE_ARGS, 0x58], CLONE_ARGS + 8)
