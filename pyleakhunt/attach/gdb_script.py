"""The program gdb runs for ``pyleakhunt attach`` (Python 3.10 to 3.13).

Not imported by pyleakhunt: `methods.run_gdb` writes it out with one
run's parameters and gdb loads it in its own Python, where the ``gdb``
module exists.
"""

# Loaded by gdb before it attaches (so that gdb's Python starts while the
# target still runs); run() then runs while the target is stopped.  See
# pyleakhunt/attach/methods.py.
import json

import gdb

#: Replaced by one run's parameters (a JSON text) when the script is
#: written out for that run: see `methods.gdb_script`.
PARAMS = "{}"
P = json.loads(PARAMS)
# JSON object keys are strings; the system call tables are keyed by number.
P["blocking"] = {int(k): v for k, v in P["blocking"].items()}
P["fork"] = {int(k): v for k, v in P["fork"].items()}


def report(**fields):
    gdb.write(P["mark"] + json.dumps(fields) + "\n")
    gdb.flush()


def syscall(lwp):
    """The system call thread *lwp* is in: its number, its six arguments
    and its stack pointer; (None, [], None) when unknown, (-1, [], None)
    when it is in none."""
    try:
        with open("/proc/%d/task/%d/syscall" % (P["pid"], lwp)) as f:
            fields = f.read().split()
        if len(fields) < 9:
            return int(fields[0]), [], None
        return int(fields[0]), [int(a, 16) for a in fields[1:7]], int(fields[7], 16)
    except (OSError, ValueError, IndexError):
        return None, [], None


def address(name):
    if P["addresses"].get(name):
        return P["addresses"][name]
    for library in ("libc", "libpython", "musl"):
        try:
            gdb.execute("sharedlibrary " + library, to_string=True)
        except gdb.error:
            pass
    return int(gdb.parse_and_eval("(long)&" + name))


def call(expression):
    return int(gdb.parse_and_eval(expression))


#: How far above a thread's stack pointer the struct clone_args that it
#: passes to clone3() can be: in the frame of the function that called.
#: checks.py applies the same rule before gdb is started (this script
#: runs inside gdb, which does not import pyleakhunt).
CLONE_ARGS_REACH = 64 * 1024


def creates_thread(name, args, sp=None):
    """Whether a clone() or clone3() in progress creates a thread."""
    flags = None
    if name == "clone" and args:
        flags = args[0]
    elif name == "clone3" and args:
        if sp is not None and not 0 <= args[0] - sp < CLONE_ARGS_REACH:
            # The new thread itself, stopped before its first instruction:
            # its registers are its creator's, but its stack is its own,
            # so the struct is not on it (and may be gone).  The child of
            # a clone3() that makes a process is no thread of this one.
            return True
        try:  # struct clone_args starts with its 64-bit flags
            raw = bytes(gdb.selected_inferior().read_memory(args[0], 8))
            flags = int.from_bytes(raw, "little")
        except gdb.error:
            pass
    return flags is not None and bool(flags & 0x10000)  # CLONE_THREAD


def choose_thread(inferior):
    """A thread waiting in a blocking system call, the main one if it is."""
    blocked, other, main = [], [], None
    for thread in inferior.threads():
        lwp = thread.ptid[1]
        number, args, sp = syscall(lwp)
        if number in P["fork"] and not creates_thread(P["fork"][number], args, sp):
            return None, "thread %d is in %s()" % (lwp, P["fork"][number])
        if lwp == P["pid"]:
            main = thread
        if number in P["blocking"]:
            blocked.append((lwp != P["pid"], thread, P["blocking"][number]))
        elif lwp != P["pid"]:
            other.append(thread)
    if blocked:
        blocked.sort(key=lambda entry: entry[0])
        _, thread, name = blocked[0]
        return thread, "waiting in %s()" % name
    # No thread waits in a system call (a CPU-bound program).  A thread
    # running code can hold a lock that Py_AddPendingCall needs only if it
    # is queueing or running pending calls itself, which only the main
    # thread does; so prefer another thread.  If the call blocks anyway,
    # the client interrupts gdb, which then restores the thread exactly.
    thread = other[0] if other else main
    return thread, "running"


def main():
    inferior = gdb.selected_inferior()
    if inferior.pid != P["pid"]:
        report(ok=False, kind="attach", message="gdb could not attach")
        return
    gdb.execute("set unwindonsignal on")
    gdb.execute("set scheduler-locking off")
    thread, why = choose_thread(inferior)
    if thread is None:
        report(ok=False, kind="refused", message="the process is forking: " + why)
        return
    thread.switch()
    if call("((int(*)(void))%d)()" % address("Py_IsInitialized")) != 1:
        report(ok=False, kind="refused", message="Python is not initialized")
        return
    finalizing = P["addresses"].get("Py_IsFinalizing") or P["addresses"].get(
        "_Py_IsFinalizing"
    )
    if finalizing and call("((int(*)(void))%d)()" % finalizing) != 0:
        report(ok=False, kind="refused", message="the process is shutting down")
        return
    with open(P["payload"], "rb") as f:
        payload = f.read()
    size = (len(payload) + 1 + P["page"] - 1) // P["page"] * P["page"]
    mmap = address("mmap")
    page = call(
        "((void*(*)(void*, unsigned long, int, int, int, long))%d)"
        "((void*)0, %d, 3, 0x22, -1, 0)" % (mmap, size)
    )
    if page in (0, -1) or page > 0xFFFFFFFFFFFFF000:
        report(ok=False, kind="error", message="mmap failed in the target")
        return
    mark = P["page_mark"].encode()
    payload = payload.replace(mark, b"(0x%016x, 0x%08x)" % (page, size), 1)
    inferior.write_memory(page, payload + b"\0")
    queued = call(
        "((int(*)(void*, void*))%d)((void*)%d, (void*)%d)"
        % (address("Py_AddPendingCall"), address("PyRun_SimpleString"), page)
    )
    if queued != 0:
        call(
            "((int(*)(void*, unsigned long))%d)((void*)%d, %d)"
            % (address("munmap"), page, size)
        )
        report(
            ok=False,
            kind="error",
            message="Py_AddPendingCall failed (its queue is full)",
        )
        return
    report(ok=True, thread=thread.ptid[1], how=why, page=page, size=size)


def run():
    try:
        main()
    except Exception as exc:  # noqa
        report(ok=False, kind="error", message="%s: %s" % (type(exc).__name__, exc))
