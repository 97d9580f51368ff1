/* module.c - pyleakhunt._core: the Python face of the tracer.
 *
 * Thin bindings over hooks.c and tables.c.  The one piece of real work is
 * the snapshot: copy aggregates (and, for a full snapshot, blocks) under
 * the lock into plain C arrays, release the lock, and only then build
 * Python objects; building them allocates, which calls our hooks, which
 * take the lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#endif

#include "extension_track.h"
#include "frames.h"
#include "freelists.h"
#include "gil_handoff.h"
#include "hooks.h"
#include "pyleakhunt.h"
#include "allocswap.h"
#include "state.h"

#define S lh_tracer

/* ---- frames to Python ------------------------------------------------ */

static PyObject *
unknown_frames(void)
{
    return Py_BuildValue("((si))", "<unknown>", 0);
}

static PyObject *
frame_tuple(const lh_frame *frame)
{
    PyObject *filename = lh_frame_filename(frame);
    if (filename == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        filename = PyUnicode_FromString("<unknown>");
        if (filename == NULL) {
            return NULL;
        }
    }
    PyObject *result = Py_BuildValue("(Ni)", filename, lh_frame_lineno(frame));
    return result;
}

/* ---- a per-snapshot cache of frame tuples ----------------------------- */

/* Sites share most of their frames (the callers), and computing a line
   number walks the code's line table; so a snapshot resolves each
   (code, offset) once and shares the tuple.  Open addressing, grown at
   half load. */
typedef struct {
    PyObject *code;
    int64_t lasti;
    PyObject *frame; /* strong reference */
} frame_slot;

typedef struct {
    frame_slot *slots;
    size_t capacity; /* a power of two, or 0 */
    size_t used;
} frame_cache;

static void
frame_cache_free(frame_cache *cache)
{
    for (size_t i = 0; i < cache->capacity; i++) {
        Py_XDECREF(cache->slots[i].frame);
    }
    free(cache->slots);
    memset(cache, 0, sizeof(*cache));
}

static frame_slot *
frame_cache_slot(frame_cache *cache, const lh_frame *frame)
{
    uint64_t h = ((uint64_t)(uintptr_t)frame->code
                  ^ ((uint64_t)frame->lasti << 40))
                 * 0x9E3779B97F4A7C15u;
    size_t mask = cache->capacity - 1;
    for (size_t i = (size_t)(h >> 32) & mask;; i = (i + 1) & mask) {
        frame_slot *slot = &cache->slots[i];
        if (slot->frame == NULL
            || (slot->code == frame->code && slot->lasti == frame->lasti)) {
            return slot;
        }
    }
}

static int
frame_cache_grow(frame_cache *cache)
{
    frame_cache bigger = {NULL, cache->capacity ? cache->capacity * 2 : 4096,
                          cache->used};
    bigger.slots = calloc(bigger.capacity, sizeof(frame_slot));
    if (bigger.slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < cache->capacity; i++) {
        frame_slot *old = &cache->slots[i];
        if (old->frame != NULL) {
            lh_frame key = {old->code, old->lasti};
            *frame_cache_slot(&bigger, &key) = *old;
        }
    }
    free(cache->slots);
    *cache = bigger;
    return 0;
}

/* A borrowed (filename, lineno) tuple for `frame`. */
static PyObject *
cached_frame_tuple(frame_cache *cache, const lh_frame *frame)
{
    if (cache->used * 2 >= cache->capacity && frame_cache_grow(cache) < 0) {
        return NULL;
    }
    frame_slot *slot = frame_cache_slot(cache, frame);
    if (slot->frame == NULL) {
        PyObject *tuple = frame_tuple(frame);
        if (tuple == NULL) {
            return NULL;
        }
        /* Immutable and made of str and int: it can be in no cycle, so
           the collector need not scan it (snapshots make many). */
        PyObject_GC_UnTrack(tuple);
        *slot = (frame_slot){frame->code, frame->lasti, tuple};
        cache->used++;
    }
    return slot->frame;
}

/* The (filename, lineno) frames of `site`, most recent first, cached on
   the site.  Traces of one site share its tuple.  Sites with equal frames
   (another tag, domain or depth) are not made to share one: a dict that
   interned them cost a fifth of the first snapshot of 100,000 sites, to
   save a tuple per such site.  Returns a borrowed reference.  Needs the
   GIL. */
static PyObject *
site_frames(lh_site *site, frame_cache *cache)
{
    if (site->resolved != NULL) {
        return site->resolved;
    }
    int n = lh_key_nframe(&site->key);
    PyObject *frames = n == 0 ? unknown_frames() : PyTuple_New(n);
    if (frames == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        PyObject *frame = cache ? cached_frame_tuple(cache, &site->key.frames[i])
                                : frame_tuple(&site->key.frames[i]);
        if (frame == NULL) {
            Py_DECREF(frames);
            return NULL;
        }
        if (cache) {
            Py_INCREF(frame);
        }
        PyTuple_SET_ITEM(frames, i, frame);
    }
    PyObject_GC_UnTrack(frames);
    site->resolved = frames;
    return frames;
}

/* A new reference: the depth of the site's stack, or None when it was not
   counted (start(total_nframe=False)), as tracemalloc says of old
   snapshots. */
static PyObject *
site_total_nframe(const lh_site *site)
{
    if (lh_key_nframe(&site->key) == 0) {
        return PyLong_FromLong(1);  /* the <unknown> frame */
    }
    unsigned int total = lh_key_total_nframe(&site->key);
    if (total == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(total);
}

/* ---- tracemalloc's API ----------------------------------------------- */

static PyObject *
core_start(PyObject *Py_UNUSED(module), PyObject *args)
{
    int nframe = 1;
    Py_ssize_t sample_bytes = 0;
    int total_nframe = 1;
    if (!PyArg_ParseTuple(args, "|inp:start", &nframe, &sample_bytes,
                          &total_nframe)) {
        return NULL;
    }
    if (nframe < 1 || nframe > LH_MAX_NFRAME) {
        PyErr_Format(PyExc_ValueError,
                     "the number of frames must be in range [1; %d]",
                     LH_MAX_NFRAME);
        return NULL;
    }
    if (sample_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "sample_bytes must be >= 0");
        return NULL;
    }
    if (lh_hooks_register_atfork() < 0
        || lh_hooks_start(nframe, (size_t)sample_bytes, total_nframe) < 0) {
        return NULL;
    }
    lh_ext_track_start();
    Py_RETURN_NONE;
}

static PyObject *
core_stop(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    if (lh_hooks_stop() < 0) {
        return NULL;
    }
    lh_ext_track_stop();
    (void)lh_freelists_keep_empty(0); /* nothing to trace objects for */
    Py_RETURN_NONE;
}

static PyObject *
core_is_tracing(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(atomic_load(&S.tracing));
}

static PyObject *
core_hooks_on_top(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(lh_hooks_installed_on_top());
}

/* Whether the caller runs in the main interpreter.  GIL held. */
static int
in_main_interpreter(void)
{
    return PyInterpreterState_Get() == PyInterpreterState_Main();
}

static PyObject *
core_in_main_interpreter(PyObject *Py_UNUSED(module),
                         PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(in_main_interpreter());
}

static PyObject *
core_started_tracing_here(PyObject *Py_UNUSED(module),
                          PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(atomic_load(&S.tracing)
                           && S.trace_interp == PyInterpreterState_Get());
}

static PyObject *
core_ref_tracer_check(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(lh_ref_tracer_check());
}

static PyObject *
core_abandon(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    lh_hooks_abandon();
    lh_ext_track_stop();
    Py_RETURN_NONE;
}

static PyObject *
core_clear_traces(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    if (atomic_load(&S.tracing)) {
        lh_hooks_clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
core_get_traceback_limit(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromLong(S.nframe > 0 ? S.nframe : 1);
}

static PyObject *
core_get_traced_memory(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    size_t current = 0, peak = 0;
    if (atomic_load(&S.tracing)) {
        lh_hooks_lock();
        current = S.traced_bytes;
        peak = S.peak_bytes;
        lh_hooks_unlock();
    }
    return Py_BuildValue("nn", (Py_ssize_t)current, (Py_ssize_t)peak);
}

static PyObject *
core_reset_peak(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    lh_hooks_lock();
    S.peak_bytes = S.traced_bytes;
    lh_hooks_unlock();
    Py_RETURN_NONE;
}

static size_t
tracer_memory(void)
{
    return lh_mem_used();
}

static PyObject *
core_get_tracemalloc_memory(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromSize_t(tracer_memory());
}

static PyObject *
core_get_object_traceback(PyObject *Py_UNUSED(module), PyObject *obj)
{
    if (!atomic_load(&S.tracing)) {
        Py_RETURN_NONE;
    }
    uintptr_t block = lh_object_block(obj);
    lh_site *site = NULL;
    uint32_t site_id;
    size_t size;
    lh_hooks_lock();
    if (lh_blocks_get(&S.blocks, block, &site_id, &size)) {
        site = S.sites.by_id[site_id];
    }
    lh_hooks_unlock();
    if (site == NULL) {
        Py_RETURN_NONE;
    }
    /* Sites are only freed with the GIL held, which we hold. */
    PyObject *frames = site_frames(site, NULL);
    Py_XINCREF(frames);
    return frames;
}

/* ---- snapshots ------------------------------------------------------- */

typedef struct {
    lh_site *site;
    size_t count;
    size_t size;
    size_t low;
    double est_count;
} site_figures;

typedef struct {
    uint32_t nsites;
    site_figures *sites;
    size_t nblocks;
    size_t block_capacity;  /* entries allocated in the two arrays */
    uint32_t *block_sites;  /* full snapshots only */
    uint64_t *block_sizes;
    uint64_t lost_blocks;
} raw_copy;

static void
raw_copy_free(raw_copy *copy)
{
    lh_mem_free(copy->sites, (copy->nsites + 1) * sizeof(site_figures));
    lh_mem_free(copy->block_sites, copy->block_capacity * sizeof(uint32_t));
    lh_mem_free(copy->block_sizes, copy->block_capacity * sizeof(uint64_t));
}

/* Copy the blocks; lock held.  Returns -1 when out of memory. */
static int
copy_blocks(raw_copy *copy)
{
    /* One more than needed, so that an empty table is not malloc(0). */
    size_t n = lh_blocks_count(&S.blocks) + HASH_COUNT(S.foreign) + 1;
    copy->block_capacity = n;
    copy->block_sites = lh_mem_alloc(n * sizeof(uint32_t));
    copy->block_sizes = lh_mem_alloc(n * sizeof(uint64_t));
    if (copy->block_sites == NULL || copy->block_sizes == NULL) {
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < lh_blocks_nslots(&S.blocks); i++) {
        const lh_block *b = lh_blocks_slot(&S.blocks, i);
        if (b->ptr != 0) {
            copy->block_sites[k] = b->site_id;
            copy->block_sizes[k] = lh_blocks_size_of(&S.blocks, b);
            k++;
        }
    }
    for (lh_foreign *f = S.foreign; f != NULL; f = f->hh.next) {
        copy->block_sites[k] = f->site_id;
        copy->block_sizes[k] = f->size;
        k++;
    }
    copy->nblocks = k;
    return 0;
}

static int
take_raw_copy(raw_copy *copy, int full)
{
    memset(copy, 0, sizeof(*copy));
    int failed = 0;
    lh_hooks_lock();
    copy->nsites = S.sites.nsites;
    copy->lost_blocks = S.counters.lost_blocks;
    copy->sites = lh_mem_alloc((copy->nsites + 1) * sizeof(site_figures));
    if (copy->sites == NULL) {
        failed = 1;
    }
    else {
        for (uint32_t i = 0; i < copy->nsites; i++) {
            lh_site *site = S.sites.by_id[i];
            if (site == NULL) {
                copy->sites[i] = (site_figures){NULL, 0, 0, 0, 0.0};
                continue;
            }
            copy->sites[i] = (site_figures){site, site->count, site->size,
                                            site->low, site->est_count};
            /* Under the same lock as the copy, so that no dip between two
               snapshots is missed. */
            site->low = site->size;
        }
        failed = full && copy_blocks(copy) < 0;
    }
    lh_hooks_unlock();
    if (failed) {
        raw_copy_free(copy);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The named tuple type of site records (pyleakhunt._raw.RawSite). */
static PyTypeObject *site_type = NULL;

static PyObject *
site_record(const site_figures *fig, frame_cache *cache)
{
    PyObject *frames = site_frames(fig->site, cache);
    if (frames == NULL) {
        return NULL;
    }
    /* In sampled mode, sizes are already estimates (hooks.c weight_of);
       the count is the estimated number of blocks, not of recorded ones. */
    Py_ssize_t count = (Py_ssize_t)fig->count;
    if (S.sample_bytes && lh_key_domain(&fig->site->key) == 0) {
        count = (Py_ssize_t)llround(fig->est_count);
    }
    PyObject *values = Py_BuildValue(
        "(IONnnnI)", lh_key_domain(&fig->site->key), frames,
        site_total_nframe(fig->site), count, (Py_ssize_t)fig->size,
        (Py_ssize_t)fig->low, lh_key_tag(&fig->site->key));
    if (values == NULL || site_type == NULL) {
        return values;
    }
    /* A RawSite built directly, not through a Python call per site. */
    PyObject *record = site_type->tp_alloc(site_type, 7);
    if (record == NULL) {
        Py_DECREF(values);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 7; i++) {
        PyObject *item = PyTuple_GET_ITEM(values, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(record, i, item);
    }
    Py_DECREF(values);
    /* Made of ints and untracked tuples: no cycles possible. */
    PyObject_GC_UnTrack(record);
    return record;
}

/* Sites with live blocks, as records; index[id] gets each one's position
   in the list (or UINT32_MAX when left out). */
static PyObject *
build_sites(const raw_copy *copy, uint32_t *index)
{
    PyObject *list = PyList_New(0);
    frame_cache cache = {NULL, 0, 0};
    for (uint32_t i = 0; list != NULL && i < copy->nsites; i++) {
        index[i] = UINT32_MAX;
        if (copy->sites[i].count == 0) {
            continue;
        }
        PyObject *record = site_record(&copy->sites[i], &cache);
        index[i] = (uint32_t)PyList_GET_SIZE(list);
        if (record == NULL || PyList_Append(list, record) < 0) {
            Py_XDECREF(record);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(record);
    }
    frame_cache_free(&cache);
    return list;
}

static PyObject *
build_blocks(const raw_copy *copy, const uint32_t *index)
{
    Py_ssize_t n = (Py_ssize_t)copy->nblocks;
    PyObject *sites = PyBytes_FromStringAndSize(NULL, n * 4);
    PyObject *sizes = PyBytes_FromStringAndSize(NULL, n * 8);
    if (sites == NULL || sizes == NULL) {
        Py_XDECREF(sites);
        Py_XDECREF(sizes);
        return NULL;
    }
    uint32_t *out = (uint32_t *)PyBytes_AS_STRING(sites);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = index[copy->block_sites[i]];
    }
    memcpy(PyBytes_AS_STRING(sizes), copy->block_sizes, (size_t)n * 8);
    return Py_BuildValue("(NN)", sites, sizes);
}

/* Forget the sites whose blocks are all gone: a snapshot leaves them out
   anyway, and they keep code objects alive. */
static void
prune_empty_sites(void)
{
    lh_hooks_lock();
    lh_site *unlinked = lh_sites_unlink_empty(&S.sites);
    lh_hooks_unlock();
    lh_sites_release_unlinked(unlinked);  /* may free objects: no lock */
}

/* _snapshot(full) -> (sites, blocks, lost_blocks)
   sites: [(domain, frames, total_nframe, count, size, low, tag), ...]
   where low is the site's lowest size since the previous snapshot (which
   this one resets), or since the site was made.
   blocks: None, or (site indexes as native uint32 bytes, sizes as native
   uint64 bytes), one entry per live block. */
static PyObject *
core_snapshot(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int full = PyObject_IsTrue(arg);
    if (full < 0) {
        return NULL;
    }
    lh_ext_track_refresh(); /* libraries loaded other than by import */
    prune_empty_sites();
    raw_copy copy;
    if (take_raw_copy(&copy, full) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    uint32_t *index = malloc((copy.nsites + 1) * sizeof(uint32_t));
    PyObject *sites = index ? build_sites(&copy, index) : PyErr_NoMemory();
    PyObject *blocks = Py_None;
    Py_INCREF(blocks);
    if (sites != NULL && full) {
        Py_SETREF(blocks, build_blocks(&copy, index));
    }
    if (sites != NULL && blocks != NULL) {
        result = Py_BuildValue("(OOK)", sites, blocks,
                               (unsigned long long)copy.lost_blocks);
    }
    Py_XDECREF(sites);
    Py_XDECREF(blocks);
    free(index);
    raw_copy_free(&copy);
    return result;
}

/* ---- beyond tracemalloc ---------------------------------------------- */

static PyObject *
core_get_stats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    lh_hooks_lock();
    lh_counters c = S.counters;
    size_t live = lh_blocks_count(&S.blocks) + HASH_COUNT(S.foreign);
    size_t sites = S.sites.nsites;
    size_t capacity = lh_blocks_nslots(&S.blocks); /* nursery included */
    lh_hooks_unlock();
    uint64_t slow = atomic_load(&S.lock.slow_entries);
    return Py_BuildValue(
        "{sKsKsnsnsKsnsKsnsnsKsKsK}", "alloc_events", (unsigned long long)c.alloc_events,
        "free_events", (unsigned long long)c.free_events,
        "live_blocks", (Py_ssize_t)live,
        "unique_tracebacks", (Py_ssize_t)sites,
        "lost_blocks", (unsigned long long)c.lost_blocks,
        "tracer_memory", (Py_ssize_t)tracer_memory(),
        "lock_slow_entries", (unsigned long long)slow,
        "block_table_capacity", (Py_ssize_t)capacity,
        "sample_bytes", (Py_ssize_t)S.sample_bytes,
        "sampled_blocks", (unsigned long long)c.sampled_blocks,
        "reuse_lookups", (unsigned long long)c.reuse_lookups,
        "adopted_blocks", (unsigned long long)c.adopted_blocks);
}

static PyObject *
core_fail_after(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long countdown = PyLong_AsLong(arg);
    if (countdown == -1 && PyErr_Occurred()) {
        return NULL;
    }
    lh_mem_fail_after(countdown);
    Py_RETURN_NONE;
}

/* Turn a testing check on or off (`flag`) with `restart`, and return
   its counts so far as (checked, wrong). */
static PyObject *
restart_check(PyObject *flag,
              void (*restart)(int on, uint64_t *checked, uint64_t *wrong))
{
    int on = PyObject_IsTrue(flag);
    if (on < 0) {
        return NULL;
    }
    uint64_t checked;
    uint64_t wrong;
    restart(on, &checked, &wrong);
    return Py_BuildValue("(KK)", (unsigned long long)checked,
                         (unsigned long long)wrong);
}

/* _check_depth(on) -> (checked, wrong): testing; see lh_hooks_check_depth. */
static PyObject *
core_check_depth(PyObject *Py_UNUSED(module), PyObject *flag)
{
    return restart_check(flag, lh_hooks_check_depth);
}

/* _check_memo(on) -> (checked, wrong): testing; see lh_hooks_check_memo. */
static PyObject *
core_check_memo(PyObject *Py_UNUSED(module), PyObject *flag)
{
    return restart_check(flag, lh_hooks_check_memo);
}

/* _check_tstate() -> (offset, same): testing; see lh_hooks_check_tstate. */
static PyObject *
core_check_tstate(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(arg))
{
    intptr_t offset;
    int same = lh_hooks_check_tstate(&offset);
    return Py_BuildValue("(nO)", (Py_ssize_t)offset,
                         same ? Py_True : Py_False);
}

/* _swap_in_place(domain) -> bool: testing; see lh_allocswap_in_place. */
static PyObject *
core_swap_in_place(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long domain = PyLong_AsLong(arg);
    if (domain == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (domain < PYMEM_DOMAIN_RAW || domain > PYMEM_DOMAIN_OBJ) {
        PyErr_Format(PyExc_ValueError, "no allocator domain %ld", domain);
        return NULL;
    }
    return PyBool_FromLong(
        lh_allocswap_in_place((PyMemAllocatorDomain)domain));
}

/* pause_thread(flag): while true, the calling thread's allocations are
   not recorded (the tracer's own analysis); frees still are. */
static PyObject *
core_pause_thread(PyObject *Py_UNUSED(module), PyObject *flag)
{
    int paused = PyObject_IsTrue(flag);
    if (paused < 0) {
        return NULL;
    }
    return PyBool_FromLong(lh_hooks_pause_thread(paused));
}

/* free_list_lengths(): the lengths of CPython's free lists, a tuple
   (empty where trim_free_lists() does nothing); trim_free_lists(lengths):
   free what each holds beyond those, the tracer's own dead objects
   (freelists.c). */
#define LH_MOST_FREE_LISTS 64

static PyObject *
core_free_list_lengths(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    Py_ssize_t lengths[LH_MOST_FREE_LISTS];
    size_t n = lh_freelists_lengths(lengths, LH_MOST_FREE_LISTS);
    PyObject *result = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; result != NULL && i < n; i++) {
        PyObject *length = PyLong_FromSsize_t(lengths[i]);
        if (length == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyTuple_SET_ITEM(result, (Py_ssize_t)i, length);
    }
    return result;
}

static PyObject *
core_trim_free_lists(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) > LH_MOST_FREE_LISTS) {
        PyErr_SetString(PyExc_TypeError,
                        "trim_free_lists() needs what free_list_lengths() "
                        "returned");
        return NULL;
    }
    Py_ssize_t lengths[LH_MOST_FREE_LISTS];
    Py_ssize_t n = PyTuple_GET_SIZE(arg);
    for (Py_ssize_t i = 0; i < n; i++) {
        lengths[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(arg, i));
        if (lengths[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    lh_freelists_trim(lengths, (size_t)n);
    Py_RETURN_NONE;
}

/* set_site_type(cls): the tuple subclass snapshots build site records as. */
static PyObject *
core_set_site_type(PyObject *Py_UNUSED(module), PyObject *cls)
{
    if (!PyType_Check(cls)
        || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "set_site_type() needs a tuple subclass");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(site_type, (PyTypeObject *)cls);
    Py_RETURN_NONE;
}

/* set_tag_var(var): allocations made while `var` holds an int are tagged
   with it (the WSGI and ASGI integrations tag them with the endpoint). */
static PyObject *
core_set_tag_var(PyObject *Py_UNUSED(module), PyObject *var)
{
    if (var != Py_None && !PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError,
                        "set_tag_var() needs a contextvars.ContextVar or None");
        return NULL;
    }
    PyObject *old = S.tag_var;
    Py_XINCREF(var == Py_None ? NULL : var);
    S.tag_var = var == Py_None ? NULL : var;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* set_user_frames(roots, own_dir, demo_file): when the frames recorded
   for an allocation are all library code, also record the user's frame
   below them (userframe.h); roots=None turns it off. */
static PyObject *
core_set_user_frames(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *roots, *own_dir = NULL, *demo_file = NULL;
    if (!PyArg_ParseTuple(args, "O|UU:set_user_frames", &roots, &own_dir,
                          &demo_file)) {
        return NULL;
    }
    if (!in_main_interpreter()) {
        /* The hooks read the rule under the main interpreter's GIL. */
        PyErr_SetString(PyExc_RuntimeError,
                        "set_user_frames() works in the main interpreter only");
        return NULL;
    }
    if (roots != Py_None && (own_dir == NULL || demo_file == NULL)) {
        PyErr_SetString(PyExc_TypeError,
                        "set_user_frames() needs own_dir and demo_file");
        return NULL;
    }
    if (lh_user_rule_set(&S.user, roots, own_dir, demo_file) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* keep_free_lists_empty(on): keep CPython's free lists of dicts, lists,
   tuples and floats empty (3.10 to 3.12; from 3.13 that of dicts' key
   tables), or let them fill again (freelists.c).  Returns True. */
static PyObject *
core_keep_free_lists_empty(PyObject *Py_UNUSED(module), PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    return PyBool_FromLong(lh_freelists_keep_empty(on));
}

/* free_lists_kept_empty(): whether they are now. */
static PyObject *
core_free_lists_kept_empty(PyObject *Py_UNUSED(module),
                           PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(lh_freelists_kept_empty());
}

/* _ext_track_info(): whether extensions' PyTraceMalloc_Track calls are
   redirected here (extension_track.c). */
static PyObject *
core_ext_track_info(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return lh_ext_track_info();
}

/* _ext_track_slots(): the GOT slots those calls go through, for tests. */
static PyObject *
core_ext_track_slots(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return lh_ext_track_slots();
}

/* rss_bytes(): this process's resident set size, from /proc/self/statm,
   or None where there is none.  Read here, the GIL held: the watcher
   takes it at every sample, from the sampling thread, and Python's
   open(), read() and close() give the GIL up eight times to read
   it.  Behind a busy main thread each of those costs up to the switch
   interval (5 ms) to get the GIL back; these three system calls on a
   /proc file take microseconds and never wait. */
static PyObject *
core_rss_bytes(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
#ifdef __linux__
    char text[256];
    ssize_t got;
    unsigned long long size = 0, resident = 0;
    long page = sysconf(_SC_PAGESIZE);
    int fd;

    do {
        fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        Py_RETURN_NONE;
    }
    do {
        got = read(fd, text, sizeof(text) - 1);
    } while (got < 0 && errno == EINTR);
    close(fd);
    if (got <= 0 || page <= 0) {
        Py_RETURN_NONE;
    }
    text[got] = '\0';
    if (sscanf(text, "%llu %llu", &size, &resident) != 2) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong(resident * (unsigned long long)page);
#else
    Py_RETURN_NONE;
#endif
}

/* ---- the GIL hand-off to a starved sampler (gil_handoff.h) ---------- */

static PyObject *
core_gil_handoff_arm(PyObject *Py_UNUSED(module), PyObject *args)
{
    double delay, park_limit;
    if (!PyArg_ParseTuple(args, "dd:gil_handoff_arm", &delay, &park_limit)) {
        return NULL;
    }
    if (!isfinite(delay) || delay < 0 || delay > 1e9) {
        PyErr_Format(PyExc_ValueError,
                     "delay must be from 0 to 1e9 seconds, not %R",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (!isfinite(park_limit) || park_limit <= 0 || park_limit > 60) {
        PyErr_Format(PyExc_ValueError,
                     "park_limit must be over 0 and at most 60 seconds, "
                     "not %R",
                     PyTuple_GET_ITEM(args, 1));
        return NULL;
    }
    if (lh_handoff_arm(delay, park_limit) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* Both wait for the watching thread to leave, which never waits for the
   GIL: given up meanwhile all the same, as for any join. */
static PyObject *
core_gil_handoff_stop(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    Py_BEGIN_ALLOW_THREADS
    lh_handoff_stop();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *
core_gil_handoff_shutdown(PyObject *Py_UNUSED(module),
                          PyObject *Py_UNUSED(unused))
{
    Py_BEGIN_ALLOW_THREADS
    lh_handoff_shutdown();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *
core_gil_handoff_stats(PyObject *Py_UNUSED(module),
                       PyObject *Py_UNUSED(unused))
{
    lh_handoff_stats st = lh_handoff_get_stats();
    return Py_BuildValue("{sKsKsKsK}", "requests",
                         (unsigned long long)st.requests, "parks",
                         (unsigned long long)st.parks, "park_timeouts",
                         (unsigned long long)st.park_timeouts, "stale",
                         (unsigned long long)st.stale);
}

/* ---- the C API capsule ----------------------------------------------- */

static int
capi_is_tracing(void)
{
    return atomic_load(&S.tracing);
}

static const PyLeakHunt_CAPI lh_capi = {
    PYLEAKHUNT_CAPI_VERSION, lh_track, lh_untrack, capi_is_tracing};

/* ---- module ---------------------------------------------------------- */

static PyMethodDef core_methods[] = {
    {"start", core_start, METH_VARARGS,
     "start(nframe=1, sample_bytes=0)\n--\n\nStart tracing."},
    {"stop", core_stop, METH_NOARGS, "Stop tracing and forget every trace."},
    {"is_tracing", core_is_tracing, METH_NOARGS, "True while tracing."},
    {"hooks_on_top", core_hooks_on_top, METH_NOARGS,
     "True if our hooks are the installed allocators."},
    {"in_main_interpreter", core_in_main_interpreter, METH_NOARGS,
     "Whether the caller runs in the main interpreter."},
    {"started_tracing_here", core_started_tracing_here, METH_NOARGS,
     "Whether tracing is on and was started from the caller's interpreter "
     "(only its frames and the main one's are recorded)."},
    {"abandon", core_abandon, METH_NOARGS,
     "Stop recording without touching the allocators."},
    {"ref_tracer_check", core_ref_tracer_check, METH_NOARGS,
     "True if another tracer had taken the reference tracer slot (3.13+); "
     "ours takes it back."},
    {"clear_traces", core_clear_traces, METH_NOARGS, "Forget every trace."},
    {"get_traceback_limit", core_get_traceback_limit, METH_NOARGS,
     "The maximum number of frames stored per traceback."},
    {"get_traced_memory", core_get_traced_memory, METH_NOARGS,
     "(current, peak) traced bytes."},
    {"reset_peak", core_reset_peak, METH_NOARGS,
     "Set the peak to the current traced size."},
    {"get_tracemalloc_memory", core_get_tracemalloc_memory, METH_NOARGS,
     "Bytes used by the tracer's own tables."},
    {"get_object_traceback", core_get_object_traceback, METH_O,
     "Frames of the allocation of obj, most recent first, or None."},
    {"snapshot", core_snapshot, METH_O,
     "snapshot(full) -> (sites, blocks, lost_blocks)"},
    {"get_stats", core_get_stats, METH_NOARGS, "The tracer's counters."},
    {"rss_bytes", core_rss_bytes, METH_NOARGS,
     "This process's resident set size in bytes, or None; read without "
     "giving up the GIL."},
    {"gil_handoff_arm", core_gil_handoff_arm, METH_VARARGS,
     "gil_handoff_arm(delay, park_limit): the sampler had its turn (a parked "
     "main thread goes on); unless it arms again within delay seconds, ask "
     "the main thread to give the GIL up until it does, for at most "
     "park_limit seconds."},
    {"gil_handoff_stop", core_gil_handoff_stop, METH_NOARGS,
     "Disarm, let a parked main thread go, and the thread that watches the "
     "sampler leaves (the next gil_handoff_arm() starts another)."},
    {"gil_handoff_shutdown", core_gil_handoff_shutdown, METH_NOARGS,
     "Never ask the main thread to park again (interpreter exit)."},
    {"gil_handoff_stats", core_gil_handoff_stats, METH_NOARGS,
     "Counts of the hand-off: requests, parks, park_timeouts, stale."},
    {"free_list_lengths", core_free_list_lengths, METH_NOARGS,
     "The lengths of CPython's free lists (3.13+; else empty)."},
    {"trim_free_lists", core_trim_free_lists, METH_O,
     "Free what each free list holds beyond free_list_lengths()."},
    {"pause_thread", core_pause_thread, METH_O,
     "Stop (True) or resume recording this thread's allocations; returns "
     "the previous setting."},
    {"set_site_type", core_set_site_type, METH_O,
     "The named tuple type of site records."},
    {"set_tag_var", core_set_tag_var, METH_O,
     "Tag allocations with the int value of a ContextVar (None: stop)."},
    {"set_user_frames", core_set_user_frames, METH_VARARGS,
     "Also record the user's frame below library frames (None: stop)."},
    {"keep_free_lists_empty", core_keep_free_lists_empty, METH_O,
     "Keep the free lists of dicts, lists, tuples, floats empty (3.10-3.12), "
     "of dicts' key tables (3.13+)."},
    {"free_lists_kept_empty", core_free_lists_kept_empty, METH_NOARGS,
     "Whether the free lists are kept empty now."},
    {"_ext_track_info", core_ext_track_info, METH_NOARGS,
     "Whether extensions' PyTraceMalloc_Track calls are received."},
    {"_ext_track_slots", core_ext_track_slots, METH_NOARGS,
     "Testing: (object, symbol, slot, value) of each redirectable slot."},
    {"_check_depth", core_check_depth, METH_O,
     "Testing: count each captured depth again by walking; returns and "
     "restarts the counts (checked, wrong)."},
    {"_check_memo", core_check_memo, METH_O,
     "Testing: check every site the memo would give against the one found "
     "the full way; returns and restarts the counts (checked, wrong)."},
    {"_check_tstate", core_check_tstate, METH_NOARGS,
     "Testing: (offset, same): where the hooks read the calling thread's "
     "state (0: from CPython), and whether that read agrees with CPython."},
    {"_swap_in_place", core_swap_in_place, METH_O,
     "Testing: whether start() and stop() write the domain's allocator "
     "(0 RAW, 1 MEM, 2 OBJ) themselves, a field at a time (False: "
     "PyMem_SetAllocator)."},
    {"_fail_after", core_fail_after, METH_O,
     "Testing: make the tracer's allocations fail after n (-1: never)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "pyleakhunt._core",
    "The C core of pyleakhunt: allocator hooks and live tables.", -1,
    core_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL) {
        return NULL;
    }
    lh_hooks_init();
    lh_ext_track_init();
    PyObject *capsule = PyCapsule_New((void *)&lh_capi, PYLEAKHUNT_CAPI_NAME,
                                      NULL);
    if (capsule == NULL || PyModule_AddObject(m, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_NFRAME", LH_MAX_NFRAME) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
