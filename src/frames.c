/* frames.c - walk Python stacks; everything that is version specific.
 *
 * From 3.11 on, frames live in the interpreter's internal structures
 * (_PyInterpreterFrame) and a PyFrameObject is only created on demand.
 * Creating one from an allocator hook would allocate from inside the hook
 * and cost far more than the walk itself, so the walk reads the internal
 * frames directly.  That needs the internal headers, hence Py_BUILD_CORE,
 * which is defined in this file only.
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#include <string.h>

#include <internal/pycore_context.h>
#include <internal/pycore_gc.h>
#if PY_VERSION_HEX >= 0x030C0000
#include <internal/pycore_runtime.h>
#endif
#if PY_VERSION_HEX < 0x030C0000
#include <internal/pycore_pystate.h>
#endif
#if PY_VERSION_HEX >= 0x030E0000
/* 3.14 moved _PyInterpreterFrame to pycore_interpframe_structs.h and its
   helpers (stack refs, _PyFrame_IsIncomplete) to pycore_interpframe.h. */
#if defined(__GNUC__)
/* These internal headers hold inline functions with unused parameters
   (free-threaded-only ones); -Wextra -Werror must not fail on CPython's
   own code. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#include <internal/pycore_interpframe.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#elif PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#else
#include <frameobject.h>
#endif

#include "compiler.h"
#include "frames.h"

#define LH_TOTAL_NFRAME_MAX UINT16_MAX

/* The attached thread state of the caller, or NULL.  3.13 made
   PyThreadState_GetUnchecked() public and deprecated the underscored name
   (a build with -Werror fails on it). */
static inline PyThreadState *
attached_tstate(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

PyThreadState *
lh_frames_gil_holder(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* The current thread state is thread local from 3.12 on, and set only
       while the thread holds the GIL (is "attached").  It is never created
       here: the RAW domain is called without one (3.14+ says so), and
       creating one would allocate and could take the GIL. */
    return attached_tstate();
#else
    /* Before 3.12 the "current" thread state is the GIL holder, whoever it
       is; compare it with this thread's own state.  PyGILState_Check()
       would do the same, but answers 1 unconditionally once a
       subinterpreter exists. */
    PyThreadState *holder = attached_tstate();
    if (holder == NULL || holder != PyGILState_GetThisThreadState()) {
        return NULL;
    }
    return holder;
#endif
}

PyThreadState *
lh_frames_tstate(void)
{
#if PY_VERSION_HEX < 0x030C0000
    /* An inline read of _PyRuntime, not a call into libpython: this runs
       on every allocation. */
    return _PyThreadState_GET();
#else
    return attached_tstate();
#endif
}

#if PY_VERSION_HEX >= 0x030C0000 && defined(__x86_64__) && defined(__linux__)
/* The offset a reader of a thread-local variable at `code` loads from the
   thread pointer (%fs), if the code is nothing but that load and a
   return, as GCC and Clang compile a variable of static TLS:
   - in the executable (local exec): mov %fs:OFFSET, %rax; ret;
   - in a library loaded with it, if so compiled (initial exec):
     mov GOT(%rip), %rax; mov %fs:(%rax), %rax; ret, the GOT slot holding
     the offset.
   Anything else (a library's general-dynamic __tls_get_addr call, a
   breakpoint a debugger planted) gives 0. */
static intptr_t
static_tls_offset(const unsigned char *code)
{
    static const unsigned char endbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};
    static const unsigned char local_exec[] = {0x64, 0x48, 0x8b, 0x04, 0x25};
    static const unsigned char got_load[] = {0x48, 0x8b, 0x05};
    static const unsigned char fs_load[] = {0x64, 0x48, 0x8b, 0x00, 0xc3};
    if (memcmp(code, endbr64, sizeof(endbr64)) == 0) {
        code += sizeof(endbr64);
    }
    if (memcmp(code, local_exec, sizeof(local_exec)) == 0
        && code[9] == 0xc3) {
        int32_t offset;
        memcpy(&offset, code + 5, sizeof(offset));
        return offset;
    }
    if (memcmp(code, got_load, sizeof(got_load)) == 0
        && memcmp(code + 7, fs_load, sizeof(fs_load)) == 0) {
        int32_t rel;
        memcpy(&rel, code + 3, sizeof(rel));
        int64_t offset;
        memcpy(&offset, code + 7 + rel, sizeof(offset));
        return (intptr_t)offset;
    }
    return 0;
}

intptr_t
lh_frames_tstate_offset(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyThreadState *(*reader)(void) = PyThreadState_GetUnchecked;
#else
    PyThreadState *(*reader)(void) = _PyThreadState_UncheckedGet;
#endif
    const unsigned char *code = (const unsigned char *)(uintptr_t)reader;
    intptr_t offset = static_tls_offset(code);
    PyThreadState *tstate = attached_tstate();
    /* A static TLS variable is at the same offset in every thread: one
       that reads right here reads right everywhere. */
    if (offset == 0 || tstate == NULL
        || lh_frames_tstate_at(offset) != tstate) {
        return 0;
    }
    return offset;
}
#else
intptr_t
lh_frames_tstate_offset(void)
{
    return 0;
}
#endif

int
lh_frames_gil_is_main(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* From 3.12 a subinterpreter may have a GIL of its own; but when the
       main interpreter is the only one, the GIL held is its.  A new
       interpreter goes at the head of the runtime's list before any
       thread runs in it, and leaves it only once no thread does, so a
       thread that runs in another interpreter never reads the main one
       there.  (A thread of the main interpreter may read a stale head:
       either answer is then right for it.) */
    PyInterpreterState *head = __atomic_load_n(
        &_PyRuntime.interpreters.head, __ATOMIC_RELAXED);
    return head == _PyRuntime.interpreters.main;
#else
    return 1; /* one GIL, which every interpreter shares */
#endif
}

#if PY_VERSION_HEX >= 0x030E0000

/* 3.14 and later.  f_executable is a _PyStackRef, a tagged word: the
   header's PyStackRef_AsPyObjectBorrow() clears the tag the way this very
   interpreter sets it (3.14 and 3.15 differ in their tag bits).

   A frame is left out exactly when tracemalloc leaves it out, which is
   when _PyFrame_IsIncomplete() says so (tracemalloc applies it to every
   frame: _PyThreadState_GetFrame, then _PyFrame_GetFirstComplete of each
   previous).  It says so of the frames owned by the interpreter or the C
   stack (owner >= FRAME_OWNED_BY_INTERPRETER: entry frames, 3.14's CSTACK
   frames, 3.15's base frame at the bottom of each thread), and of frames
   that have not reached their first traceable instruction.  Only frames on
   top of the stack can be in that second state: before it a frame runs
   MAKE_CELL, COPY_FREE_VARS and RETURN_GENERATOR, which call no Python
   code (3.12+ runs the GC at the next eval breaker, not inside an
   allocation).  So the whole test runs on the top frames, and below the
   first complete frame the owner byte alone decides: the whole test reads
   the code object of every frame, which made the walk several times as
   costly as 3.13's on W1 (callgrind).  tests/test_api.py compares every
   frame and depth with tracemalloc's. */

static inline _PyInterpreterFrame *
top_frame(PyThreadState *tstate)
{
    return tstate->current_frame;
}

static inline int
is_shown(_PyInterpreterFrame *frame)
{
    return frame->owner < FRAME_OWNED_BY_INTERPRETER;
}

static inline PyCodeObject *
frame_code(_PyInterpreterFrame *frame)
{
    return (PyCodeObject *)PyStackRef_AsPyObjectBorrow(frame->f_executable);
}

static inline int64_t
frame_lasti(_PyInterpreterFrame *frame)
{
    /* In code units, as PyCode_Addr2Line's byte offset / 2 (see
       lh_frame_lineno): instr_ptr against the code's own bytecode, which is
       _PyFrame_GetBytecode() of a GIL build. */
    return _PyInterpreterFrame_LASTI(frame);
}

/* The first frame from `f` down that is shown; *unstarted counts the
   frames skipped that the interpreter has entered all the same (see
   entered_frames): those that have not reached their first instruction. */
static inline _PyInterpreterFrame *
first_started_frame(_PyInterpreterFrame *f, int *unstarted)
{
    while (f != NULL && _PyFrame_IsIncomplete(f)) {
        *unstarted += is_shown(f);
        f = f->previous;
    }
    return f;
}

#elif PY_VERSION_HEX >= 0x030B0000

static inline _PyInterpreterFrame *
top_frame(PyThreadState *tstate)
{
#if PY_VERSION_HEX >= 0x030D0000
    return tstate->current_frame;
#else
    return tstate->cframe->current_frame;
#endif
}

/* Shim frames, pushed by the interpreter (3.12+) where C calls into
   Python, are not part of the stack a user sees.  They can sit anywhere in
   the chain, and checking for them is one byte. */
static inline int
is_shim(_PyInterpreterFrame *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    return frame->owner == FRAME_OWNED_BY_CSTACK
           || !PyCode_Check(frame->f_executable);
#elif PY_VERSION_HEX >= 0x030C0000
    return frame->owner == FRAME_OWNED_BY_CSTACK;
#else
    (void)frame;
    return 0;
#endif
}

static inline int
is_shown(_PyInterpreterFrame *frame)
{
    return !is_shim(frame);
}

static inline PyCodeObject *
frame_code(_PyInterpreterFrame *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (PyCodeObject *)frame->f_executable;
#else
    return frame->f_code;
#endif
}

static inline int64_t
frame_lasti(_PyInterpreterFrame *frame)
{
    return _PyInterpreterFrame_LASTI(frame);
}

/* A frame that has not yet started running its code is not shown either.
   Only the frames on top of the stack can be in that state (a frame calls
   nothing before it starts), so only they need this costlier test. */
static _PyInterpreterFrame *
first_started_frame(_PyInterpreterFrame *f, int *unstarted)
{
    while (f != NULL && (is_shim(f) || _PyFrame_IsIncomplete(f))) {
        *unstarted += is_shown(f);
        f = f->previous;
    }
    return f;
}

#endif

#if PY_VERSION_HEX >= 0x030B0000

static inline void
take_frame(lh_frame *out, _PyInterpreterFrame *f)
{
    out->code = (PyObject *)frame_code(f);
    out->lasti = frame_lasti(f);
}

/* The depth of the stack from `f` down, plus `depth`: one load per frame. */
static unsigned int
walk_depth(_PyInterpreterFrame *f, unsigned int depth)
{
    for (; f != NULL && depth < LH_TOTAL_NFRAME_MAX; f = f->previous) {
        depth += is_shown(f);
    }
    return depth;
}

#if PY_VERSION_HEX >= 0x030C0000
/* How many Python frames `tstate` has entered and not yet left.  From 3.12
   the interpreter counts exactly these for the recursion limit, and
   nothing else (C calls have a counter of their own): every frame push,
   of a call, a generator resumed or a frame run from C, takes one from
   py_recursion_remaining, and every return, yield or unwind gives it back;
   setrecursionlimit() moves both fields and keeps their difference.  So
   the depth tracemalloc counts by walking the whole stack is this, less
   the frames on top that have been entered but not started: a constant
   cost instead of one dependent load per frame, which in a server 40
   frames deep was a third of the allocation hook (docs/design.md).
   tests/unit/test_depth.py checks it against the walk on every allocation
   of many stack shapes. */
static inline int
entered_frames(PyThreadState *tstate)
{
    return tstate->py_recursion_limit - tstate->py_recursion_remaining;
}
#endif

/* The depth of `tstate`'s stack, whose first `n` shown frames end before
   `f` and above which `unstarted` entered frames were skipped. */
static unsigned int
stack_depth(PyThreadState *tstate, _PyInterpreterFrame *f, int n,
            int unstarted)
{
    if (f == NULL) {
        return (unsigned int)n; /* the capture reached the bottom */
    }
#if PY_VERSION_HEX >= 0x030C0000
    int depth = entered_frames(tstate) - unstarted;
    if (depth >= n) {
        return depth < LH_TOTAL_NFRAME_MAX ? (unsigned int)depth
                                           : LH_TOTAL_NFRAME_MAX;
    }
    /* Fewer than the frames just seen: a frame evaluator that does not
       count (PEP 523) is about.  The walk is always right. */
#else
    (void)tstate;
    (void)unstarted;
#endif
    return walk_depth(f, (unsigned int)n);
}

/* lh_frames_capture(), which also gives the frame it took first in
   *first (NULL: none). */
static inline int
capture(PyThreadState *tstate, lh_frame *buf, int max, uint16_t *total,
        _PyInterpreterFrame **first)
{
    int n = 0;
    int unstarted = 0;
    _PyInterpreterFrame *f = first_started_frame(top_frame(tstate),
                                                 &unstarted);
    *first = NULL;
    /* The first started frame is shown: taken without testing, since most
       captures keep one frame (callgrind: 200 instructions an iteration of
       W1 on 3.14). */
    if (f != NULL && max > 0) {
        *first = f;
        take_frame(&buf[n++], f);
        f = f->previous;
    }
    for (; f != NULL && n < max; f = f->previous) {
        if (is_shown(f)) {
            take_frame(&buf[n++], f);
        }
    }
    if (total != NULL) {
        /* The rest of the stack is only counted, for total_nframe. */
        *total = (uint16_t)stack_depth(tstate, f, n, unstarted);
    }
    return n;
}

int
lh_frames_capture(PyThreadState *tstate, lh_frame *buf, int max,
                  uint16_t *total)
{
    _PyInterpreterFrame *first;
    return capture(tstate, buf, max, total, &first);
}

/* The depth lh_frames_capture counts for a stack whose top frame `f` is
   taken, or 0 when only a walk can tell. */
static unsigned int
depth_below_top(PyThreadState *tstate, _PyInterpreterFrame *f)
{
    if (f->previous == NULL) {
        return 1;
    }
#if PY_VERSION_HEX >= 0x030C0000
    int depth = entered_frames(tstate);
    if (depth < 1) {
        return 0; /* see stack_depth */
    }
    return depth < LH_TOTAL_NFRAME_MAX ? (unsigned int)depth
                                       : LH_TOTAL_NFRAME_MAX;
#else
    (void)tstate;
    return 0;
#endif
}

/* The position of frame `f`, with the depth `total`. */
static inline lh_position
position_of(_PyInterpreterFrame *f, unsigned int total)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (lh_position){f, (uintptr_t)f->instr_ptr, total};
#else
    return (lh_position){f, (uintptr_t)f->prev_instr, total};
#endif
}

lh_position
lh_frames_position(PyThreadState *tstate, int with_total)
{
    _PyInterpreterFrame *f = top_frame(tstate);
    if (f == NULL) {
        return (lh_position){NULL, 0, 0};
    }
    unsigned int total = with_total ? depth_below_top(tstate, f) : 0;
    if (with_total && total == 0) {
        return (lh_position){NULL, 0, 0};
    }
    return position_of(f, total);
}

int
lh_frames_capture_top(PyThreadState *tstate, lh_frame *top, uint16_t *total,
                      lh_position *pos)
{
    _PyInterpreterFrame *f = top_frame(tstate);
    _PyInterpreterFrame *taken;
    int n = capture(tstate, top, 1, total, &taken);
    /* A thread's own top frame that is taken has started: its instruction
       is past the code's first traceable one, so any frame at the same
       instruction of that code has started too, whoever owns it.  (A
       generator's frame counts as started wherever its instruction is:
       those are left out.)  Only a frame that runs that code can be at
       that instruction: frames of the interpreter or the C stack run
       code of their own.  The depth is the one lh_frames_position()
       reads for that frame, or one it never reads (a walk's, when the
       count of entered frames is off: see stack_depth). */
    if (taken == f && f != NULL && f->owner == FRAME_OWNED_BY_THREAD) {
        *pos = position_of(f, total != NULL ? *total : 0);
    }
    else {
        *pos = (lh_position){NULL, 0, 0};
    }
    return n;
}

unsigned int
lh_frames_walked_depth(PyThreadState *tstate)
{
    int unstarted = 0;
    return walk_depth(first_started_frame(top_frame(tstate), &unstarted), 0);
}

int
lh_frames_find(PyThreadState *tstate, int skip, int limit, lh_frame *out,
               int (*is_user)(void *ctx, PyObject *code), void *ctx)
{
    int unstarted = 0;
    _PyInterpreterFrame *f = first_started_frame(top_frame(tstate),
                                                 &unstarted);
    _PyInterpreterFrame *chosen = NULL; /* a 1, else the first 2 */
    for (; f != NULL && limit > 0; f = f->previous) {
        if (!is_shown(f)) {
            continue;
        }
        if (skip > 0) {
            skip--;
            continue;
        }
        limit--;
        int found = is_user(ctx, (PyObject *)frame_code(f));
        if (found == 1) {
            chosen = f;
            break;
        }
        if (found == 2 && chosen == NULL) {
            chosen = f;
        }
    }
    if (chosen != NULL && out != NULL) {
        take_frame(out, chosen);
    }
    return chosen != NULL;
}

int
lh_frame_lineno(const lh_frame *frame)
{
    PyCodeObject *code = (PyCodeObject *)frame->code;
    int line = PyCode_Addr2Line(code, (int)frame->lasti * (int)sizeof(_Py_CODEUNIT));
    return line < 0 ? 0 : line;
}

#else /* 3.10: frames are PyFrameObjects */

int
lh_frames_capture(PyThreadState *tstate, lh_frame *buf, int max,
                  uint16_t *total)
{
    int n = 0;
    PyFrameObject *f = tstate->frame;
    for (; f != NULL && n < max; f = f->f_back) {
        buf[n].code = (PyObject *)f->f_code;
        buf[n].lasti = f->f_lasti;
        n++;
    }
    if (total == NULL) {
        return n;
    }
    unsigned int depth = (unsigned int)n;
    for (; f != NULL && depth < LH_TOTAL_NFRAME_MAX; f = f->f_back) {
        depth++;
    }
    *total = (uint16_t)depth;
    return n;
}

lh_position
lh_frames_position(PyThreadState *tstate, int with_total)
{
    PyFrameObject *f = tstate->frame;
    if (f == NULL || with_total) {
        return (lh_position){NULL, 0, 0}; /* only a walk counts the depth */
    }
    return (lh_position){f->f_code, (uintptr_t)(intptr_t)f->f_lasti, 0};
}

int
lh_frames_capture_top(PyThreadState *tstate, lh_frame *top, uint16_t *total,
                      lh_position *pos)
{
    int n = lh_frames_capture(tstate, top, 1, total);
    *pos = lh_frames_position(tstate, total != NULL);
    return n;
}

unsigned int
lh_frames_walked_depth(PyThreadState *tstate)
{
    unsigned int depth = 0;
    for (PyFrameObject *f = tstate->frame;
         f != NULL && depth < LH_TOTAL_NFRAME_MAX; f = f->f_back) {
        depth++;
    }
    return depth;
}

int
lh_frames_find(PyThreadState *tstate, int skip, int limit, lh_frame *out,
               int (*is_user)(void *ctx, PyObject *code), void *ctx)
{
    PyFrameObject *chosen = NULL; /* a 1, else the first 2 */
    for (PyFrameObject *f = tstate->frame; f != NULL && limit > 0;
         f = f->f_back) {
        if (skip > 0) {
            skip--;
            continue;
        }
        limit--;
        int found = is_user(ctx, (PyObject *)f->f_code);
        if (found == 1) {
            chosen = f;
            break;
        }
        if (found == 2 && chosen == NULL) {
            chosen = f;
        }
    }
    if (chosen != NULL && out != NULL) {
        out->code = (PyObject *)chosen->f_code;
        out->lasti = chosen->f_lasti;
    }
    return chosen != NULL;
}

int
lh_frame_lineno(const lh_frame *frame)
{
    PyCodeObject *code = (PyCodeObject *)frame->code;
    /* 3.10 counts f_lasti in code units. */
    int line = PyCode_Addr2Line(code, (int)frame->lasti * (int)sizeof(_Py_CODEUNIT));
    return line < 0 ? 0 : line;
}

#endif

PyObject *
lh_frame_filename(const lh_frame *frame)
{
    PyObject *name = ((PyCodeObject *)frame->code)->co_filename;
    if (name == NULL || !PyUnicode_Check(name)) {
        return NULL;
    }
    Py_INCREF(name);
    return name;
}

uintptr_t
lh_object_block(PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    size_t header = 0;
    if (PyType_IS_GC(type)) {
        header += sizeof(PyGC_Head);
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* Managed dict and weakref pointers sit before the GC header. */
    if (PyType_HasFeature(type, Py_TPFLAGS_MANAGED_DICT)
        || PyType_HasFeature(type, Py_TPFLAGS_MANAGED_WEAKREF)) {
        header += 2 * sizeof(PyObject *);
    }
#elif PY_VERSION_HEX >= 0x030B0000
    if (PyType_HasFeature(type, Py_TPFLAGS_MANAGED_DICT)) {
        header += 2 * sizeof(PyObject *);
    }
#endif
    return (uintptr_t)obj - header;
}

static int
int_value(PyObject *value, unsigned long *result)
{
    if (!PyLong_CheckExact(value)) {
        return 0;
    }
    /* Tags are small non-negative ints: read their one digit inline
       rather than call into libpython on every allocation. */
#if PY_VERSION_HEX >= 0x030C0000
    PyLongObject *v = (PyLongObject *)value;
    if (PyUnstable_Long_IsCompact(v)) {
        *result = (unsigned long)PyUnstable_Long_CompactValue(v);
        return 1;
    }
#else
    Py_ssize_t ndigits = Py_SIZE(value);
    if (ndigits == 0 || ndigits == 1) {
        *result = ndigits ? ((PyLongObject *)value)->ob_digit[0] : 0;
        return 1;
    }
#endif
    *result = PyLong_AsUnsignedLongMask(value);
    return 1;
}

/* lh_context_int() where the variable's cache does not answer: through
   PyContextVar_Get(), which may allocate.  Rare, and out of line, so that
   the hooks that read the tag on every allocation stay short. */
static LH_COLD int
context_int_slow(PyThreadState *tstate, PyObject *var, unsigned long *result)
{
    /* ContextVar.set() and .reset() empty the cache, then allocate before
       they change the context; caching the old value in between would make
       the variable keep returning it.  So an empty cache is put back
       exactly as it was.  A stale one is never in that state, and is
       refreshed, so the next reads take lh_context_int()'s short path. */
    if (tstate->context == NULL) {
        return 0; /* the thread never used a context variable */
    }
    PyContextVar *cvar = (PyContextVar *)var;
    PyObject *cached = cvar->var_cached;
    uint64_t tsid = cvar->var_cached_tsid;
    uint64_t tsver = cvar->var_cached_tsver;
    /* Allocations happen while an exception is being handled: keep it. */
    PyObject *type = NULL, *exc = NULL, *tb = NULL;
    int pending = PyErr_Occurred() != NULL;
    if (pending) {
        PyErr_Fetch(&type, &exc, &tb);
    }
    PyObject *value = NULL;
    int found = 0;
    if (PyContextVar_Get(var, NULL, &value) == 0 && value != NULL) {
        found = int_value(value, result);
        Py_DECREF(value);
    }
    if (pending || PyErr_Occurred() != NULL) {
        PyErr_Restore(type, exc, tb); /* reading leaves no trace */
    }
    if (cached == NULL) {
        cvar->var_cached = NULL;
        cvar->var_cached_tsid = tsid;
        cvar->var_cached_tsver = tsver;
    }
    return found;
}

int
lh_context_int(PyThreadState *tstate, PyObject *var, unsigned long *result)
{
    /* PyContextVar_Get() caches what it finds in the variable, for one
       thread and one version of its context.  Where that cache is valid,
       read it directly: this runs on every allocation. */
    PyContextVar *cvar = (PyContextVar *)var;
    PyObject *cached = cvar->var_cached;
    if (cached != NULL && cvar->var_cached_tsid == tstate->id
        && cvar->var_cached_tsver == tstate->context_ver) {
        return int_value(cached, result);
    }
    return context_int_slow(tstate, var, result);
}
