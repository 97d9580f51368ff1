/* lock.c - the slow side of the tables' lock (see lock.h).
 *
 * Why the protocol is safe.  The fast side stores gil_inside = 1, then
 * loads the slow word; the slow side sets the word's OTHER_INSIDE bit,
 * then loads gil_inside.  On x86 (and in C11) each side's load may pass
 * its own store unless a fence separates them; with one on both sides, at
 * least one of them sees the other's flag.
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread
 * of the process execute a full fence, so the slow side can pay for both.
 * The fast side reads both bits in one load: that is one of the orders
 * in which two loads could have run, so nothing changes.
 *
 * Switching modes.  Only the holder of the spin lock changes the
 * SYMMETRIC bit, and it does so before its own fence.  It skips the
 * membarrier only when the lock was symmetric both before and after: then
 * every fast taker fences by itself (and loads the word again after its
 * fence).  After any change, the membarrier covers fast takers that read
 * either value.
 */
#include "lock.h" /* Python.h first: it sets the feature macros */

#include <errno.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#include "compiler.h"

/* Above this many slow entries in one window, stay symmetric until the
   end of the next quiet window: at ~10 us a membarrier, 200 a second cost
   the slow side 0.2% of a CPU. */
#define LH_SLOW_PER_WINDOW 200
#define LH_WINDOW_NS 1000000000ull

/* Only the spin lock's holder changes the symmetric bit (or a thread
   alone: setup, fork), but a slow taker's bit shares the word, hence the
   atomic read-modify-writes. */
static void
set_symmetric(lh_lock *lock, int symmetric)
{
    if (symmetric) {
        atomic_fetch_or_explicit(&lock->slow, LH_LOCK_SYMMETRIC,
                                 memory_order_relaxed);
    }
    else {
        atomic_fetch_and_explicit(&lock->slow, ~LH_LOCK_SYMMETRIC,
                                  memory_order_relaxed);
    }
}

static int
is_symmetric(lh_lock *lock)
{
    return (atomic_load_explicit(&lock->slow, memory_order_relaxed)
            & LH_LOCK_SYMMETRIC) != 0;
}

static long
membarrier(int cmd)
{
#if defined(__linux__) && defined(__NR_membarrier)
    return syscall(__NR_membarrier, cmd, 0, 0);
#else
    (void)cmd;
    errno = ENOSYS;
    return -1;
#endif
}

static void
probe_membarrier(lh_lock *lock)
{
    int usable = 0;
#if defined(__linux__) && defined(__NR_membarrier)
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);
    usable = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)
             && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#endif
    lock->can_membarrier = usable;
    set_symmetric(lock, !usable);
}

void
lh_lock_setup(lh_lock *lock)
{
    /* Once: the lock may be in use by the time the module is imported
       again (a subinterpreter). */
    if (!lock->set_up) {
        lock->set_up = 1;
        probe_membarrier(lock);
    }
}

void
lh_lock_after_fork(lh_lock *lock)
{
    /* The child is a new process: register it again. */
    probe_membarrier(lock);
    lock->window_start_ns = 0;
    lock->window_slow_entries = 0;
}

static void
spin(atomic_flag *flag)
{
    unsigned int spins = 0;
    while (atomic_flag_test_and_set_explicit(flag, memory_order_acquire)) {
        /* Critical sections last a few hundred nanoseconds, so spin; but
           yield if the holder seems to have been preempted. */
        if (++spins % 64 == 0) {
            sched_yield();
        }
#if defined(__x86_64__) || defined(__i386__)
        else {
            __builtin_ia32_pause();
        }
#endif
    }
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Count a slow entry and pick the mode for it (spin lock held). */
static void
choose_mode(lh_lock *lock)
{
    atomic_fetch_add_explicit(&lock->slow_entries, 1, memory_order_relaxed);
    if (!lock->can_membarrier) {
        return;
    }
    uint64_t now = now_ns();
    if (now - lock->window_start_ns > LH_WINDOW_NS) {
        if (lock->window_slow_entries <= LH_SLOW_PER_WINDOW) {
            set_symmetric(lock, 0);
        }
        lock->window_start_ns = now;
        lock->window_slow_entries = 0;
    }
    if (++lock->window_slow_entries > LH_SLOW_PER_WINDOW) {
        set_symmetric(lock, 1);
    }
}

/* The fence that pairs with the fast side's, whatever it read. */
static void
heavy_fence(lh_lock *lock, int symmetric)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (symmetric || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
        return;
    }
    /* Cannot happen once registered; if it does anyway, fence for good,
       and give a fast taker that missed our flag time to show its own
       (a store leaves the store buffer within microseconds). */
    lock->can_membarrier = 0;
    set_symmetric(lock, 1);
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
}

LH_COLD void
lh_lock_acquire_slow(lh_lock *lock)
{
    spin(&lock->spin);
    int was_symmetric = is_symmetric(lock);
    choose_mode(lock);
    int symmetric = was_symmetric && is_symmetric(lock);
    atomic_fetch_or_explicit(&lock->slow, LH_LOCK_OTHER_INSIDE,
                             memory_order_relaxed);
    heavy_fence(lock, symmetric);
    unsigned int spins = 0;
    while (atomic_load_explicit(&lock->gil_inside, memory_order_acquire)) {
        if (++spins % 64 == 0) {
            sched_yield();
        }
    }
}

LH_COLD void
lh_lock_release_slow(lh_lock *lock)
{
    atomic_fetch_and_explicit(&lock->slow, ~LH_LOCK_OTHER_INSIDE,
                              memory_order_release);
    atomic_flag_clear_explicit(&lock->spin, memory_order_release);
}

LH_COLD void
lh_lock_fast_contended(lh_lock *lock, int slow)
{
    if (slow & LH_LOCK_SYMMETRIC) {
        /* No membarrier covers this taker: fence, and look again. */
        atomic_thread_fence(memory_order_seq_cst);
        slow = atomic_load_explicit(&lock->slow, memory_order_acquire);
    }
    if (slow & LH_LOCK_OTHER_INSIDE) {
        /* Step aside first: the slow taker waits for gil_inside == 0.
           Holding the spin lock, no slow taker is inside or can come in;
           gil_inside, set again before the spin lock is released, is seen
           by the next one (its acquire of the spin lock pairs with that
           release), which then waits for the fast side's release. */
        atomic_store_explicit(&lock->gil_inside, 0, memory_order_release);
        spin(&lock->spin);
        atomic_store_explicit(&lock->gil_inside, 1, memory_order_relaxed);
        atomic_flag_clear_explicit(&lock->spin, memory_order_release);
    }
}
