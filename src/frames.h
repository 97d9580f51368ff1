/* frames.h - capture of Python tracebacks, and every other piece of code
 * that depends on the interpreter's internal layout.
 *
 * This is the only file that knows how each CPython version (3.10 to 3.15)
 * lays out its frames and objects; the rest of the tracer sees lh_frame.
 */
#ifndef PYLEAKHUNT_FRAMES_H
#define PYLEAKHUNT_FRAMES_H

#include <Python.h>
#include <stdint.h>

/* One captured frame.  The line number is not computed when a block is
   allocated (that walks the code's line table, which would dominate the
   cost of the hook); the code object and instruction offset are kept
   instead and turned into a line when a snapshot asks for it. */
typedef struct {
    PyObject *code; /* borrowed while capturing; a site holds a reference */
    /* Instruction offset, in the unit lh_frame_lineno uses.  64 bits wide
       so that the frame is two whole words with no padding: keys are
       hashed and compared by words right after being written. */
    int64_t lasti;
} lh_frame;

/* The thread state of the calling thread if it holds the GIL, else NULL.
   Safe to call without the GIL (the RAW domain hooks do). */
PyThreadState *lh_frames_gil_holder(void);

/* The calling thread's state, for callers that hold the GIL. */
PyThreadState *lh_frames_tstate(void);

/* From 3.12 the calling thread's state is a thread-local variable of
   CPython's, which PyThreadState_GetUnchecked() reads: one load, but a
   call from an extension, and the hooks ask some 60 times an iteration of
   W1 (3.0% of its time on 3.14, 0.6% on 3.15).  When that variable sits
   at a fixed offset from the thread pointer (CPython linked into the
   executable, as Debian's and Ubuntu's are), this returns the offset,
   found by reading CPython's function and checked against it on the
   calling thread; else 0 (a libpython loaded as a shared library,
   another architecture, before 3.12), and callers keep calling
   lh_frames_tstate(). */
intptr_t lh_frames_tstate_offset(void);

/* The calling thread's state read at `offset`, a non-zero value that
   lh_frames_tstate_offset() returned: the same as lh_frames_tstate(). */
static inline PyThreadState *
lh_frames_tstate_at(intptr_t offset)
{
#if defined(__x86_64__)
    PyThreadState *tstate;
    __asm__ volatile("movq %%fs:(%1), %0" : "=r"(tstate) : "r"(offset));
    return tstate;
#else
    (void)offset;
    return lh_frames_tstate();
#endif
}

/* For a caller that holds a GIL: 1 when that is certainly the main
   interpreter's, without asking for the thread state; 0 when only the
   thread state can tell. */
int lh_frames_gil_is_main(void);

/* Store up to `max` frames of `tstate`'s stack, most recent first, in
   `buf`.  *total gets the depth of the whole stack, capped at 65535,
   unless `total` is NULL: counting the frames beyond `max` walks the
   whole stack, which costs more than the rest in a deep server.  Returns
   the number stored.  `tstate` must be the caller's, with the GIL held. */
int lh_frames_capture(PyThreadState *tstate, lh_frame *buf, int max,
                      uint16_t *total);

/* Where a thread is: two words that name its top frame's code and the
   instruction that frame runs, for as long as that code lives, and the
   depth of its stack if asked for.  Reading it costs a few loads, where a
   capture checks the frame and turns the instruction into an offset: the
   site table's memo keeps the sites of recent positions (lh_site_memo),
   and a loop allocates at the same few positions again and again (the C
   code of json.loads allocates many objects under one call instruction).
   From 3.11 on: the frame and its instruction pointer, which points into
   the code's own bytecode; before: the code and its offset, since a frame
   object's memory is reused by frames of other code.  at == NULL: no
   position. */
typedef struct {
    const void *at;
    uintptr_t instr;
    uint32_t total; /* the stack's depth, as lh_frames_capture counts it */
} lh_position;

/* Whether a position can carry the depth of the stack: from 3.12, which
   counts the frames entered.  Before, only a walk counts it, and a
   position asked for with the depth is no position. */
#define LH_POSITION_HAS_TOTAL (PY_VERSION_HEX >= 0x030C0000)

/* A number that tells positions apart, for a table indexed by its low
   bits: neighbouring instructions of one code give neighbouring numbers. */
static inline size_t
lh_position_index(lh_position pos)
{
#if PY_VERSION_HEX >= 0x030B0000
    return (size_t)(pos.instr >> 1); /* a pointer to 2-byte code units */
#else
    return (size_t)pos.instr; /* an offset in code units */
#endif
}

/* The position of `tstate`'s top frame, shown or not, with the depth of
   the stack if `with_total`.  `tstate` must be the caller's, with the GIL
   held. */
lh_position lh_frames_position(PyThreadState *tstate, int with_total);

/* lh_frames_capture(tstate, top, 1, total); and *pos gets
   lh_frames_position(tstate, total != NULL) if any frame at that position
   would be the one taken, with that total (the top frame is shown and
   has started, and its position says so by itself), else no position. */
int lh_frames_capture_top(PyThreadState *tstate, lh_frame *top,
                          uint16_t *total, lh_position *pos);

/* The depth of `tstate`'s stack counted the slow way, frame by frame,
   which lh_frames_capture's *total must always equal (tests). */
unsigned int lh_frames_walked_depth(PyThreadState *tstate);

/* Store in *out the first frame of `tstate`'s stack, among the `limit`
   below the `skip` most recent ones, whose code `is_user(ctx, code)`
   accepts (out may be NULL); returns 1, or 0 when there is none.
   is_user() returns 0 (not it), 1 (it) or 2 (it, unless a frame that
   gives 1 comes within the limit: the user's code made from a string,
   userframe.h).  Frames are counted as lh_frames_capture counts them.
   `tstate` must be the caller's, with the GIL held. */
int lh_frames_find(PyThreadState *tstate, int skip, int limit, lh_frame *out,
                   int (*is_user)(void *ctx, PyObject *code), void *ctx);

/* Line number of a captured frame; 0 when unknown.  Needs the GIL. */
int lh_frame_lineno(const lh_frame *frame);

/* Filename of a captured frame (a new reference to a str), or NULL with
   no exception set when it has none.  Needs the GIL. */
PyObject *lh_frame_filename(const lh_frame *frame);

/* Start of the memory block that holds `obj`: objects tracked by the
   cyclic GC, and on 3.11+ objects with managed dicts or weakrefs, have a
   header in front of the PyObject. */
uintptr_t lh_object_block(PyObject *obj);

/* The int value of the context variable `var` in the current context of
   `tstate` (the caller's): returns 1 and sets *result, or 0 when unset or
   not an int.  Safe in the middle of ContextVar.set() (see frames.c).
   Needs the GIL. */
int lh_context_int(PyThreadState *tstate, PyObject *var,
                   unsigned long *result);

#endif /* PYLEAKHUNT_FRAMES_H */
