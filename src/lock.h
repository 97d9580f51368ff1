/* lock.h - the lock that guards the tracer's tables.
 *
 * Nearly every allocation event comes from the thread that holds the GIL
 * (the MEM and OBJ hooks always do, the RAW hooks mostly do), and those
 * threads are already serialized by the GIL.  A plain spin lock would make
 * each of them pay an atomic read-modify-write, which drains the store
 * buffer: measured, that was a third of the whole cost of exact tracing.
 *
 * So the lock is asymmetric.  The GIL holder (the "fast side") enters by
 * storing a flag and checking that no other thread wants the lock: plain
 * loads and stores, no fence.  Any other thread (the "slow side": a RAW
 * hook without the GIL, the C API from a foreign thread, fork) first takes
 * a spin lock, announces itself, then forces a memory barrier on every
 * running thread of the process with membarrier(2), and waits until the
 * fast side is out.  This is Dekker's algorithm with the fast side's fence
 * moved into the slow side's system call.
 *
 * A membarrier costs microseconds, so if the slow side comes often, the
 * lock turns symmetric for a while: the fast side then pays a real fence
 * and the slow side does not call the kernel.  Without membarrier (old
 * kernels, seccomp), the lock is symmetric for good.
 *
 * "Holds the GIL" means the main interpreter's GIL: from 3.12 a
 * subinterpreter may have its own, and its threads take the slow side.
 */
#ifndef PYLEAKHUNT_LOCK_H
#define PYLEAKHUNT_LOCK_H

#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>

/* Bits of lh_lock.slow: what the fast side must look at.  One word, so
   that the fast side's common case (neither) costs one load. */
#define LH_LOCK_OTHER_INSIDE 1 /* a slow taker holds the spin lock */
#define LH_LOCK_SYMMETRIC 2    /* the fast side must fence (see lock.c) */

typedef struct {
    atomic_flag spin;       /* serializes the slow side */
    atomic_int gil_inside;  /* the GIL holder is in the critical section */
    atomic_int slow;        /* LH_LOCK_* bits, changed by the slow side */
    /* Guarded by the spin lock. */
    int set_up;
    int can_membarrier;
    uint64_t window_start_ns;
    uint32_t window_slow_entries;
    atomic_ullong slow_entries; /* ever; read by get_stats() */
} lh_lock;

/* Find out whether membarrier(2) can be used: once before the lock is
   first used, and in a child after fork() (one thread, lock held). */
void lh_lock_setup(lh_lock *lock);
void lh_lock_after_fork(lh_lock *lock);

/* The slow side: any thread, the GIL or not. */
void lh_lock_acquire_slow(lh_lock *lock);
void lh_lock_release_slow(lh_lock *lock);

/* Called by the fast side when the slow word is not 0 (`slow`, as it
   read it): fences if symmetric, then, if a slow taker is inside, waits
   for it to leave.  Returns with gil_inside set and no slow taker inside,
   so that the fast side's release is the same store whatever happened. */
void lh_lock_fast_contended(lh_lock *lock, int slow);

/* Whether a caller that holds the main interpreter's GIL (`gil`) may take
   the fast side: not in a free-threaded build, where the GIL serializes
   nothing. */
static inline int
lh_lock_fast_side(int gil)
{
#ifdef Py_GIL_DISABLED
    (void)gil;
    return 0;
#else
    return gil;
#endif
}

/* `gil`: the caller holds the main interpreter's GIL. */
static inline void
lh_lock_acquire(lh_lock *lock, int gil)
{
    if (!lh_lock_fast_side(gil)) {
        lh_lock_acquire_slow(lock);
        return;
    }
    atomic_store_explicit(&lock->gil_inside, 1, memory_order_relaxed);
    /* Unless symmetric, the slow side's membarrier stands in for a fence
       here; lh_lock_fast_contended() fences when it is. */
    atomic_signal_fence(memory_order_seq_cst);
    int slow = atomic_load_explicit(&lock->slow, memory_order_acquire);
    if (slow != 0) {
        lh_lock_fast_contended(lock, slow);
    }
}

static inline void
lh_lock_release(lh_lock *lock, int gil)
{
    if (!lh_lock_fast_side(gil)) {
        lh_lock_release_slow(lock);
    }
    else {
        atomic_store_explicit(&lock->gil_inside, 0, memory_order_release);
    }
}

#endif /* PYLEAKHUNT_LOCK_H */
