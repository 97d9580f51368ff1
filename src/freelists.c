/*
 * Keeping CPython 3.10 to 3.12's free lists of dicts, lists, tuples and
 * floats empty (from 3.13 that of dicts' key tables), for the tools that
 * must name the line that made an object.
 *
 * CPython makes these objects in the memory of dead ones, taken from its
 * free lists, without calling the allocator.  Such an object keeps the
 * line, and the request's tag, of its block's first life.  From 3.13 the
 * reference tracer (hooks.c) moves the block to its new line; before 3.13
 * no extension is told of the reuse (tracemalloc is, from inside the
 * interpreter: _PyTraceMalloc_NewReference).  A small dict kept per call
 * beside code that throws dicts away was then counted at that other code.
 *
 * So while a tool asks for it, no dead object of these types waits in a
 * free list, and every new one is allocated, at its own line:
 * - tuples and floats: a free list whose counter says "full" takes no
 *   more, and with an empty chain gives none.  A full collection resets
 *   the counters (it empties the lists), and the next tuple or float
 *   freed would then wait there: their deallocators are wrapped too, and
 *   every wrapper below sets the counters again.
 * - lists and dicts keep an array and a count, which no value of the count
 *   turns off.  Their deallocators are wrapped: after the original one
 *   has pushed the object, the wrapper frees it.
 * - 3.10's frames: a dead frame kept in its code object goes to the free
 *   list of frames instead, which a full collection empties
 *   (frame_dealloc_fresh).
 *
 * From 3.13 only dicts' key tables, which are no objects, are kept out of
 * their free list (the end of this file).
 *
 * The objects are freed exactly as CPython's own clearing of the lists
 * frees them.  The state is the interpreter's: its layout comes from the
 * internal headers of the version built against.  Everything here runs
 * with the GIL held.
 */

#define Py_BUILD_CORE 1
#include <Python.h>

#include "freelists.h"

/* 3.11 and 3.12 have the free lists only in a build WITH_FREELISTS (the
   default); 3.10 always. */
#if PY_VERSION_HEX < 0x030D0000                                            \
    && (PY_VERSION_HEX < 0x030B0000 || defined(WITH_FREELISTS))

#include <internal/pycore_interp.h>
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h> /* PyFrameObject, not in Python.h on 3.10 */
#endif

/* 3.10 sets the floats' limit in floatobject.c, not in a header. */
#ifndef PyFloat_MAXFREELIST
#define PyFloat_MAXFREELIST 100
#endif

/* 3.10 keeps the empty tuple in slot 0 and tuples of size n in slot n;
   3.11 and 3.12 keep tuples of size n in slot n - 1. */
#if PY_VERSION_HEX < 0x030B0000
#define TUPLE_SLOTS PyTuple_MAXSAVESIZE
#define FIRST_TUPLE_SLOT 1
#else
#define TUPLE_SLOTS PyTuple_NFREELISTS
#define FIRST_TUPLE_SLOT 0
#endif

/* A deallocator of CPython's that ours wraps while a tool asks. */
typedef struct {
    PyTypeObject *type;
    destructor ours;
    destructor original; /* what ours calls */
    /* Ours is in the type, or under another extension's wrapper, which
       then keeps it there. */
    int wrapped;
} lh_wrapped_dealloc;

/* 3.10 also keeps dead frames (frame_dealloc_fresh). */
#if PY_VERSION_HEX < 0x030B0000
#define LH_FRAMES 1
#else
#define LH_FRAMES 0
#endif

enum { LH_LIST, LH_DICT, LH_TUPLE, LH_FLOAT, LH_FRAME };
#define LH_NWRAPPED (LH_FRAME + LH_FRAMES)

static void list_dealloc_fresh(PyObject *op);
static void dict_dealloc_fresh(PyObject *op);
static void tuple_dealloc_fresh(PyObject *op);
static void float_dealloc_fresh(PyObject *op);
#if LH_FRAMES
static void frame_dealloc_fresh(PyObject *op);
#endif

typedef struct {
    int active;
    lh_wrapped_dealloc deallocs[LH_NWRAPPED];
} lh_freelists_state;

static lh_freelists_state F = {
    .deallocs = {
        [LH_LIST] = {&PyList_Type, list_dealloc_fresh, NULL, 0},
        [LH_DICT] = {&PyDict_Type, dict_dealloc_fresh, NULL, 0},
        [LH_TUPLE] = {&PyTuple_Type, tuple_dealloc_fresh, NULL, 0},
        [LH_FLOAT] = {&PyFloat_Type, float_dealloc_fresh, NULL, 0},
#if LH_FRAMES
        [LH_FRAME] = {&PyFrame_Type, frame_dealloc_fresh, NULL, 0},
#endif
    },
};

static void
empty_tuples_and_floats(PyInterpreterState *interp)
{
    struct _Py_tuple_state *tuples = &interp->tuple;
    for (int i = FIRST_TUPLE_SLOT; i < TUPLE_SLOTS; i++) {
        while (tuples->free_list[i] != NULL) {
            PyTupleObject *op = tuples->free_list[i];
            tuples->free_list[i] = (PyTupleObject *)op->ob_item[0];
            PyObject_GC_Del(op);
        }
        tuples->numfree[i] = PyTuple_MAXFREELIST;
    }
    struct _Py_float_state *floats = &interp->float_state;
    while (floats->free_list != NULL) {
        PyFloatObject *op = floats->free_list;
        floats->free_list = (PyFloatObject *)Py_TYPE(op);
        PyObject_Free(op);
    }
    floats->numfree = PyFloat_MAXFREELIST;
}

/* The "full" counters again, if a full collection reset them. */
static inline void
keep_tuples_and_floats_refused(PyInterpreterState *interp)
{
    if (interp->float_state.numfree != PyFloat_MAXFREELIST
        || interp->tuple.numfree[FIRST_TUPLE_SLOT] != PyTuple_MAXFREELIST) {
        empty_tuples_and_floats(interp);
    }
}

static void
empty_lists(PyInterpreterState *interp)
{
    struct _Py_list_state *lists = &interp->list;
    while (lists->numfree > 0) {
        PyObject_GC_Del(lists->free_list[--lists->numfree]);
    }
}

/* Key tables are no objects (nothing traces their reuse, not even
   tracemalloc), but a new dict's table is counted with the dict. */
static void
empty_dict_keys(PyInterpreterState *interp)
{
    struct _Py_dict_state *dicts = &interp->dict_state;
    while (dicts->keys_numfree > 0) {
        PyObject_Free(dicts->keys_free_list[--dicts->keys_numfree]);
    }
}

static void
empty_dicts(PyInterpreterState *interp)
{
    struct _Py_dict_state *dicts = &interp->dict_state;
    while (dicts->numfree > 0) {
        PyObject_GC_Del(dicts->free_list[--dicts->numfree]);
    }
    empty_dict_keys(interp);
}

/* What the wrappers do once the original deallocator has run: free what
   it pushed (`empty`, if the type's list takes objects), and set the
   tuple and float counters again if a full collection reset them.  Every
   wrapper does the latter, so that the first tuple, float, list or dict
   freed after a collection closes the lists again (floats that a
   specialized instruction frees bypass their deallocator).

   Every wrapper also frees the dict key tables waiting in their list: a
   table goes there when a dict that keeps living lets it go (it grew, or
   was cleared), with no dict freed.  Under an asyncio loop on 3.10, the
   key tables of the small dicts a coroutine kept came from that list,
   first allocated under the event loop's own frames, and the leak's
   biggest part was reported there, above the coroutine's line. */
static inline void
after_dealloc(void (*empty)(PyInterpreterState *))
{
    if (F.active) {
        PyInterpreterState *interp = PyInterpreterState_Get();
        if (empty != NULL) {
            empty(interp);
        }
        if (interp->dict_state.keys_numfree > 0) {
            empty_dict_keys(interp);
        }
        keep_tuples_and_floats_refused(interp);
    }
}

/* The original deallocators of lists, dicts and tuples no longer find
   themselves in the type, so they skip the trashcan that bounds the C
   stack on deeply nested objects: the wrappers take it instead,
   untracking first as the trashcan requires. */
static void
list_dealloc_fresh(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    Py_TRASHCAN_BEGIN(op, list_dealloc_fresh)
    F.deallocs[LH_LIST].original(op);
    after_dealloc(empty_lists);
    Py_TRASHCAN_END
}

static void
dict_dealloc_fresh(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    Py_TRASHCAN_BEGIN(op, dict_dealloc_fresh)
    F.deallocs[LH_DICT].original(op);
    after_dealloc(empty_dicts);
    Py_TRASHCAN_END
}

static void
tuple_dealloc_fresh(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    Py_TRASHCAN_BEGIN(op, tuple_dealloc_fresh)
    F.deallocs[LH_TUPLE].original(op);
    after_dealloc(NULL);
    Py_TRASHCAN_END
}

static void
float_dealloc_fresh(PyObject *op)
{
    F.deallocs[LH_FLOAT].original(op);
    after_dealloc(NULL);
}

#if LH_FRAMES
/* 3.10's frameobject.c sets this, not a header. */
#ifndef PyFrame_MAXFREELIST
#define PyFrame_MAXFREELIST 200
#endif

/* 3.10 keeps one dead frame in its code object (the "zombie") for the
   code's next call, until the code itself dies: nothing else empties
   it.  Only a second dead frame goes to the free list of frames, which
   every full collection empties.  A zombie first made in one request
   was retained memory of that endpoint for good, one per code object
   (Starlette's routing on 3.10: 560 bytes each, credited to GET /health
   one after another over 50 requests).  So the wrapper moves the zombie
   to the free list: calls still reuse dead frames, without an allocation
   each, but none waits beyond the next full collection. */
static void
frame_dealloc_fresh(PyObject *op)
{
    PyFrameObject *frame = (PyFrameObject *)op;
    /* The original drops the frame's reference to its code. */
    PyCodeObject *code = (PyCodeObject *)Py_NewRef(frame->f_code);
    F.deallocs[LH_FRAME].original(op);
    if (F.active && code->co_zombieframe == (void *)frame) {
        code->co_zombieframe = NULL;
        struct _Py_frame_state *frames = &PyInterpreterState_Get()->frame;
        if (frames->numfree < PyFrame_MAXFREELIST) {
            frame->f_back = frames->free_list; /* the list's link */
            frames->free_list = frame;
            frames->numfree++;
        }
        else {
            PyObject_GC_Del(frame);
        }
    }
    after_dealloc(NULL);
    Py_DECREF(code);
}
#endif

static void
wrap(lh_wrapped_dealloc *d)
{
    if (!d->wrapped) {
        d->original = d->type->tp_dealloc;
        d->type->tp_dealloc = d->ours;
        d->wrapped = 1;
    }
}

/* Give the type its deallocator back, so that an object freed while no
   tool asks pays nothing for ours.  Unless another extension wrapped ours
   meanwhile: its wrapper calls ours, which then stays (and, inactive,
   only calls the original). */
static void
unwrap(lh_wrapped_dealloc *d)
{
    if (d->wrapped && d->type->tp_dealloc == d->ours) {
        d->type->tp_dealloc = d->original;
        d->wrapped = 0;
    }
}

int
lh_freelists_keep_empty(int on)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (on && !F.active) {
        for (int i = 0; i < LH_NWRAPPED; i++) {
            wrap(&F.deallocs[i]);
        }
        F.active = 1;
        empty_lists(interp);
        empty_dicts(interp);
        empty_tuples_and_floats(interp);
    }
    else if (!on && F.active) {
        F.active = 0;
        for (int i = 0; i < LH_NWRAPPED; i++) {
            unwrap(&F.deallocs[i]);
        }
        /* The lists are empty: counters of empty lists take objects again. */
        for (int i = FIRST_TUPLE_SLOT; i < TUPLE_SLOTS; i++) {
            interp->tuple.numfree[i] = 0;
        }
        interp->float_state.numfree = 0;
    }
    return 1;
}

int
lh_freelists_kept_empty(void)
{
    return F.active;
}

#else /* 3.13+: the reference tracer moves reused objects' blocks (hooks.c) */

/* From 3.13 the reference tracer moves the block of every object reused
   from a free list.  A dict's key table is no object: CPython reuses dead
   tables (of eight slots, with str keys) from a free list of their own,
   and tells nobody.  The table of a small dict kept per call kept the
   line, and the request's tag, of a dict thrown away elsewhere: more than
   half of the dict's bytes, and the line that threw it away came first
   in every report.  So while a tool asks, that free list is off: its
   count is -1, the value CPython itself gives it at finalization, with
   which it takes no table and gives none.  A full collection leaves that
   count as it is (it frees what the list holds, if anything). */

#include <internal/pycore_interp.h>

static struct {
    int active;
} F;

#if PY_VERSION_HEX >= 0x030E0000

/* 3.14+: each list is a chain through its items' first word, and a
   length.  Free the items on top of `list` until it holds `length`. */
static void
trim_list(struct _Py_freelist *list, Py_ssize_t length,
          void (*release)(void *))
{
    while (list->size > length && list->freelist != NULL) {
        void *item = list->freelist;
        list->freelist = *(void **)item;
        list->size--;
        release(item);
    }
}

static void
dict_keys_off(PyInterpreterState *interp, int off)
{
    struct _Py_freelist *keys = &interp->object_state.freelists.dictkeys;
    if (off) {
        trim_list(keys, 0, PyMem_Free);
        keys->size = -1;
    }
    else if (keys->size == -1) {
        keys->size = 0;
    }
}

#elif defined(WITH_FREELISTS)

/* 3.13: an array and a count. */
static void
dict_keys_off(PyInterpreterState *interp, int off)
{
    struct _Py_dictkeys_freelist *keys =
        &interp->object_state.freelists.dictkeys;
    if (off) {
        while (keys->numfree > 0) {
            PyMem_Free(keys->items[--keys->numfree]);
        }
        keys->numfree = -1;
    }
    else if (keys->numfree == -1) {
        keys->numfree = 0;
    }
}

#else

/* 3.13 built without free lists: nothing to turn off. */
static void
dict_keys_off(PyInterpreterState *interp, int off)
{
    (void)interp;
    (void)off;
}

#endif

int
lh_freelists_keep_empty(int on)
{
    if (on != F.active) {
        dict_keys_off(PyInterpreterState_Get(), on);
        F.active = on;
    }
    return 1;
}

int
lh_freelists_kept_empty(void)
{
    return F.active;
}

#endif

#if PY_VERSION_HEX >= 0x030D0000

/* The bytes before the object: the collector's header.  (None of these
   types has a managed dict or weakref pointer: lh_object_block.) */
static size_t
pre_header(PyTypeObject *type)
{
    return PyType_IS_GC(type) ? sizeof(PyGC_Head) : 0;
}

size_t
lh_freelists_block_size(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    if (type == &PyTuple_Type) {
        /* A tuple of n items is allocated as n items (tuple_alloc). */
        return pre_header(type) + _PyObject_VAR_SIZE(type, Py_SIZE(op));
    }
    if (type == &PyLong_Type) {
        /* Only compact ints go to the free list (3.14+); one is allocated
           as a PyLongObject of one digit. */
        if (!_PyLong_IsCompact((PyLongObject *)op)) {
            return 0;
        }
        return _PyObject_VAR_SIZE(type, 1);
    }
    if (type == &PyDict_Type || type == &PyList_Type
        || type == &PyFloat_Type || type == &PyComplex_Type) {
        return pre_header(type) + (size_t)type->tp_basicsize;
    }
    return 0;
}

#else

size_t
lh_freelists_block_size(PyObject *op)
{
    (void)op;
    return 0;
}

#endif


/* ---- The tracer's own dead objects (3.13+) ----------------------------
 *
 * The tracer's threads record nothing (a paused thread), but the objects
 * they free go to the free lists every thread takes from.  There they
 * are new blocks that nothing recorded, and the program's next objects of
 * their kind are made in them and adopted at the program's line (hooks.c,
 * adopt_general), where they then stay counted as the dead objects they
 * become.  A snapshot that freed a few more dicts than it took added as
 * many to that population: a program that only churned dicts had its
 * churning line grow by two dicts a sample until the list was full (80
 * dicts, 5 KB), and that line was a suspect, or came before a real leak.
 * So the tracer notes the lengths of the lists before its work
 * (lh_freelists_lengths) and gives back what they gained meanwhile
 * (lh_freelists_trim), freeing the items on top, as CPython's own
 * clearing frees them.  A list is a stack: the items on top are the last
 * freed, the tracer's own unless the program, running while the tracer
 * let go of the GIL, freed more than it took; those are dead too. */

#if PY_VERSION_HEX >= 0x030E0000

/* An object on a free list still holds its type's reference. */
static void
release_object(void *item)
{
    PyObject *op = (PyObject *)item;
    PyTypeObject *type = Py_TYPE(op);
    type->tp_free(op);
    Py_DECREF(type);
}

#if PY_VERSION_HEX >= 0x030F0000
#define LH_FREELISTS_315(X)                                                \
    X(complexes, release_object)                                           \
    X(bytes_writers, PyMem_Free)
#else
#define LH_FREELISTS_315(X)
#endif

/* Every member of struct _Py_freelists, with how its items are freed
   (NULL: left alone: the collector's own stack chunks). */
#define LH_FREELISTS(X)                                                    \
    X(floats, release_object)                                              \
    X(ints, release_object)                                                \
    X(tuples, release_object)                                              \
    X(lists, release_object)                                               \
    X(list_iters, release_object)                                          \
    X(tuple_iters, release_object)                                         \
    X(dicts, release_object)                                               \
    X(dictkeys, PyMem_Free)                                                \
    X(slices, release_object)                                              \
    X(ranges, release_object)                                              \
    X(range_iters, release_object)                                         \
    X(contexts, release_object)                                            \
    X(async_gens, release_object)                                          \
    X(async_gen_asends, release_object)                                    \
    X(futureiters, release_object)                                         \
    X(object_stack_chunks, NULL)                                           \
    X(unicode_writers, PyMem_Free)                                         \
    X(pycfunctionobject, PyObject_GC_Del)                                  \
    X(pycmethodobject, PyObject_GC_Del)                                    \
    X(pymethodobjects, release_object)                                     \
    LH_FREELISTS_315(X)

#define LH_MEMBER_SIZE(name, release)                                      \
    +sizeof(((struct _Py_freelists *)0)->name)
/* A free list that a new CPython adds must be named above. */
_Static_assert(0 LH_FREELISTS(LH_MEMBER_SIZE) == sizeof(struct _Py_freelists),
               "struct _Py_freelists has a member LH_FREELISTS lacks");

#define LH_NLISTS (sizeof(struct _Py_freelists) / sizeof(struct _Py_freelist))

typedef struct {
    size_t first; /* its first list's index in the array (all_lists) */
    size_t count; /* its lists: the tuples have one a length */
    void (*release)(void *);
} lh_freelist_member;

/* By offset, not by order: 3.15 put complexes second. */
#define LH_MEMBER(name, release)                                           \
    {offsetof(struct _Py_freelists, name) / sizeof(struct _Py_freelist),   \
     sizeof(((struct _Py_freelists *)0)->name) / sizeof(struct _Py_freelist), \
     release},
static const lh_freelist_member members[] = {LH_FREELISTS(LH_MEMBER)};

/* The interpreter's free lists, as one array: every member above is
   struct _Py_freelist or an array of them. */
static struct _Py_freelist *
all_lists(void)
{
    return (struct _Py_freelist *)&PyInterpreterState_Get()
        ->object_state.freelists;
}

size_t
lh_freelists_lengths(Py_ssize_t *lengths, size_t most)
{
    struct _Py_freelist *lists = all_lists();
    size_t n = LH_NLISTS < most ? LH_NLISTS : most;
    for (size_t i = 0; i < n; i++) {
        lengths[i] = lists[i].size;
    }
    return n;
}

void
lh_freelists_trim(const Py_ssize_t *lengths, size_t n)
{
    struct _Py_freelist *lists = all_lists();
    for (size_t m = 0; m < sizeof(members) / sizeof(members[0]); m++) {
        if (members[m].release == NULL) {
            continue;
        }
        for (size_t i = members[m].first;
             i < members[m].first + members[m].count && i < n; i++) {
            /* Below 0: a list turned off (dictkeys), which stays so. */
            if (lengths[i] >= 0) {
                trim_list(&lists[i], lengths[i], members[m].release);
            }
        }
    }
}

#elif PY_VERSION_HEX >= 0x030D0000 && defined(WITH_FREELISTS)

/* 3.13: each list has a layout of its own.  Only the kinds that the
   hooks adopt (lh_freelists_block_size) are trimmed: an object of any
   other kind made in a block nothing recorded stays unrecorded, and is
   counted nowhere.  Freed as CPython's own clearing frees them. */

#define LH_NLISTS (2 + PyTuple_NFREELISTS + 1)

size_t
lh_freelists_lengths(Py_ssize_t *lengths, size_t most)
{
    struct _Py_object_freelists *f =
        &PyInterpreterState_Get()->object_state.freelists;
    if (most < LH_NLISTS) {
        return 0;
    }
    lengths[0] = f->floats.numfree;
    lengths[1] = f->lists.numfree;
    lengths[2] = f->dicts.numfree;
    for (int i = 0; i < PyTuple_NFREELISTS; i++) {
        lengths[3 + i] = f->tuples.numfree[i];
    }
    return LH_NLISTS;
}

void
lh_freelists_trim(const Py_ssize_t *lengths, size_t n)
{
    struct _Py_object_freelists *f =
        &PyInterpreterState_Get()->object_state.freelists;
    if (n != LH_NLISTS) {
        return;
    }
    /* Below 0 a length is no length: that list is left as it is, as from
       3.14.  Floats are chained through their type field. */
    while (lengths[0] >= 0 && f->floats.numfree > lengths[0]
           && f->floats.items != NULL) {
        PyFloatObject *item = f->floats.items;
        f->floats.items = (PyFloatObject *)Py_TYPE(item);
        f->floats.numfree--;
        PyObject_Free(item);
    }
    while (lengths[1] >= 0 && f->lists.numfree > lengths[1]
           && f->lists.numfree > 0) {
        PyObject_GC_Del(f->lists.items[--f->lists.numfree]);
    }
    while (lengths[2] >= 0 && f->dicts.numfree > lengths[2]
           && f->dicts.numfree > 0) {
        PyObject_GC_Del(f->dicts.items[--f->dicts.numfree]);
    }
    /* Tuples of each length are chained through their first item. */
    for (int i = 0; i < PyTuple_NFREELISTS; i++) {
        while (lengths[3 + i] >= 0 && f->tuples.numfree[i] > lengths[3 + i]
               && f->tuples.items[i] != NULL) {
            PyTupleObject *item = f->tuples.items[i];
            f->tuples.items[i] = (PyTupleObject *)item->ob_item[0];
            f->tuples.numfree[i]--;
            PyObject_GC_Del(item);
        }
    }
}

#else

/* 3.10 to 3.12 keep the lists empty while blocks are adopted at all (a
   3.13 built without free lists has none). */
size_t
lh_freelists_lengths(Py_ssize_t *lengths, size_t most)
{
    (void)lengths;
    (void)most;
    return 0;
}

void
lh_freelists_trim(const Py_ssize_t *lengths, size_t n)
{
    (void)lengths;
    (void)n;
}

#endif
