/* hooks.c - allocator hooks: record each block with its call site.
 *
 * Flow of an allocation: the hook calls the allocator it replaced; if that
 * succeeded and tracing is on, it captures the traceback into a scratch
 * key, interns the (domain, tag, traceback) site, stores the block in the
 * block table and adds its size to the site's aggregates.  A free removes
 * the block and subtracts it.  Snapshots then read the site aggregates.
 *
 * The hooks learn their domain from their ctx and forward to
 * lh_tracer.underlying.  Other threads may call the allocators while
 * start() or stop() swaps them; allocswap.c writes them so that no thread
 * reads a field half written, and the entry points accept any ctx such a
 * thread can read with them (allocswap.h).
 */
#include "hooks.h" /* Python.h first: it sets the feature macros */

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "compiler.h"
#include "frames.h"
#include "freelists.h"
#include "allocswap.h"
#include "sampling.h"

lh_tracer_state lh_tracer = {
    .replaced_obj_ctx = &lh_tracer.hook_ctxs[LH_OBJ],
    .mem_fail_countdown = -1,
    .lock = {.spin = ATOMIC_FLAG_INIT, .slow = LH_LOCK_SYMMETRIC},
};

/* The hooks' per-thread state.  Per-thread state cannot live in
   lh_tracer, so it lives here, in one struct: the hooks find it with one
   address load (initial-exec: no __tls_get_addr call on any allocation).
   - in_hook: set while a hook runs on this thread.  pymalloc falls back
     to PyMem_RawMalloc() for large blocks, so an OBJ hook can re-enter
     the RAW hook for the same block: the inner call must only forward.
   - paused: set while this thread runs the tracer's own analysis
     (snapshots, grouping): its allocations are not recorded, so the
     tracer neither slows its own work down nor shows up in what it
     reports.  Frees are still seen, so nothing recorded before goes
     stale.
   - last_block, last_size (3.13+): the last block this thread
     allocated, recorded or left out on purpose (paused, or not drawn by
     sampling), and its size; 0 once an object was created in it.  An
     object created in it is new: it has its traceback already, or is not
     to have one, so the reference tracer can skip it cheaply. */
typedef struct {
    int in_hook;
    int paused;
    uintptr_t last_block;
    size_t last_size;
} lh_thread_state;

static __thread lh_thread_state lh_thread
    __attribute__((tls_model("initial-exec")));

int
lh_hooks_pause_thread(int paused)
{
    int was = lh_thread.paused;
    lh_thread.paused = paused;
    return was;
}

#define S lh_tracer

static inline void
note_last_block(uintptr_t ptr, size_t size)
{
#if PY_VERSION_HEX >= 0x030D0000
    lh_thread.last_block = ptr;
    lh_thread.last_size = size;
#else
    (void)ptr;
    (void)size;
#endif
}

/* ---- accounting (lock held) ------------------------------------------ */

/* What a block of `size` bytes stands for.  In sampled mode a recorded
   block of the Python heap stands for 1/p blocks and size/p bytes (see
   sampling.h); foreign domains are always exact.  A pure function of the
   size, so a block adds and later removes exactly the same amounts. */
static lh_weight
sampled_weight(unsigned int domain, size_t size)
{
    if (domain != LH_PYTHON_DOMAIN) {
        return (lh_weight){size, 1.0};
    }
    return lh_sample_weight(size, S.sample_bytes);
}

/* A block of `bytes` (after weighting) joins or leaves `site`. */
static inline void
count_in(lh_site *site, size_t bytes)
{
    site->count++;
    site->size += bytes;
    S.traced_bytes += bytes;
    if (S.traced_bytes > S.peak_bytes) {
        S.peak_bytes = S.traced_bytes;
    }
}

static inline void
count_out(lh_site *site, size_t bytes)
{
    site->count--;
    site->size -= bytes;
    /* The low-water mark that snapshots report (tables.h). */
    if (site->size < site->low) {
        site->low = site->size;
    }
    S.traced_bytes -= bytes;
}

static inline void
account_add(lh_site *site, size_t size)
{
    size_t bytes = size;
    if (S.sample_bytes) {
        lh_weight w = sampled_weight(lh_key_domain(&site->key), size);
        bytes = w.bytes;
        site->est_count += w.count;
    }
    count_in(site, bytes);
}

static inline void
account_remove(uint32_t site_id, size_t size)
{
    lh_site *site = S.sites.by_id[site_id];
    size_t bytes = size;
    if (S.sample_bytes) {
        lh_weight w = sampled_weight(lh_key_domain(&site->key), size);
        bytes = w.bytes;
        site->est_count = site->count > 1 ? site->est_count - w.count : 0.0;
    }
    count_out(site, bytes);
}

/* ---- capturing the current site (lock held) -------------------------- */

static size_t
scratch_keylen(int nframe)
{
    return sizeof(lh_site_key) + (size_t)nframe * sizeof(lh_frame);
}

/* Where an allocation comes from: the thread's state if its stack may be
   read (NULL when it does not hold the GIL: the site then has no frames
   and shows as "<unknown>"), and the request tag in effect. */
typedef struct {
    PyThreadState *tstate;
    uint32_t tag;
} lh_origin;

/* The tag of the current context of `tstate`, 0 if none.  GIL held. */
static uint32_t
current_tag(PyThreadState *tstate)
{
    unsigned long value = 0;
    return lh_context_int(tstate, S.tag_var, &value) ? (uint32_t)value : 0;
}

/* The request tag of `tstate`, a recordable() one, or 0. */
static inline uint32_t
tag_of(PyThreadState *tstate)
{
    return tstate != NULL && S.tag_var != NULL ? current_tag(tstate) : 0;
}

/* `tstate` if its frames may be recorded, else NULL: the allocation is
   then counted without frames ("<unknown>").  Sites keep the code objects
   of their frames until a snapshot or stop() releases them, under the
   main interpreter's GIL, so a frame is recorded only from an interpreter
   that outlives the sites: the main one, and the one that started
   tracing (its exit stops tracing).  A subinterpreter may end first, and
   code objects kept past its end are freed into a dead interpreter (3.12:
   its collector's lists; an isolated one: its own allocator, and its own
   GIL, which does not serialize with ours): the program crashed at the
   next snapshot.  test_safety_subinterpreters.py. */
static inline PyThreadState *
recordable(PyThreadState *tstate)
{
    if (tstate == NULL || tstate->interp == S.main_interp
        || tstate->interp == S.trace_interp) {
        return tstate;
    }
    return NULL;
}

static inline lh_origin
origin_of(PyThreadState *tstate)
{
    tstate = recordable(tstate);
    return (lh_origin){tstate, tag_of(tstate)};
}

/* ---- the user's frame (userframe.h) ------------------------------------ */

/* With the user-frame rule on (the web integrations record one frame),
   a tagged allocation (made while a request is served) whose recorded
   frames are all library code also records the first user frame below
   them, so that reports name the user's line (kept.append(
   json.loads(body)) allocates in json/decoder.py).

   Searching the stack for that frame on every allocation would double the
   tracer's cost in a web framework, where most allocations are the
   framework's own, made far from any user frame.  So only the sites that
   hold many live blocks are searched from: a leak makes its site hold
   more and more, while the framework's short-lived allocations do not.
   Once a site of library frames holds LH_USER_ARM_COUNT blocks, its next
   allocations are recorded with the user's frame, in sites of their own,
   which the reports key by the user's line and whose growth they follow
   from then on. */
#define LH_USER_ARM_COUNT 64

/* How many frames below the recorded ones are searched: enough for a
   library called by the user's code (json.loads: 3, logging: 6), and a
   bound for a deep recursion. */
#define LH_USER_SEARCH 64

/* A site whose searches found no user's frame this many times in a row is
   searched from no more: its allocations come from library code only (a
   server's own loop), and each search would walk the whole stack. */
#define LH_USER_MISSES 32

/* Whether allocations at a site of many blocks search for the user's
   frame: yes when its frames are all library code. */
enum lh_site_class { LH_SITE_NO_SEARCH = 1, LH_SITE_SEARCH = 2 };

static int
is_user_code(void *Py_UNUSED(ctx), PyObject *code)
{
    return lh_user_code(&S.user, code);
}

/* Classify a site's frames, once; lock held.  The rule is read under the
   main interpreter's GIL, under which it is set (never changed while it
   is read). */
static __attribute__((noinline)) int
site_all_library(lh_site *site, PyThreadState *tstate)
{
    if (tstate == NULL || tstate->interp != S.main_interp) {
        return 0;
    }
    if (site->user_class == 0) {
        int n = lh_key_nframe(&site->key);
        int library = n > 0 && n <= S.nframe;
        for (int i = 0; library && i < n; i++) {
            /* Code made from a string gives way to a file below it. */
            library = is_user_code(NULL, site->key.frames[i].code)
                      != LH_CODE_USER;
        }
        site->user_class = library ? LH_SITE_SEARCH : LH_SITE_NO_SEARCH;
    }
    return site->user_class == LH_SITE_SEARCH;
}

/* Whether an allocation at `site` looks for the user's frame below: only
   tagged ones (made while a request is served), whose reports want it. */
static inline int
site_wants_user_frame(lh_site *site, PyThreadState *tstate)
{
    /* The tag first: untagged, the common case outside a web server, costs
       a test of a word just compared. */
    return lh_key_tag(&site->key) != 0 && S.user.enabled
           && site->count >= LH_USER_ARM_COUNT
           && site_all_library(site, tstate);
}

/* The site of the allocation whose `n` frames `key` holds and which
   `site_wants_user_frame` sent here: with the user's frame added to the
   key (the scratch key has room for it), when one is found. */
static lh_site *
site_with_user_frame(PyThreadState *tstate, lh_site_key *key, int n,
                     uint16_t total, lh_site *site)
{
    if (!lh_frames_find(tstate, n, LH_USER_SEARCH, &key->frames[n],
                        is_user_code, NULL)) {
        if (++site->user_misses == LH_USER_MISSES) {
            site->user_class = LH_SITE_NO_SEARCH; /* see LH_USER_MISSES */
        }
        return site;
    }
    site->user_misses = 0;
    key->depth = lh_key_depth(n + 1, total);
    return lh_sites_intern(&S.sites, key, scratch_keylen(n + 1));
}

/* Testing (lh_hooks_check_depth): count `total` against the walk.  Out
   of line, and on the general path only: the hooks' common case never
   pays for it. */
static LH_COLD void
check_depth(PyThreadState *tstate, uint16_t total)
{
    if (!S.total_nframe) {
        return; /* total is 0: nothing was counted */
    }
    S.depth_check.checked++;
    if (total != lh_frames_walked_depth(tstate)) {
        S.depth_check.wrong++;
    }
}

/* The site of an allocation made now, in `domain`, from `origin`. */
static lh_site *
current_site(unsigned int domain, lh_origin origin)
{
    PyThreadState *tstate = origin.tstate;
    lh_site_key *key = S.scratch;
    uint16_t total = 0;
    int n = 0;
    if (tstate != NULL) {
        n = lh_frames_capture(tstate, key->frames, S.nframe,
                              S.total_nframe ? &total : NULL);
        if (S.depth_check.on) {
            check_depth(tstate, total);
        }
    }
    key->where = lh_key_where(domain, origin.tag);
    key->depth = lh_key_depth(n, total);
    lh_site *site = lh_sites_intern(&S.sites, key, scratch_keylen(n));
    if (site != NULL && site_wants_user_frame(site, tstate)) {
        site = site_with_user_frame(tstate, key, n, total, site);
    }
    return site;
}

/* Count a recorded block in the filter that lets frees of unrecorded
   blocks skip the lock. */
static void
note_sampled(uintptr_t ptr)
{
    S.counters.sampled_blocks++;
    lh_filter_add(&S.sample_filter, ptr);
}

/* Put a block in the block table, and un-count the records the table
   dropped meanwhile.  `replace`: the address may be recorded already (see
   lh_blocks_replace).  Returns -1 when the block could not be recorded. */
static int
table_put(uintptr_t ptr, uint32_t site_id, size_t size, int replace)
{
    lh_block_record dropped[LH_MAX_DROPPED];
    int n;
    int result = (replace ? lh_blocks_replace : lh_blocks_put)(
        &S.blocks, ptr, site_id, size, dropped, &n);
    for (int i = 0; i < n; i++) {
        account_remove(dropped[i].site_id, dropped[i].size);
        if (S.sample_bytes) {
            lh_filter_remove(&S.sample_filter, dropped[i].ptr);
        }
    }
    return result;
}

/* Record a block of the Python domain (the block table's only one), in
   `site` or in the current site.  Returns -1 when it could not (the loss
   is counted; `site` is NULL when no site could be made). */
static int
record_in_site(uintptr_t ptr, size_t size, lh_site *site, int replace)
{
    if (site == NULL || table_put(ptr, site->id, size, replace) < 0) {
        S.counters.lost_blocks++;
        return -1;
    }
    account_add(site, size);
    if (S.sample_bytes) {
        note_sampled(ptr);
    }
    return 0;
}

static int
record_block(uintptr_t ptr, size_t size, lh_origin origin, int replace)
{
    S.counters.alloc_events++;
    return record_in_site(ptr, size, current_site(LH_PYTHON_DOMAIN, origin),
                          replace);
}

/* Remove `ptr`; fills *site_id and *size and returns 1 if it was there. */
static int
forget_block(uintptr_t ptr, uint32_t *site_id, size_t *size)
{
    S.counters.free_events++;
    if (!lh_blocks_pop(&S.blocks, ptr, site_id, size)) {
        return 0;
    }
    account_remove(*site_id, *size);
    if (S.sample_bytes) {
        lh_filter_remove(&S.sample_filter, ptr);
    }
    return 1;
}

/* Put back a block taken out by a realloc that then failed. */
static void
restore_block(uintptr_t ptr, uint32_t site_id, size_t size)
{
    if (S.sites.by_id[site_id] == NULL) {
        /* A RAW realloc without the GIL, and a snapshot in between pruned
           the site (it had no block left): the block cannot be put back. */
        S.counters.lost_blocks++;
        return;
    }
    if (table_put(ptr, site_id, size, 0) < 0) {
        S.counters.lost_blocks++;
        return;
    }
    account_add(S.sites.by_id[site_id], size);
    if (S.sample_bytes) {
        lh_filter_add(&S.sample_filter, ptr);
    }
}

static inline int
is_tracing(void)
{
    return atomic_load_explicit(&S.tracing, memory_order_relaxed);
}

/* The calling thread's state, for the MEM and OBJ hooks (the GIL held):
   read inline where CPython's variable has a fixed place. */
static inline PyThreadState *
hook_tstate(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    intptr_t offset = S.tstate_offset;
    if (offset != 0) {
        return lh_frames_tstate_at(offset);
    }
#endif
    return lh_frames_tstate();
}

/* The calling thread's state if its stack may be read in `domain`. */
static inline PyThreadState *
stack_owner(int domain)
{
    /* MEM and OBJ may only be called with the GIL held.  RAW may be called
       by any thread, with or without a thread state (3.14+ says it runs
       without an attached one): its hooks only read which thread holds
       the GIL, and never take the GIL or make a thread state, which could
       deadlock or allocate (test_safety: ..._neither_wait_for_the_gil). */
    return domain == LH_RAW ? lh_frames_gil_holder() : hook_tstate();
}

/* Whether the calling thread, whose state stack_owner() gave, holds the
   main interpreter's GIL: then it takes the lock's fast side (lock.h). */
static inline int
on_main_gil(PyThreadState *tstate)
{
    if (tstate == NULL) {
        return 0;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* A subinterpreter may have a GIL of its own. */
    return tstate->interp == S.main_interp;
#else
    return 1;
#endif
}

/* For callers that are not hooks: the lock, whether or not they hold the
   GIL. */
void
lh_hooks_lock(void)
{
    lh_lock_acquire(&S.lock, on_main_gil(lh_frames_gil_holder()));
}

void
lh_hooks_unlock(void)
{
    lh_lock_release(&S.lock, on_main_gil(lh_frames_gil_holder()));
}

/* Turn `check` on or off, after reading its counts and restarting them;
   lock held. */
static void
restart_check(lh_check *check, int on, uint64_t *checked, uint64_t *wrong)
{
    *checked = check->checked;
    *wrong = check->wrong;
    *check = (lh_check){on, 0, 0};
}

void
lh_hooks_check_depth(int on, uint64_t *checked, uint64_t *wrong)
{
    lh_hooks_lock();
    restart_check(&S.depth_check, on, checked, wrong);
    lh_hooks_unlock();
}

void
lh_hooks_check_memo(int on, uint64_t *checked, uint64_t *wrong)
{
    lh_hooks_lock();
    restart_check(&S.memo_check, on, checked, wrong);
    /* Neither memo may carry a site from before into the other mode. */
    memset(&S.sites.memo, 0, sizeof(S.sites.memo));
    memset(&S.sites.shadow, 0, sizeof(S.sites.shadow));
    lh_hooks_unlock();
}

int
lh_hooks_check_tstate(intptr_t *offset)
{
    *offset = S.tstate_offset;
    return hook_tstate() == lh_frames_tstate();
}

/* In sampled mode, most allocations are not recorded at all; nor are the
   tracer's own.  The countdown runs on in the tracer's own allocations
   too, so that a sample it swallowed restarts the gap as usual. */
static inline int
skip_allocation(size_t size)
{
    return (S.sample_bytes != 0 && !lh_sample_take(size, S.sample_bytes))
           || lh_thread.paused;
}

/* ... and frees of blocks that were certainly not recorded skip the lock. */
static inline int
skip_free(void *ptr)
{
    return S.sample_bytes != 0
           && !lh_filter_maybe(&S.sample_filter, (uintptr_t)ptr);
}

/* The general path of an allocation that the common case did not take:
   any domain, thread and mode.  Out of line together with sampled mode's
   draw, so that the hooks' common case stays short. */
static __attribute__((noinline)) void
after_alloc(int domain, void *ptr, size_t size)
{
    if (!skip_allocation(size)) {
        PyThreadState *tstate = stack_owner(domain);
        lh_origin origin = origin_of(tstate);
        int gil = on_main_gil(tstate);
        lh_lock_acquire(&S.lock, gil);
        if (is_tracing()) {
            record_block((uintptr_t)ptr, size, origin, 0);
        }
        lh_lock_release(&S.lock, gil);
    }
    /* Noted even when left out (a paused thread, a block sampling did not
       draw): the object created in it is new, not reused, so the
       reference tracer has nothing to look up.  Without this, each object
       a snapshot made cost a search of the main table, a cache miss: half
       the first aggregated snapshot of 100,000 sites. */
    note_last_block((uintptr_t)ptr, size);
}

/* forget_block() for any domain and thread.  Returns 1 when `ptr` was
   recorded. */
static __attribute__((noinline)) int
forget_general(int domain, uintptr_t ptr, uint32_t *site_id, size_t *size)
{
    int gil = on_main_gil(stack_owner(domain));
    lh_lock_acquire(&S.lock, gil);
    int found = is_tracing() && forget_block(ptr, site_id, size);
    lh_lock_release(&S.lock, gil);
    return found;
}

/* Sampled mode's fast path: a request pymalloc serves itself (512 bytes
   or less: it never re-enters the RAW hook, so no re-entrancy flag is
   needed) that the countdown does not pick is forwarded with nothing
   else done.  The hooks test this first and keep everything else in
   functions of their own, so that this path needs no stack frame. */
static inline int
small_and_not_sampled(int domain, size_t size)
{
    return domain != LH_RAW && size <= 512 && S.sample_bytes != 0
           && lh_sample_fast_skip(size, S.sample_bytes);
}

/* ---- the common case ------------------------------------------------- */

/* Nearly every event is a MEM or OBJ one, from the main interpreter's GIL
   holder, with one frame and exact counts (S.common: tracemalloc's
   default, and the web integrations'), and its site is in the site cache.
   Written out for just that case, with the one-frame key in registers
   and the general path out of line, an allocation costs about 155
   instructions instead of 200 and a free 85 instead of 95 (callgrind,
   Flask hello world).  Reallocations take it too (40 a request in a
   waitress server), and callocs.  When these return 0 they have changed
   nothing, and the general path does it all. */

/* The common case's rarer turns, kept out of line: what the block
   table's short paths (the nursery, the main table's home slot) do not
   cover, such as a stale record or a table that must grow.  The general
   path does them. */
static LH_COLD void
record_elsewhere(uintptr_t ptr, size_t size, lh_site *site)
{
    record_in_site(ptr, size, site, 0);
}

static LH_COLD int
forget_elsewhere(uintptr_t ptr, uint32_t *site_id, size_t *size)
{
    return forget_block(ptr, site_id, size);
}

/* Called with the lock held whenever the configuration changes, and
   when tracing starts or stops: the common case is off while not
   tracing, so that the common paths need not test both. */
static void
update_common(void)
{
    if (!is_tracing() || S.nframe != 1 || S.sample_bytes != 0) {
        S.common = LH_COMMON_NONE;
    }
    else {
        S.common = S.total_nframe ? LH_COMMON_DEPTH : LH_COMMON_TOP;
    }
}

/* Who calls a hook, for the common case: the caller's thread state if
   the event may take it (a thread of the main interpreter that holds its
   GIL; before 3.12 a subinterpreter's threads hold it too, but their
   frames are not recorded: recordable()), else NULL; and the mode it was
   read in, LH_COMMON_NONE with a NULL thread state, which the common
   paths check again under the lock (start() may have run meanwhile in a
   subinterpreter with a GIL of its own). */
typedef struct {
    PyThreadState *tstate;
    int mode;
} lh_caller;

/* The common case's mode for an event of `domain`: never for RAW, whose
   hooks may run without the GIL. */
static inline int
common_mode(int domain)
{
    return domain == LH_RAW ? LH_COMMON_NONE : S.common;
}

static inline lh_caller
common_caller(int domain)
{
    int mode = common_mode(domain);
    PyThreadState *tstate =
        mode == LH_COMMON_NONE ? NULL : hook_tstate();
    /* The main interpreter's thread, on every version (recordable()). */
    if (tstate == NULL || tstate->interp != S.main_interp) {
        return (lh_caller){NULL, LH_COMMON_NONE};
    }
    return (lh_caller){tstate, mode};
}

/* The mode in which a free may take the common case, or LH_COMMON_NONE.
   As common_caller(), but a free needs no frames: when the GIL held is
   certainly the main interpreter's, it asks for no thread state. */
static inline int
forget_mode(int domain)
{
    int mode = common_mode(domain);
    if (mode == LH_COMMON_NONE || lh_frames_gil_is_main()) {
        return mode;
    }
    return on_main_gil(hook_tstate()) ? mode : LH_COMMON_NONE;
}

/* Testing (lh_hooks_check_memo): compare `site`, found the full way for
   `pos` and `tag`, with the site the memo would have given; then
   remember it as the memo would.  Out of line, and only on the path that
   missed the memo: while the check is off it costs one test there. */
static LH_COLD void
check_memo(lh_position pos, uint32_t tag, lh_site *site)
{
    lh_site *predicted = lh_memo_get(&S.sites.shadow, pos, tag);
    if (predicted != NULL) {
        S.memo_check.checked++;
        S.memo_check.wrong += predicted != site;
    }
    lh_memo_put(&S.sites.shadow, pos, tag, site);
}

/* The site of an allocation of the Python domain made now by `tstate`,
   under the request `tag`, in the common case's `mode`, from the site
   cache, or NULL; lock held.  The memo comes first: most allocations are
   made at a position (lh_position) where one was made before. */
static inline lh_site *
common_site(PyThreadState *tstate, int mode, uint32_t tag)
{
    int with_total = mode == LH_COMMON_DEPTH;
    lh_frame top;
    uint16_t total = 0;
    if (with_total && !LH_POSITION_HAS_TOTAL) {
        /* No position to remember (3.10, 3.11). */
        uint64_t where = lh_key_where(LH_PYTHON_DOMAIN, tag);
        int n = lh_frames_capture(tstate, &top, 1, &total);
        return lh_sites_cached_one(&S.sites, where, lh_key_depth(n, total),
                                   &top);
    }
    lh_position pos = lh_frames_position(tstate, with_total);
    lh_site *site = lh_memo_get(&S.sites.memo, pos, tag);
    if (site != NULL) {
        return site;
    }
    /* Two calls, so that each is specialized: the depth walk is long. */
    uint64_t where = lh_key_where(LH_PYTHON_DOMAIN, tag);
    int n = with_total ? lh_frames_capture_top(tstate, &top, &total, &pos)
                       : lh_frames_capture_top(tstate, &top, NULL, &pos);
    site = lh_sites_cached_one(&S.sites, where, lh_key_depth(n, total),
                               &top);
    if (site != NULL && S.memo_check.on) {
        check_memo(pos, tag, site); /* the memo stays empty */
    }
    else if (site != NULL) {
        lh_memo_put(&S.sites.memo, pos, tag, site);
    }
    return site;
}

/* Record `ptr` as record_block() does, if the common case applies to
   `caller`; returns 0 if it does not (nothing done). */
static inline int
common_alloc(lh_caller caller, uintptr_t ptr, size_t size)
{
    PyThreadState *tstate = caller.tstate;
    if (tstate == NULL || lh_thread.paused) {
        return 0;
    }
    int mode = caller.mode;
    /* The tag is read before the lock: reading it may allocate. */
    uint32_t tag = tag_of(tstate);
    int done = 0;
    lh_lock_acquire(&S.lock, 1);
    if (S.common == mode) {
        lh_site *site = common_site(tstate, mode, tag);
        if (site != NULL && !site_wants_user_frame(site, tstate)) {
            S.counters.alloc_events++;
            if (lh_blocks_put_young(&S.blocks, ptr, site->id, size)
                || lh_blocks_put_evicting(&S.blocks, ptr, site->id, size)) {
                count_in(site, size); /* exact: no weighting */
            }
            else {
                record_elsewhere(ptr, size, site);
            }
            done = 1;
        }
    }
    lh_lock_release(&S.lock, 1);
    if (done) {
        note_last_block(ptr, size);
    }
    return done;
}

/* Forget `ptr`, as forget_block() does, if the common case applies in
   `mode` (forget_mode()); returns 0 if it does not (nothing done). */
static inline int
common_forget(int mode, uintptr_t ptr, uint32_t *site_id, size_t *size,
              int *found)
{
    if (mode == LH_COMMON_NONE) {
        return 0;
    }
    lh_lock_acquire(&S.lock, 1);
    int done = S.common == mode;
    if (done) {
        *found = lh_blocks_pop_young(&S.blocks, ptr, site_id, size)
                 || lh_blocks_pop_home(&S.blocks, ptr, site_id, size);
        if (*found) {
            S.counters.free_events++;
            count_out(S.sites.by_id[*site_id], *size);
        }
        else {
            *found = forget_elsewhere(ptr, site_id, size);
        }
    }
    lh_lock_release(&S.lock, 1);
    return done;
}

/* ---- the hooks ------------------------------------------------------- */

/* The hooks' bodies, inlined into every entry point below: there the
   domain is a constant, so its tests fold away and the allocator called
   is at a fixed address (W1 on 3.14: some 1,500 instructions an
   iteration fewer than one body shared by the three domains). */
static inline __attribute__((always_inline)) void *
trace_malloc(int domain, size_t size)
{
    PyMemAllocatorEx *next = &S.underlying[domain];
    if (lh_thread.in_hook) {
        return next->malloc(next->ctx, size);
    }
    lh_thread.in_hook = 1;
    void *ptr = next->malloc(next->ctx, size);
    if (ptr != NULL && is_tracing()
        && !common_alloc(common_caller(domain), (uintptr_t)ptr, size)) {
        after_alloc(domain, ptr, size);
    }
    lh_thread.in_hook = 0;
    return ptr;
}

static inline __attribute__((always_inline)) void *
trace_calloc(int domain, size_t nelem, size_t elsize)
{
    PyMemAllocatorEx *next = &S.underlying[domain];
    if (lh_thread.in_hook) {
        return next->calloc(next->ctx, nelem, elsize);
    }
    lh_thread.in_hook = 1;
    void *ptr = next->calloc(next->ctx, nelem, elsize);
    /* calloc checked nelem * elsize for overflow already. */
    size_t size = nelem * elsize;
    if (ptr != NULL && is_tracing()
        && !common_alloc(common_caller(domain), (uintptr_t)ptr, size)) {
        after_alloc(domain, ptr, size);
    }
    lh_thread.in_hook = 0;
    return ptr;
}

static inline __attribute__((always_inline)) void
trace_free(int domain, void *ptr)
{
    PyMemAllocatorEx *next = &S.underlying[domain];
    if (lh_thread.in_hook || ptr == NULL || !is_tracing()) {
        next->free(next->ctx, ptr);
        return;
    }
    lh_thread.in_hook = 1;
    /* Forget the block before releasing it: once released, another
       thread may get the same address and record it. */
    uint32_t site_id;
    size_t size;
    int found;
    if (!common_forget(forget_mode(domain), (uintptr_t)ptr, &site_id,
                       &size, &found)) {
        forget_general(domain, (uintptr_t)ptr, &site_id, &size);
    }
    next->free(next->ctx, ptr);
    lh_thread.in_hook = 0;
}

/* A realloc failed: its old block, taken out first, is still valid. */
static LH_COLD void
realloc_failed(int domain, uintptr_t ptr, uint32_t site_id, size_t size)
{
    int gil = on_main_gil(stack_owner(domain));
    lh_lock_acquire(&S.lock, gil);
    if (is_tracing()) {
        restore_block(ptr, site_id, size);
    }
    lh_lock_release(&S.lock, gil);
}

static inline __attribute__((always_inline)) void *
trace_realloc(int domain, void *ptr, size_t size)
{
    PyMemAllocatorEx *next = &S.underlying[domain];
    if (lh_thread.in_hook || !is_tracing()) {
        return next->realloc(next->ctx, ptr, size);
    }
    lh_thread.in_hook = 1;
    /* Take the old block out first, as for free; if the realloc fails the
       old block is still valid and is put back: nobody else can have been
       given its address in between. */
    uint32_t old_site = 0;
    size_t old_size = 0;
    int had_old = 0;
    /* Asked once for both halves: the thread is the same. */
    lh_caller caller = common_caller(domain);
    if (ptr != NULL && !skip_free(ptr)
        && !common_forget(caller.mode, (uintptr_t)ptr, &old_site,
                          &old_size, &had_old)) {
        had_old = forget_general(domain, (uintptr_t)ptr, &old_site,
                                 &old_size);
    }
    void *ptr2 = next->realloc(next->ctx, ptr, size);
    if (ptr2 == NULL) {
        if (had_old) {
            realloc_failed(domain, (uintptr_t)ptr, old_site, old_size);
        }
    }
    else if (!common_alloc(caller, (uintptr_t)ptr2, size)) {
        after_alloc(domain, ptr2, size);
    }
    lh_thread.in_hook = 0;
    return ptr2;
}

/* Sampled mode's hooks test its fast path first (most allocations are
   not sampled, and frees of blocks not sampled skip the lock) and keep
   everything else in functions of their own, so that the fast path needs
   no stack frame. */
static __attribute__((noinline, flatten)) void *
sampled_malloc_rest(int domain, size_t size)
{
    return trace_malloc(domain, size);
}

static __attribute__((noinline, flatten)) void *
sampled_calloc_rest(int domain, size_t nelem, size_t elsize)
{
    return trace_calloc(domain, nelem, elsize);
}

static __attribute__((noinline, flatten)) void
sampled_free_rest(int domain, void *ptr)
{
    trace_free(domain, ptr);
}

static inline void *
sampled_malloc(int domain, size_t size)
{
    if (small_and_not_sampled(domain, size)) {
        PyMemAllocatorEx *next = &S.underlying[domain];
        return next->malloc(next->ctx, size);
    }
    return sampled_malloc_rest(domain, size);
}

static inline void *
sampled_calloc(int domain, size_t nelem, size_t elsize)
{
    if (nelem <= 512 && elsize <= 512
        && small_and_not_sampled(domain, nelem * elsize)) {
        PyMemAllocatorEx *next = &S.underlying[domain];
        return next->calloc(next->ctx, nelem, elsize);
    }
    return sampled_calloc_rest(domain, nelem, elsize);
}

static inline void
sampled_free(int domain, void *ptr)
{
    if (skip_free(ptr)) {
        PyMemAllocatorEx *next = &S.underlying[domain];
        next->free(next->ctx, ptr);
        return;
    }
    sampled_free_rest(domain, ptr);
}

/* A small calloc is a malloc and a memset: pymalloc serves callocs of up
   to 512 bytes that way itself.  Sent through the malloc entry point, it
   runs the recording code that mallocs keep in the instruction cache,
   instead of a copy of its own (and pymalloc's calloc) that W1 runs about
   once an iteration, long enough for both to be evicted in between: the
   whole process missed the instruction cache 833 times an iteration of
   W1 with it, 762 without (cachegrind, 3.14; 498 untraced).  Larger
   callocs keep calloc, which may get zeroed pages without writing them. */
#define LH_SMALL_CALLOC 512

static inline void *
zeroed(void *ptr, size_t size)
{
    if (ptr != NULL) {
        memset(ptr, 0, size);
    }
    return ptr;
}

/* The entry points, one set per mode.  start() installs the sampled ones
   when it samples, the exact ones otherwise; either set is right in either
   mode (a tracer that wrapped ours may call an old set after a restart),
   the other is only slower.  Sampled mode shares the exact mode's realloc:
   it has no fast path of its own.

   RAW has entry points of its own, with the domain a constant.  MEM and
   OBJ share one set, told apart by ctx, which the tables below set to
   the domain's number.  Two copies of the flattened bodies were one more
   thing than the instruction cache holds: MEM's copy, called a few times
   an iteration of W1, was evicted between calls and missed on nearly
   every line it ran (cachegrind's simulation, 3.15: some 120 of the
   tracer's 277 misses an iteration). */
#define LH_EXACT_HOOKS(name, DOMAIN)                                       \
    static __attribute__((noinline, flatten)) void *name##_malloc(         \
        void *c, size_t n)                                                 \
    {                                                                      \
        return trace_malloc(DOMAIN(c), n);                                 \
    }                                                                      \
    static __attribute__((noinline, flatten)) void *name##_calloc_rest(    \
        void *c, size_t n, size_t e)                                       \
    {                                                                      \
        return trace_calloc(DOMAIN(c), n, e);                              \
    }                                                                      \
    static void *name##_calloc(void *c, size_t n, size_t e)                \
    {                                                                      \
        size_t size;                                                       \
        if (!__builtin_mul_overflow(n, e, &size)                           \
            && size <= LH_SMALL_CALLOC) {                                  \
            return zeroed(name##_malloc(c, size), size);                   \
        }                                                                  \
        return name##_calloc_rest(c, n, e);                                \
    }                                                                      \
    static __attribute__((flatten)) void *name##_realloc(void *c, void *p, \
                                                         size_t n)         \
    {                                                                      \
        return trace_realloc(DOMAIN(c), p, n);                             \
    }                                                                      \
    static __attribute__((flatten)) void name##_free(void *c, void *p)     \
    {                                                                      \
        trace_free(DOMAIN(c), p);                                          \
    }

#define LH_SAMPLED_HOOKS(name, DOMAIN)                                     \
    static void *name##_malloc_sampled(void *c, size_t n)                  \
    {                                                                      \
        return sampled_malloc(DOMAIN(c), n);                               \
    }                                                                      \
    static void *name##_calloc_sampled(void *c, size_t n, size_t e)        \
    {                                                                      \
        return sampled_calloc(DOMAIN(c), n, e);                            \
    }                                                                      \
    static void name##_free_sampled(void *c, void *p)                      \
    {                                                                      \
        sampled_free(DOMAIN(c), p);                                        \
    }

/* The domain of a RAW entry point, whatever its ctx. */
static inline int
raw_domain(void *ctx)
{
    (void)ctx;
    return LH_RAW;
}

/* The domain of a MEM or OBJ entry point, from its ctx.  A ctx that is
   not ours is the replaced allocator's: OBJ's if it is
   S.replaced_obj_ctx (state.h), or else MEM, whose allocator is OBJ's in
   release builds.  Never RAW, so that the RAW tests in the bodies fold
   away. */
static inline int
python_domain(void *ctx)
{
    return ctx == &S.hook_ctxs[LH_OBJ] || ctx == S.replaced_obj_ctx
               ? LH_OBJ
               : LH_MEM;
}

LH_EXACT_HOOKS(raw, raw_domain)
LH_EXACT_HOOKS(py, python_domain)
LH_SAMPLED_HOOKS(raw, raw_domain)
LH_SAMPLED_HOOKS(py, python_domain)

/* RAW's ctx here is a placeholder: the RAW entry points are installed
   with the ctx of the allocator they replace (allocswap.h). */
static const PyMemAllocatorEx lh_hooks_exact[LH_NDOMAINS] = {
    {NULL, raw_malloc, raw_calloc, raw_realloc, raw_free},
    {&S.hook_ctxs[LH_MEM], py_malloc, py_calloc, py_realloc, py_free},
    {&S.hook_ctxs[LH_OBJ], py_malloc, py_calloc, py_realloc, py_free},
};

static const PyMemAllocatorEx lh_hooks_sampled[LH_NDOMAINS] = {
    {NULL, raw_malloc_sampled, raw_calloc_sampled, raw_realloc,
     raw_free_sampled},
    {&S.hook_ctxs[LH_MEM], py_malloc_sampled, py_calloc_sampled,
     py_realloc, py_free_sampled},
    {&S.hook_ctxs[LH_OBJ], py_malloc_sampled, py_calloc_sampled,
     py_realloc, py_free_sampled},
};

static const PyMemAllocatorDomain lh_domains[LH_NDOMAINS] = {
    PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};

/* ---- objects reused from free lists (3.13+) -------------------------- */

#if PY_VERSION_HEX >= 0x030D0000
/* An object taken from a free list is created without an allocation, so
   its block still carries the traceback of its first life.  The reference
   tracer sees every object creation and moves such a block to the site of
   the new one.

   The interpreter has one reference tracer slot, and the stdlib
   tracemalloc (3.13+) takes it unconditionally when it starts and empties
   it when it stops.  So that both tracers work in either order:
   - started after another tracer, ours takes the slot and forwards every
     event to the one it found (S.ref_prev), and stop() gives the slot back;
   - replaced by another tracer (tracemalloc started after us), ours is no
     longer called.  3.15 tells the replaced tracer (TRACKER_REMOVED; 3.14's
     headers and Debian's 3.14.10 do not), older versions say nothing, so
     lh_ref_tracer_check() looks at the slot on pyleakhunt's API calls and
     takes it back, forwarding to the new owner. */
/* Give the recorded block `b` of an object just reused `site`, the
   current one (NULL: none could be made); lock held. */
static void
move_block(lh_block *b, lh_site *site)
{
    if (site == NULL || site->id == b->site_id) {
        return;
    }
    size_t size = lh_blocks_size_of(&S.blocks, b);
    account_remove(b->site_id, size);
    b->site_id = site->id;
    account_add(site, size);
}

/* current_site() for common_move(), out of line for the same reason as
   reuse_elsewhere(). */
static LH_COLD lh_site *
site_elsewhere(lh_origin origin)
{
    return current_site(LH_PYTHON_DOMAIN, origin);
}

/* An object of a type that CPython keeps on free lists, created in a
   block that is not recorded: recorded now, at the creating line, with
   the size its type gives (freelists.h).  Such a block was allocated
   while nothing recorded it: before tracing started, or by a thread that
   was paused, such as the watcher's while it reduced a snapshot.  Its
   dead objects went to the free lists that every thread takes from, and
   from 3.14 a leak of small tuples or lists was then made mostly in
   blocks that no report could see: `pyleakhunt run` found no suspect.
   tracemalloc does not record such blocks; a leak hunter must.  Not in
   sampled mode, where a block not recorded was left out on purpose, nor
   for a paused thread or one of another interpreter.  Lock held. */
static LH_COLD void
adopt_general(PyObject *op, uintptr_t block, lh_origin origin)
{
    if (origin.tstate == NULL || lh_thread.paused || S.sample_bytes != 0) {
        return;
    }
    size_t size = lh_freelists_block_size(op);
    if (size != 0) {
        S.counters.adopted_blocks++;
        record_in_site(block, size, current_site(LH_PYTHON_DOMAIN, origin), 0);
    }
}

/* Move the block of an object reused at `block`, as on_reuse() does, if
   the common case applies to `caller`; returns 0 if it does not (nothing
   done).  3.14 keeps many more kinds of objects on free lists (ints among
   them), so in W1 this runs some 22 times an iteration: the site comes
   from common_site(), as an allocation's does.  The block's record is
   moved into the nursery (lh_blocks_lookup_reused), since the object
   comes back to the same block at the next iteration.  `b` stays valid:
   finding a site never changes the block table. */
static inline int
common_move(lh_caller caller, PyObject *op, uintptr_t block)
{
    PyThreadState *tstate = caller.tstate;
    if (tstate == NULL) {
        return 0;
    }
    /* The tag is read before the lock: reading it may allocate. */
    lh_origin origin = {tstate, tag_of(tstate)};
    lh_lock_acquire(&S.lock, 1);
    int done = S.common == caller.mode;
    if (done) {
        S.counters.reuse_lookups++;
        lh_block *b = lh_blocks_lookup_reused(&S.blocks, block);
        if (b != NULL) {
            lh_site *site = common_site(tstate, caller.mode, origin.tag);
            if (site == NULL || site_wants_user_frame(site, tstate)) {
                site = site_elsewhere(origin);
            }
            if (site != NULL && site->id != b->site_id) {
                /* move_block(), exact: no weighting (update_common). */
                size_t size = lh_blocks_size_of(&S.blocks, b);
                count_out(S.sites.by_id[b->site_id], size);
                b->site_id = site->id;
                count_in(site, size);
            }
        }
        else {
            adopt_general(op, block, origin);
        }
    }
    lh_lock_release(&S.lock, 1);
    return done;
}

/* on_reuse() when the common case does not apply: any thread, sampled
   mode.  Out of line, so that on_reuse() keeps only what the common case
   needs in registers. */
static __attribute__((noinline)) void
reuse_elsewhere(PyObject *op, uintptr_t block)
{
    if (skip_free((void *)block)) {
        return;
    }
    /* The tag is read before the lock: reading it may allocate. */
    PyThreadState *tstate = hook_tstate();
    lh_origin origin = origin_of(tstate);
    int gil = on_main_gil(tstate);
    lh_lock_acquire(&S.lock, gil);
    if (is_tracing()) {
        S.counters.reuse_lookups++;
        lh_block *b = lh_blocks_lookup(&S.blocks, block);
        if (b != NULL) {
            move_block(b, current_site(LH_PYTHON_DOMAIN, origin));
        }
        else {
            adopt_general(op, block, origin);
        }
    }
    lh_lock_release(&S.lock, gil);
}

/* A paused thread (the tracer's own work) created an object in a
   recorded block: the block is the tracer's now, and is forgotten, as
   the thread's own allocations are never recorded.  Moved instead, it
   showed a line of pyleakhunt among the program's. */
static LH_COLD __attribute__((noinline)) void
reuse_paused(uintptr_t block)
{
    if (skip_free((void *)block)) {
        return;
    }
    PyThreadState *tstate = hook_tstate();
    int gil = on_main_gil(tstate);
    lh_lock_acquire(&S.lock, gil);
    uint32_t site_id;
    size_t size;
    if (is_tracing()) {
        forget_block(block, &site_id, &size);
    }
    lh_lock_release(&S.lock, gil);
}

/* An object created in a block that the absent memo says is not
   recorded: adopted if its type is one that free lists keep.  Out of
   line and cold: the memo's answer is the common case's fast exit. */
static LH_COLD __attribute__((noinline)) void
reuse_absent(PyObject *op, uintptr_t block)
{
    if (lh_thread.paused || S.sample_bytes != 0
        || lh_freelists_block_size(op) == 0) {
        return;
    }
    reuse_elsewhere(op, block);
}

/* An object created in a block that this thread did not just record:
   reused from a free list, or recorded earlier.  Out of line, so that
   the tracer's every other call (CPython makes one per object created and
   one per object destroyed: some 120 an iteration of W1) saves no
   registers for it; flattened, so that its frame capture is inlined (300
   instructions an iteration of W1 on 3.14).  One lookup finds the record
   and changes it. */
static __attribute__((noinline, flatten)) void
on_reuse(PyObject *op, uintptr_t block)
{
    if (!common_move(common_caller(LH_OBJ), op, block)) {
        reuse_elsewhere(op, block);
    }
}

static int
on_new_reference(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (event == PyRefTracer_CREATE) {
        /* Most objects are created in the block just recorded, so that
           test comes first: whatever else holds, there is nothing to do
           for such an object.  An object lies inside the block that holds
           it, and blocks do not overlap, so the object's address tells
           without its type (which says where its block starts, but is
           one more cache line to read: 2% of W1's time on 3.14). */
        if ((uintptr_t)op - lh_thread.last_block < lh_thread.last_size) {
            /* Consumed: if this block is later reused from a free list,
               the next creation in it must not be mistaken for this one. */
            lh_thread.last_size = 0;
            return 0;
        }
        uintptr_t block = lh_object_block(op);
        /* Objects reused from blocks never recorded (on the free lists
           before tracing started) are adopted once (adopt_general); the
           absent memo answers for the other types without the lock. */
        if (!lh_thread.in_hook && is_tracing()) {
            if (lh_blocks_known_absent(&S.blocks, block)) {
                reuse_absent(op, block);
            }
            else if (lh_thread.paused) {
                reuse_paused(block);
            }
            else {
                on_reuse(op, block);
            }
        }
    }
    else if ((int)event == 2 /* PyRefTracer_TRACKER_REMOVED */) {
        /* 3.15, with op == NULL: noted, and handled on the next API call
           (replacing the tracer again from inside PyRefTracer_SetTracer is
           not possible: the new one is set after this returns). */
        atomic_store(&S.ref_displaced, 1);
    }
    return 0;
}

/* Ours when it found another tracer in the slot: every event is
   forwarded first, whatever ours does with it, so that the other tracer
   sees every event it would have seen without us.  A tracer of its own,
   so that the usual case (no other tracer) pays nothing for the chain on
   its some 120 calls an iteration of W1. */
static int
on_new_reference_chained(PyObject *op, PyRefTracerEvent event, void *data)
{
    PyRefTracer prev = S.ref_prev;
    if (prev != NULL) {
        prev(op, event, S.ref_prev_data);
    }
    return on_new_reference(op, event, data);
}

static int
is_ours(PyRefTracer tracer)
{
    return tracer == on_new_reference || tracer == on_new_reference_chained;
}

/* Take the slot, keeping whoever holds it as the next in the chain. */
static void
ref_tracer_install(void)
{
    void *data;
    PyRefTracer current = PyRefTracer_GetTracer(&data);
    if (is_ours(current)) {
        return;
    }
    /* Set before the slot changes: from then on events arrive in ours. */
    S.ref_prev = current;
    S.ref_prev_data = data;
    PyRefTracer ours = current != NULL ? on_new_reference_chained
                                       : on_new_reference;
    if (PyRefTracer_SetTracer(ours, NULL) < 0) {
        /* 3.15: the holder refused to be replaced (it set an error on
           TRACKER_REMOVED); leave it alone, we trace without it. */
        PyErr_Clear();
        S.ref_prev = NULL;
        S.ref_prev_data = NULL;
    }
    atomic_store(&S.ref_displaced, 0);
}

/* Give the slot back to the tracer we found there, if it is still ours. */
static void
ref_tracer_remove(void)
{
    void *data;
    PyRefTracer prev = S.ref_prev;
    void *prev_data = S.ref_prev_data;
    /* Cleared first: 3.15 sends ours TRACKER_REMOVED from SetTracer, which
       must not reach the tracer that is getting its slot back. */
    S.ref_prev = NULL;
    S.ref_prev_data = NULL;
    if (is_ours(PyRefTracer_GetTracer(&data))) {
        if (PyRefTracer_SetTracer(prev, prev_data) < 0) {
            PyErr_Clear();
        }
    }
    atomic_store(&S.ref_displaced, 0);
}

int
lh_ref_tracer_check(void)
{
    if (!is_tracing()) {
        return 0;
    }
    void *data;
    int displaced = atomic_exchange(&S.ref_displaced, 0);
    if (!is_ours(PyRefTracer_GetTracer(&data))) {
        displaced = 1;
        ref_tracer_install();
    }
    return displaced;
}
#else
static void ref_tracer_install(void) {}
static void ref_tracer_remove(void) {}
int lh_ref_tracer_check(void) { return 0; }
#endif

/* ---- start, stop, clear ---------------------------------------------- */

/* Whether `current`, the allocator of domain `d`, is one of our sets. */
static int
allocator_is_ours(int d, const PyMemAllocatorEx *current)
{
    if (current->malloc != lh_hooks_exact[d].malloc
        && current->malloc != lh_hooks_sampled[d].malloc) {
        return 0;
    }
    return d == LH_RAW || current->ctx == lh_hooks_exact[d].ctx;
}

static int
domain_is_ours(int d)
{
    PyMemAllocatorEx current;
    PyMem_GetAllocator(lh_domains[d], &current);
    return allocator_is_ours(d, &current);
}

/* MEM and OBJ decide: another tracer wraps or replaces all three domains,
   but CPython itself puts its default allocator in RAW for a moment, and
   then back what it found (3.12, in every new interpreter: an isolated
   subinterpreter does it in its own thread, under its own GIL, so we may
   see it in between).  If start() ran in that moment, CPython then drops
   our RAW hook for good: RAW goes untraced, and the rest is still right. */
int
lh_hooks_installed_on_top(void)
{
    return domain_is_ours(LH_MEM) && domain_is_ours(LH_OBJ);
}

/* Give CPython a moment to put our RAW hook back (see above), without the
   GIL, which the thread that swapped it may be waiting for.  Its window
   lasts microseconds, but on a loaded machine that thread may wait long
   for a CPU; waiting in vain costs only this stop(). */
static void
wait_for_raw_hook(void)
{
    enum { STEP_NS = 100 * 1000, STEPS = 2000 }; /* 200 ms at most */
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < STEPS && !domain_is_ours(LH_RAW); i++) {
        struct timespec step = {0, STEP_NS};
        nanosleep(&step, NULL);
    }
    Py_END_ALLOW_THREADS
}

/* The scratch key holds `nframe` frames, and the user's frame below them
   (site_with_user_frame). */
static int
scratch_resize(int nframe)
{
    lh_site_key *key = lh_mem_calloc(1, scratch_keylen(nframe + 1));
    if (key == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    lh_hooks_lock();
    lh_site_key *old = S.scratch;
    size_t old_frames = S.scratch_frames;
    S.scratch = key;
    S.scratch_frames = (size_t)nframe + 1;
    S.nframe = nframe;
    update_common();
    lh_hooks_unlock();
    if (old != NULL) {
        lh_mem_free(old, scratch_keylen((int)old_frames));
    }
    return 0;
}

/* Called once tracing is off: no hook reads the scratch key any more. */
static void
release_scratch(void)
{
    lh_hooks_lock();
    lh_site_key *old = S.scratch;
    size_t old_frames = S.scratch_frames;
    S.scratch = NULL;
    S.scratch_frames = 0;
    lh_hooks_unlock();
    if (old != NULL) {
        lh_mem_free(old, scratch_keylen((int)old_frames));
    }
}

/* Tracing on or off, and the common case with it (update_common). */
static void
set_tracing(int on)
{
    lh_hooks_lock();
    atomic_store(&S.tracing, on);
    update_common();
    lh_hooks_unlock();
}

int
lh_hooks_set_nframe(int nframe)
{
    if ((size_t)nframe + 1 <= S.scratch_frames && S.scratch != NULL) {
        lh_hooks_lock();
        S.nframe = nframe;
        update_common();
        lh_hooks_unlock();
        return 0;
    }
    return scratch_resize(nframe);
}

/* Make `allocators` the domains' (ours, or those we replaced), while
   other threads may be calling them (allocswap.h). */
static void
install(const PyMemAllocatorEx allocators[LH_NDOMAINS])
{
    for (int d = 0; d < LH_NDOMAINS; d++) {
        lh_allocswap_install(lh_domains[d], &allocators[d]);
    }
}

int
lh_hooks_start(int nframe, size_t sample_bytes, int total_nframe)
{
    if (is_tracing() && sample_bytes != S.sample_bytes) {
        PyErr_Format(PyExc_ValueError,
                     "already tracing with sample_bytes=%zu; stop() before "
                     "changing the sampling rate",
                     S.sample_bytes);
        return -1;
    }
    if (lh_hooks_set_nframe(nframe) < 0) {
        return -1;
    }
    lh_hooks_lock();
    S.total_nframe = total_nframe;
    update_common();
    lh_hooks_unlock();
    if (is_tracing()) {
        return 0;
    }
    if (sample_bytes != 0 && lh_filter_reset(&S.sample_filter) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    lh_hooks_lock();
    S.sample_bytes = sample_bytes;
    update_common();
    lh_hooks_unlock();
    S.trace_interp = PyInterpreterState_Get();
    for (int d = 0; d < LH_NDOMAINS; d++) {
        /* A hook that another thread entered before the last stop() may
           still read these: field by field, never torn. */
        PyMemAllocatorEx current;
        PyMem_GetAllocator(lh_domains[d], &current);
        if (allocator_is_ours(d, &current)) {
            /* Ours already: put back after a stop() by CPython (RAW), or
               by a tracer that wrapped ours and stopped after we gave up
               (lh_hooks_abandon).  What they call is still saved. */
            continue;
        }
        lh_allocswap_copy(&S.underlying[d], &current);
        if (d != LH_RAW) {
            lh_allocswap_prepare_ctx(lh_domains[d], &current,
                                     &S.hook_ctxs[d]);
        }
    }
    void *replaced = S.underlying[LH_OBJ].ctx;
    if (replaced == S.underlying[LH_MEM].ctx) {
        replaced = &S.hook_ctxs[LH_OBJ];
    }
    __atomic_store_n(&S.replaced_obj_ctx, replaced, __ATOMIC_RELEASE);
    set_tracing(1);
    install(sample_bytes != 0 ? lh_hooks_sampled : lh_hooks_exact);
    S.hooks_installed = 1;
    ref_tracer_install();
    return 0;
}

/* Empty the tables under the lock, but release the sites without it:
   dropping their code references can free objects, which calls the hooks.
   (The rest is the tracer's own memory, from libc.) */
static void
release_tables(void)
{
    lh_hooks_lock();
    lh_blocks_clear(&S.blocks);
    lh_site *sites = lh_sites_unlink_all(&S.sites);
    lh_foreign *foreign = S.foreign;
    S.foreign = NULL;
    S.traced_bytes = 0;
    S.peak_bytes = 0;
    lh_hooks_unlock();

    lh_foreign *entry, *tmp;
    HASH_ITER(hh, foreign, entry, tmp) {
        HASH_DEL(foreign, entry);
        lh_mem_free(entry, sizeof(*entry));
    }
    lh_sites_release_unlinked(sites);
}

void
lh_hooks_clear(void)
{
    release_tables();
}

int
lh_hooks_stop(void)
{
    if (!is_tracing()) {
        return 0;
    }
    if (lh_hooks_installed_on_top() && !domain_is_ours(LH_RAW)) {
        wait_for_raw_hook();
        if (!is_tracing()) {
            return 0; /* another thread stopped meanwhile */
        }
    }
    if (!lh_hooks_installed_on_top()) {
        PyErr_SetString(
            PyExc_RuntimeError,
            "cannot stop pyleakhunt: another tracer (such as the stdlib "
            "tracemalloc) was started after it and still wraps its "
            "allocator hooks; stop that tracer first");
        return -1;
    }
    ref_tracer_remove();
    set_tracing(0);
    /* Where RAW is still not ours, CPython will put back what it saved:
       perhaps our hook, which forwards while we do not trace. */
    for (int d = 0; d < LH_NDOMAINS; d++) {
        if (domain_is_ours(d)) {
            lh_allocswap_install(lh_domains[d], &S.underlying[d]);
        }
    }
    S.hooks_installed = 0;
    release_tables();
    release_scratch();
    memset(&S.counters, 0, sizeof(S.counters));
    return 0;
}

void
lh_hooks_abandon(void)
{
    /* Our hooks are no longer called, so nothing to uninstall; if some
       tracer still calls them, they forward (S.underlying stays valid). */
    ref_tracer_remove();
    set_tracing(0);
    S.hooks_installed = 0;
    release_tables();
    release_scratch();
    memset(&S.counters, 0, sizeof(S.counters));
}

/* ---- the C API: foreign blocks --------------------------------------- */

static int
track_foreign(unsigned int domain, uintptr_t ptr, size_t size,
              lh_origin origin)
{
    lh_foreign_key key = {domain, ptr};
    lh_foreign *entry;
    HASH_FIND(hh, S.foreign, &key, sizeof(key), entry);
    if (entry != NULL) {
        account_remove(entry->site_id, entry->size);
        HASH_DEL(S.foreign, entry);
        lh_mem_free(entry, sizeof(*entry));
    }
    lh_site *site = current_site(domain, origin);
    entry = site != NULL ? lh_mem_calloc(1, sizeof(*entry)) : NULL;
    if (entry == NULL) {
        S.counters.lost_blocks++;
        return -1;
    }
    entry->key = key;
    entry->size = size;
    entry->site_id = site->id;
    S.mem_oom = 0;
    HASH_ADD(hh, S.foreign, key, sizeof(key), entry);
    if (S.mem_oom) {
        lh_mem_free(entry, sizeof(*entry));
        S.counters.lost_blocks++;
        return -1;
    }
    account_add(site, size);
    return 0;
}

int
lh_track(unsigned int domain, uintptr_t ptr, size_t size)
{
    if (!is_tracing()) {
        return -2;
    }
    if (ptr == 0) {
        return -1; /* no block; and 0 marks the block table's empty slots */
    }
    if (domain == LH_PYTHON_DOMAIN && skip_allocation(size)) {
        return 0;
    }
    PyThreadState *tstate = lh_frames_gil_holder();
    lh_origin origin = origin_of(tstate);
    int gil = on_main_gil(tstate);
    int result = 0;
    lh_lock_acquire(&S.lock, gil);
    if (!is_tracing()) {
        result = -2;
    }
    else if (domain == LH_PYTHON_DOMAIN) {
        result = record_block(ptr, size, origin, 1);
    }
    else {
        result = track_foreign(domain, ptr, size, origin);
    }
    lh_lock_release(&S.lock, gil);
    return result;
}

int
lh_untrack(unsigned int domain, uintptr_t ptr)
{
    if (!is_tracing()) {
        return -2;
    }
    if (ptr == 0) {
        return 0; /* never recorded */
    }
    lh_hooks_lock();
    if (is_tracing()) {
        uint32_t site_id;
        size_t size;
        if (domain == LH_PYTHON_DOMAIN) {
            forget_block(ptr, &site_id, &size);
        }
        else {
            lh_foreign_key key = {domain, ptr};
            lh_foreign *entry;
            HASH_FIND(hh, S.foreign, &key, sizeof(key), entry);
            if (entry != NULL) {
                account_remove(entry->site_id, entry->size);
                HASH_DEL(S.foreign, entry);
                lh_mem_free(entry, sizeof(*entry));
            }
        }
    }
    lh_hooks_unlock();
    return 0;
}

/* ---- fork ------------------------------------------------------------ */

/* Holding the lock across fork() means the child never inherits a table
   in the middle of an update, nor a lock held by a thread that does not
   exist in the child. */
static void atfork_prepare(void) { lh_lock_acquire_slow(&S.lock); }
static void atfork_release(void) { lh_lock_release_slow(&S.lock); }

static void
atfork_child(void)
{
    lh_sample_reseed();
    lh_lock_after_fork(&S.lock);
    lh_lock_release_slow(&S.lock);
}

void
lh_hooks_init(void)
{
    S.main_interp = PyInterpreterState_Main();
    S.tstate_offset = lh_frames_tstate_offset();
    lh_lock_setup(&S.lock);
}

int
lh_hooks_register_atfork(void)
{
    if (S.atfork_registered) {
        return 0;
    }
    if (pthread_atfork(atfork_prepare, atfork_release, atfork_child)
        != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
        return -1;
    }
    S.atfork_registered = 1;
    return 0;
}
