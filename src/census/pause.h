/* pause.h - holding a live process still while its memory is copied.
 *
 * Why ptrace and not SIGSTOP: a SIGSTOP/SIGCONT pair is visible to the
 * target's parent (a shell reports the job stopped, a supervisor may act
 * on SIGCHLD) and runs any SIGCONT handler the target has.  A
 * PTRACE_SEIZE + PTRACE_INTERRUPT stop is seen by no one but us, and
 * PTRACE_DETACH lets every thread go on as it was.  Nothing is written
 * to the target: no register, no memory.
 *
 * Every thread must be stopped, not just the main one: any of them may
 * run Python code (or free memory) while we copy.  Threads started while
 * we seize the others are picked up by listing /proc/PID/task again until
 * no new one appears; a stopped thread cannot start another.
 *
 * A thread may stop for a signal that arrived meanwhile rather than for
 * our interrupt; that signal is handed back at detach, so the target
 * receives it as if we had never been there.
 */
#ifndef PYLEAKHUNT_CENSUS_PAUSE_H
#define PYLEAKHUNT_CENSUS_PAUSE_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t tid;
    int signal; /* to deliver at detach, or 0 */
} cs_paused_thread;

typedef struct {
    pid_t pid;
    cs_paused_thread *threads;
    size_t nthreads;
    size_t cap;
} cs_pause;

/* Stops every thread of process `pid`, waiting at most `timeout`
   seconds for them.  Returns 0, or -1 with errno set (ESRCH: no such
   process; EPERM: not permitted, or already traced; ETIMEDOUT: a thread
   did not stop in time) and nothing left stopped. */
int cs_pause_begin(cs_pause *pause, pid_t pid, double timeout);

/* Lets every stopped thread go.  Safe to call twice. */
void cs_pause_end(cs_pause *pause);

#endif
