/* hooks.h - the allocator hooks and the recording of blocks.
 *
 * Everything that changes the tracer's tables while a program runs goes
 * through here: the PyMem_SetAllocator hooks on the RAW, MEM and OBJ
 * domains, the C API for foreign allocations, and on 3.13+ the reference
 * tracer that notices objects reused from free lists.
 */
#ifndef PYLEAKHUNT_HOOKS_H
#define PYLEAKHUNT_HOOKS_H

#include <Python.h>

#include "state.h"

/* Install the hooks and start recording, keeping `nframe` frames per
   traceback; `total_nframe` says whether to count the rest of the stack.
   Already tracing, change only these two.  Called with the GIL held.
   Returns -1 with an exception set on failure. */
int lh_hooks_start(int nframe, size_t sample_bytes, int total_nframe);

/* Stop recording, remove the hooks and free the tables.  Refuses (-1,
   RuntimeError) when another tracer has wrapped our hooks and is still
   installed on top of them.  Called with the GIL held. */
int lh_hooks_stop(void);

/* Stop recording and free the tables without touching the allocators:
   for when another tracer has already removed our hooks.  GIL held. */
void lh_hooks_abandon(void);

/* Forget every recorded block and site; tracing goes on.  GIL held. */
void lh_hooks_clear(void);

/* 3.13+: 1 if another tracer took the reference tracer slot from ours
   since the last call (the stdlib tracemalloc, started after pyleakhunt,
   does); ours then takes it back, forwarding events to that tracer.  0
   otherwise, and always before 3.13.  GIL held. */
int lh_ref_tracer_check(void);

/* 1 if our hooks are the installed MEM and OBJ allocators (RAW: hooks.c). */
int lh_hooks_installed_on_top(void);

/* Change the traceback limit while tracing.  -1 with MemoryError set. */
int lh_hooks_set_nframe(int nframe);

/* Record or forget a block from outside the hooks (the C API). */
int lh_track(unsigned int domain, uintptr_t ptr, size_t size);
int lh_untrack(unsigned int domain, uintptr_t ptr);

/* Stop (1) or resume (0) recording the calling thread's allocations;
   returns the previous setting. */
int lh_hooks_pause_thread(int paused);

/* Make pthread_atfork keep the lock consistent across fork(). */
int lh_hooks_register_atfork(void);

/* Set up the lock; called once, when the module is first imported. */
void lh_hooks_init(void);

/* Testing: turn the depth check (state.h) on or off; *checked and *wrong
   get its counts so far, which restart from 0. */
void lh_hooks_check_depth(int on, uint64_t *checked, uint64_t *wrong);
/* Testing: turn the site memo's check on or off (state.h, memo_check),
   after reading and clearing its counts. */
void lh_hooks_check_memo(int on, uint64_t *checked, uint64_t *wrong);
/* Testing: *offset gets where the hooks read the calling thread's state
   (0: they ask CPython); returns whether that read, made now, gives the
   state CPython gives. */
int lh_hooks_check_tstate(intptr_t *offset);

/* Take and release the tables' lock from outside the hooks, with or
   without the GIL. */
void lh_hooks_lock(void);
void lh_hooks_unlock(void);

#endif /* PYLEAKHUNT_HOOKS_H */
