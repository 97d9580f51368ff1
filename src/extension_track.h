/* extension_track.h - receive the PyTraceMalloc_Track/Untrack calls that
 * extension modules make (numpy reports its array buffers this way).
 *
 * Those calls go to the interpreter's own functions, which only the stdlib
 * tracemalloc listens to.  An extension reaches them through a slot of its
 * dynamic linking table (the GOT), so while pyleakhunt traces, every such
 * slot in every loaded ELF object is redirected to a function of ours that
 * records the block and passes the call on.  stop() puts every slot back.
 * See docs/design.md, "Extensions that report to tracemalloc".
 *
 * Linux on x86_64 only (the relocation types are the machine's); elsewhere
 * this compiles to nothing and lh_ext_track_info() says why.
 */
#ifndef PYLEAKHUNT_EXTENSION_TRACK_H
#define PYLEAKHUNT_EXTENSION_TRACK_H

#include <Python.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__linux__) && defined(__x86_64__)
#define LH_EXT_TRACK_SUPPORTED 1
#else
#define LH_EXT_TRACK_SUPPORTED 0
#endif

/* One redirected slot, and what it held before. */
typedef struct {
    void **slot;
    void *saved;
    int target;    /* index in extension_track.c's table of symbols */
    int readonly;  /* the slot's page is RELRO: mprotect around writes */
} lh_got_patch;

/* The part of the tracer's state (state.h) this file owns. */
typedef struct {
    /* Guards everything below.  Never held while taking the tables' lock
       or the GIL. */
    pthread_mutex_t mutex;
    int ready;   /* mutex initialized (lh_ext_track_init) */
    int active;  /* between start and stop: slots are redirected */
    lh_got_patch *patches;
    size_t npatches;
    size_t capacity;
    /* Load addresses of the objects already scanned, so that a scan after
       dlopen() only reads the new ones.  Kept after stop(), with the
       records of the slots found, for the next start() (unless an object
       is unloaded meanwhile). */
    uintptr_t *scanned;
    size_t nscanned;
    size_t scanned_capacity;
    unsigned long long seen_adds; /* dl_iterate_phdr's counters at the */
    unsigned long long seen_subs; /* last scan */
    uint64_t scans;    /* objects read, ever */
    uint64_t failures; /* slots that could not be redirected or restored */
} lh_ext_track_state;

/* Once, when the module is imported (GIL held). */
void lh_ext_track_init(void);

/* Redirect the slots of every loaded object, and of those dlopen()ed
   later; called by start() once tracing is on.  Again while active: scan
   for new objects only.  GIL held.  Never fails the start: a slot that
   cannot be written is counted in lh_ext_track_info()["failures"]. */
void lh_ext_track_start(void);

/* Put every redirected slot back as it was; called by stop() once
   tracing is off.  The slots found are remembered: the next start()
   redirects them again without reading the objects.  GIL held. */
void lh_ext_track_stop(void);

/* Scan the objects loaded since the last scan, if any: cheap when there
   are none.  Any thread. */
void lh_ext_track_refresh(void);

/* For tests and diagnostics (GIL held): a dict saying whether this works
   here, whether slots are redirected, how many, and our functions'
   addresses. */
PyObject *lh_ext_track_info(void);

/* For tests (GIL held): every slot through which a loaded object calls
   the redirected functions, as (object path, symbol, slot address, value)
   tuples. */
PyObject *lh_ext_track_slots(void);

#endif /* PYLEAKHUNT_EXTENSION_TRACK_H */
