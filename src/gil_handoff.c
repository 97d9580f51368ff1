/* gil_handoff.c - the main thread gives the GIL to a starved sampler.
 *
 * See gil_handoff.h for why.  Three parties share lh_handoff, under its
 * mutex:
 * - the sampler (any Python thread, the GIL held) arms the watch each
 *   time it has had its turn: before it sleeps, and after a sample;
 * - the watching thread (a plain pthread: it never takes the GIL and has
 *   no thread state) posts a request when an armed due time passes;
 * - the main thread runs the request (a pending call, the GIL held) and
 *   parks: it gives the GIL up and waits until the sampler arms again,
 *   or the park limit passes.
 * Nobody holds the mutex while waiting for the GIL or for CPython's
 * pending-calls lock, so none of them can deadlock another.
 */
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "gil_handoff.h"

typedef enum {
    LH_HANDOFF_IDLE,      /* nothing asked of the main thread */
    LH_HANDOFF_REQUESTED, /* a request is posted, not yet run */
    LH_HANDOFF_PARKED,    /* the main thread waits for the sampler */
} lh_handoff_phase;

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake_watcher; /* armed again, or shut down */
    pthread_cond_t wake_parked;  /* the sampler had its turn */
    int conds_ready;
    pid_t watcher_pid; /* the process whose watching thread runs: fork */
    pthread_t watcher;
    int stopping; /* the watching thread is told to leave */
    int armed;
    struct timespec due; /* CLOCK_MONOTONIC: when to post a request */
    double park_limit;
    lh_handoff_phase phase;
    uint64_t turn; /* the request's number, so that a stale one is known */
    int posted;    /* a request is queued and has not run */
    int shut_down;
    lh_handoff_stats stats;
} lh_handoff = {.mutex = PTHREAD_MUTEX_INITIALIZER};

#define H lh_handoff

/* CLOCK_MONOTONIC now plus `seconds`. */
static struct timespec
deadline_after(double seconds)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double whole = floor(seconds);
    t.tv_sec += (time_t)whole;
    t.tv_nsec += (long)((seconds - whole) * 1e9);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec += 1;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int
passed(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec
           || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* The request, run by the main thread with the GIL held: park if the
   sampler has still not armed again since the request was posted. */
static int
park(void *arg)
{
    uint64_t turn = (uint64_t)(uintptr_t)arg;
    pthread_mutex_lock(&H.mutex);
    H.posted = 0;
    if (H.phase != LH_HANDOFF_REQUESTED || H.turn != turn || H.shut_down) {
        H.stats.stale++; /* the sampler got the GIL anyway */
        pthread_mutex_unlock(&H.mutex);
        return 0;
    }
    H.phase = LH_HANDOFF_PARKED;
    H.stats.parks++;
    struct timespec until = deadline_after(H.park_limit);
    pthread_mutex_unlock(&H.mutex);

    /* The mutex is taken again after the GIL is given up, and released
       before it is taken back: the sampler takes the mutex with the GIL
       held (lh_handoff_arm). */
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&H.mutex);
    int timed_out = 0;
    while (H.phase == LH_HANDOFF_PARKED && !timed_out) {
        timed_out = pthread_cond_timedwait(&H.wake_parked, &H.mutex, &until)
                    == ETIMEDOUT;
    }
    if (H.phase == LH_HANDOFF_PARKED) {
        H.phase = LH_HANDOFF_IDLE;
        H.stats.park_timeouts++;
    }
    pthread_mutex_unlock(&H.mutex);
    Py_END_ALLOW_THREADS
    return 0;
}

/* Post a request for the current turn; mutex held (released around the
   post: Py_AddPendingCall takes a lock of CPython's). */
static void
post_request(void)
{
    if (H.posted || H.phase != LH_HANDOFF_IDLE) {
        return; /* one request at a time: the queue is short */
    }
    uint64_t turn = ++H.turn;
    H.phase = LH_HANDOFF_REQUESTED;
    H.posted = 1;
    pthread_mutex_unlock(&H.mutex);
    /* Needs no GIL and no thread state; it goes to the main thread.  From
       3.13 it sets the main thread's own flag of the eval loop.  Before,
       the flag is computed for the thread that posts (may *it* run
       pending calls?), and the main thread finds the call when it next
       takes the GIL, which CPython computes the flag again for: a main
       thread that starves the sampler does so all the time, giving the
       GIL up and taking it back (a main thread that computes without
       giving it up gets a drop request, and starves nobody).  Setting the
       flag ourselves would not be better: while the main thread is
       blocked in C, every other thread of its interpreter would take the
       slow way at each check of its eval loop. */
    int failed = Py_AddPendingCall(park, (void *)(uintptr_t)turn) < 0;
    pthread_mutex_lock(&H.mutex);
    if (failed) {
        /* The queue is full: the sampler waits for the GIL as before. */
        H.posted = 0;
        if (H.phase == LH_HANDOFF_REQUESTED && H.turn == turn) {
            H.phase = LH_HANDOFF_IDLE;
        }
        return;
    }
    H.stats.requests++;
}

static void *
watch(void *Py_UNUSED(unused))
{
    pthread_mutex_lock(&H.mutex);
    while (!H.shut_down && !H.stopping) {
        if (!H.armed) {
            pthread_cond_wait(&H.wake_watcher, &H.mutex);
        }
        else if (!passed(&H.due)) {
            pthread_cond_timedwait(&H.wake_watcher, &H.mutex, &H.due);
        }
        else {
            H.armed = 0;
            post_request();
        }
    }
    pthread_mutex_unlock(&H.mutex);
    return NULL;
}

/* Condition variables on CLOCK_MONOTONIC, made once per process (a
   forked child makes its own: after_fork_in_child). */
static int
init_conds(void)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    int failed = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0
                 || pthread_cond_init(&H.wake_watcher, &attr) != 0;
    if (!failed && pthread_cond_init(&H.wake_parked, &attr) != 0) {
        pthread_cond_destroy(&H.wake_watcher);
        failed = 1;
    }
    pthread_condattr_destroy(&attr);
    H.conds_ready = !failed;
    return failed ? -1 : 0;
}

static void
after_fork_prepare(void)
{
    pthread_mutex_lock(&H.mutex);
}

static void
after_fork_parent(void)
{
    pthread_mutex_unlock(&H.mutex);
}

/* The child has no watching thread and nobody parked: it starts afresh
   when its own sampler arms.  Its condition variables may have had
   waiters in the parent, so they are made again. */
static void
after_fork_in_child(void)
{
    pthread_mutex_init(&H.mutex, NULL);
    H.conds_ready = 0;
    H.watcher_pid = 0;
    H.stopping = 0;
    H.armed = 0;
    H.phase = LH_HANDOFF_IDLE;
    H.posted = 0;
}

static void
register_fork_handlers(void)
{
    pthread_atfork(after_fork_prepare, after_fork_parent,
                   after_fork_in_child);
}

/* Start the watching thread of this process if it has none; mutex held.
   It blocks every signal: CPython expects them on its own threads. */
static int
start_watcher(void)
{
    static pthread_once_t fork_handlers = PTHREAD_ONCE_INIT;
    if (H.watcher_pid == getpid()) {
        return 0;
    }
    if (!H.conds_ready && init_conds() < 0) {
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    H.stopping = 0;
    int err = pthread_create(&H.watcher, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        errno = err;
        return -1;
    }
    H.watcher_pid = getpid();
    pthread_setname_np(H.watcher, "pyleakhunt-gil");
    pthread_once(&fork_handlers, register_fork_handlers);
    return 0;
}

/* The sampler had its turn: a request not yet run is stale, and a parked
   main thread goes on.  Mutex held. */
static void
release_main(void)
{
    if (H.phase != LH_HANDOFF_IDLE) {
        H.phase = LH_HANDOFF_IDLE;
        if (H.conds_ready) {
            pthread_cond_broadcast(&H.wake_parked);
        }
    }
}

int
lh_handoff_arm(double delay, double park_limit)
{
    pthread_mutex_lock(&H.mutex);
    release_main();
    int result = 0;
    if (!H.shut_down) {
        result = start_watcher();
        if (result == 0) {
            H.due = deadline_after(delay);
            H.park_limit = park_limit;
            H.armed = 1;
            pthread_cond_signal(&H.wake_watcher);
        }
    }
    pthread_mutex_unlock(&H.mutex);
    return result;
}

void
lh_handoff_stop(void)
{
    pthread_mutex_lock(&H.mutex);
    release_main();
    H.armed = 0;
    int joins = H.watcher_pid == getpid() && !H.stopping;
    pthread_t watcher = H.watcher;
    if (joins) {
        H.stopping = 1;
        pthread_cond_signal(&H.wake_watcher);
    }
    pthread_mutex_unlock(&H.mutex);
    if (joins) {
        pthread_join(watcher, NULL);
        pthread_mutex_lock(&H.mutex);
        H.watcher_pid = 0;
        H.stopping = 0;
        pthread_mutex_unlock(&H.mutex);
    }
}

void
lh_handoff_shutdown(void)
{
    pthread_mutex_lock(&H.mutex);
    H.shut_down = 1;
    pthread_mutex_unlock(&H.mutex);
    lh_handoff_stop();
}

lh_handoff_stats
lh_handoff_get_stats(void)
{
    pthread_mutex_lock(&H.mutex);
    lh_handoff_stats stats = H.stats;
    pthread_mutex_unlock(&H.mutex);
    return stats;
}
