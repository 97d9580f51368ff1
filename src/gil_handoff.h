/* gil_handoff.h - the main thread gives the GIL to a starved sampler.
 *
 * The sampling thread (pyleakhunt/sampler.py) needs the GIL for each
 * sample.  Behind an asyncio loop of many small tasks it may wait for
 * seconds: the loop gives the GIL up around every select() and takes it
 * back at once, and CPython sets no drop request for a waiter while the
 * holder keeps changing.  So a thread of ours, which never touches
 * Python, watches the sampler's clock.  When the sampler is overdue (it
 * has not armed again some grace after it meant to), that thread asks
 * the main thread, through Py_AddPendingCall (which needs no GIL),
 * to give the GIL up and wait until the sampler has had its turn:
 * "parking".
 *
 * The watching thread runs only while the sampler does.
 *
 * The main thread never waits for long: at most the park limit the
 * sampler gave, whatever the sampler does meanwhile (it may be waiting
 * for a lock the program holds).  A request that the main thread runs
 * after the sampler armed again (the main thread was blocked in C without
 * the GIL, so the sampler got the GIL anyway) does nothing.
 */
#ifndef PYLEAKHUNT_GIL_HANDOFF_H
#define PYLEAKHUNT_GIL_HANDOFF_H

#include <stdint.h>

typedef struct {
    uint64_t requests;      /* pending calls posted */
    uint64_t parks;         /* of which the main thread waited in */
    uint64_t park_timeouts; /* parks that ended at the park limit */
    uint64_t stale;         /* requests run after the sampler armed again */
} lh_handoff_stats;

/* The sampler has had what it needed of the GIL for now: a parked main
   thread goes on.  If it does not call again within `delay` seconds
   (before its next sample, `delay` is the time until the sample is due,
   plus a grace; after a sample, just the grace, for its own bookkeeping),
   it is taken to be starved, and the main thread is asked to park, for at
   most `park_limit` seconds.  Returns -1 with errno set if the watching
   thread could not start. */
int lh_handoff_arm(double delay, double park_limit);

/* Disarm, let a parked main thread go, and the watching thread leaves (joined: call it
   without the GIL).  The sampler stops it when it stops: a process with
   a thread left over is warned by os.fork() from 3.12 (and a fork server
   has no use for it).  The next lh_handoff_arm() starts another. */
void lh_handoff_stop(void);

/* lh_handoff_stop(), for good (interpreter exit): the main thread must
   not be asked to park while Python shuts down. */
void lh_handoff_shutdown(void);

lh_handoff_stats lh_handoff_get_stats(void);

#endif /* PYLEAKHUNT_GIL_HANDOFF_H */
