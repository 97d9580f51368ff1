/* state.h - the tracer's global state, in one struct.
 *
 * The allocator hooks are process-wide, so the state they use is too.  All
 * of it lives in `lh_tracer` (defined in hooks.c), with one exception: the
 * per-thread re-entrancy flag in hooks.c, which cannot live in a shared
 * struct.
 *
 * Locking.  The MEM and OBJ hooks run with the GIL held, but the RAW hooks
 * may not, and the C API may track blocks from any thread.  So every table
 * is guarded by `lock` (lock.h), which is nearly free for the GIL holder:
 * it is held for a few hundred nanoseconds at most, and nothing that could
 * block (or allocate through Python, or take the GIL) is ever done while
 * holding it.  Lock order: the GIL, if taken at all, is always taken
 * before `lock`, never after.
 */
#ifndef PYLEAKHUNT_STATE_H
#define PYLEAKHUNT_STATE_H

#include <Python.h>
#include <stdatomic.h>

#include "allocswap.h"
#include "extension_track.h"
#include "lock.h"
#include "sampling.h"
#include "tables.h"
#include "userframe.h"

/* Index of each hooked domain in the arrays below. */
enum { LH_RAW = 0, LH_MEM = 1, LH_OBJ = 2, LH_NDOMAINS = 3 };

/* tracemalloc's own domain numbers: every Python allocation is domain 0. */
#define LH_PYTHON_DOMAIN 0u

/* The largest traceback limit, the same as tracemalloc's. */
#define LH_MAX_NFRAME 65535

enum lh_common { LH_COMMON_NONE, LH_COMMON_TOP, LH_COMMON_DEPTH };

/* A testing check of the core's: whether it is on, and how many cases
   it checked and found wrong. */
typedef struct {
    int on;
    uint64_t checked;
    uint64_t wrong;
} lh_check;

typedef struct {
    /* Counted under `lock`. */
    uint64_t alloc_events;
    uint64_t free_events;
    uint64_t lost_blocks;    /* blocks the tracer failed to record */
    uint64_t sampled_blocks; /* allocations recorded in sampling mode */
    /* Objects created in a block other than the one just allocated, that
       the reference tracer (3.13+) looked up: reused from free lists. */
    uint64_t reuse_lookups;
    /* Blocks recorded when an object was reused in them (hooks.c,
       adopt_general). */
    uint64_t adopted_blocks;
} lh_counters;

typedef struct {
    /* --- configuration, changed only with the GIL held --- */
    int nframe;
    /* Whether sites count the frames beyond `nframe` (total_nframe); when
       not, their key's total is 0. */
    int total_nframe;
    size_t sample_bytes; /* 0: trace every block */
    /* The allocators that were installed when tracing started; the hooks
       forward to these.  They are kept after stop(), because another
       tracer that wrapped ours may still call our hooks. */
    PyMemAllocatorEx underlying[LH_NDOMAINS];
    /* The ctx of our MEM and OBJ entry points (RAW's slot is unused):
       laid out as CPython's debug hooks' ctx, and filled from theirs when
       they are what start() replaces (allocswap.h says why). */
    lh_hook_ctx hook_ctxs[LH_NDOMAINS];
    /* The ctx OBJ's allocator had before ours, if it differs from MEM's
       (the debug hooks'), else &hook_ctxs[LH_OBJ]: a thread that read our
       function with the old ctx, while start() or stop() swapped the
       struct (a thread of a subinterpreter with a GIL of its own), was
       calling OBJ if it passed this.  Written atomically by start(). */
    void *replaced_obj_ctx;
    int hooks_installed;
    int atfork_registered;
    /* Whose GIL makes a thread the lock's fast side (lock.h). */
    PyInterpreterState *main_interp;
    /* Where the MEM and OBJ hooks read the calling thread's state: its
       offset from the thread pointer, or 0 to ask CPython
       (lh_frames_tstate_offset). */
    intptr_t tstate_offset;
    /* The interpreter that started tracing.  Only its threads' frames,
       and the main interpreter's, are recorded (hooks.c, recordable()).
       Set with the GIL held, before the hooks are installed. */
    PyInterpreterState *trace_interp;
    /* Read without the lock on the fast path, so atomic. */
    atomic_int tracing;

    /* --- everything below is guarded by `lock` --- */
    lh_lock lock;
    lh_block_table blocks;
    lh_site_table sites;
    lh_foreign *foreign;
    size_t traced_bytes;
    size_t peak_bytes;
    lh_counters counters;
    lh_sample_filter sample_filter;
    /* Whether hooks.c's common-case paths apply: an exact trace keyed by
       one frame, with or without the depth of the stack (lh_common). */
    int common;
    /* A contextvars.ContextVar whose value (an int) tags allocations, or
       NULL.  Set and read with the GIL held. */
    PyObject *tag_var;
    /* When enabled, a traceback whose frames are all library code also
       records the user's frame below them (userframe.h).  GIL held. */
    lh_user_rule user;
#if PY_VERSION_HEX >= 0x030D0000
    /* The reference tracer that held the slot when ours took it, to which
       ours forwards every event (hooks.c); set with the GIL held. */
    PyRefTracer ref_prev;
    void *ref_prev_data;
    /* Set when 3.15 tells ours it was replaced (TRACKER_REMOVED). */
    atomic_int ref_displaced;
#endif
    /* Testing: when `on`, every traceback the general path captures has
       its depth counted again the slow way (frames.h); `wrong` counts
       those that differ. */
    lh_check depth_check;
    /* Testing: when `on`, the site memo (tables.h) is not used; each site
       found the full way is compared with the one the memo would have
       given (the site table's `shadow`), and `wrong` counts those that
       differ. */
    lh_check memo_check;
    /* Scratch key for capturing the current traceback, with room for
       `scratch_frames` frames: nframe, and the user's frame. */
    lh_site_key *scratch;
    size_t scratch_frames;

    /* --- the tracer's own memory (tables.c), guarded by `lock` or by
       being used before tracing starts --- */
    atomic_size_t mem_used;
    atomic_long mem_fail_countdown; /* <0: never fail */
    int mem_oom;                    /* set when uthash failed to allocate */

    /* --- extensions' PyTraceMalloc_Track calls (extension_track.c),
       guarded by its own mutex --- */
    lh_ext_track_state ext;
} lh_tracer_state;

extern lh_tracer_state lh_tracer;

#endif /* PYLEAKHUNT_STATE_H */
