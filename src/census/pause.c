/* pause.c - stop and resume a live process with ptrace (see pause.h). */
#define _GNU_SOURCE
#include "pause.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>

#include "maps.h"

/* Rounds of listing /proc/PID/task: a process that keeps starting
   threads faster than we can seize them is refused. */
#define MAX_ROUNDS 100

static int
is_seized(const cs_pause *pause, pid_t tid)
{
    for (size_t i = 0; i < pause->nthreads; i++) {
        if (pause->threads[i].tid == tid) {
            return 1;
        }
    }
    return 0;
}

static int
add_thread(cs_pause *pause, pid_t tid)
{
    if (cs_grow((void **)&pause->threads, &pause->cap, pause->nthreads + 1,
                sizeof(cs_paused_thread))
        < 0) {
        errno = ENOMEM;
        return -1;
    }
    pause->threads[pause->nthreads].tid = tid;
    pause->threads[pause->nthreads].signal = 0;
    pause->nthreads++;
    return 0;
}

/* Seizes and interrupts one thread.  A thread that exits meanwhile
   (ESRCH) is not an error. */
static int
seize(cs_pause *pause, pid_t tid)
{
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0) {
        return errno == ESRCH ? 0 : -1;
    }
    if (add_thread(pause, tid) < 0) {
        int saved = errno;
        ptrace(PTRACE_DETACH, tid, NULL, NULL);
        errno = saved;
        return -1;
    }
    if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0 && errno != ESRCH) {
        return -1;
    }
    return 0;
}

/* Seizes the threads of /proc/PID/task not seized yet; *added counts
   them. */
static int
seize_new_threads(cs_pause *pause, int *added)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pause->pid);
    DIR *dir = opendir(path);
    if (dir == NULL) {
        errno = errno == ENOENT ? ESRCH : errno;
        return -1;
    }
    int result = 0;
    *added = 0;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        pid_t tid = (pid_t)atoi(entry->d_name);
        if (tid <= 0 || is_seized(pause, tid)) {
            continue;
        }
        size_t before = pause->nthreads;
        if (seize(pause, tid) < 0) {
            result = -1;
            break;
        }
        *added += pause->nthreads > before;
    }
    int saved = errno;
    closedir(dir);
    errno = saved;
    return result;
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until thread `i` reports its stop.  A stop for a signal (not
   our interrupt: no PTRACE_EVENT_STOP) keeps that signal for detach. */
static int
wait_stopped(cs_pause *pause, size_t i, double deadline)
{
    cs_paused_thread *thread = &pause->threads[i];
    for (;;) {
        int status;
        pid_t got = waitpid(thread->tid, &status, __WALL | WNOHANG);
        if (got < 0) {
            return errno == ECHILD ? 0 : -1; /* the thread is gone */
        }
        if (got == thread->tid) {
            if (WIFSTOPPED(status) && (status >> 16) != PTRACE_EVENT_STOP) {
                thread->signal = WSTOPSIG(status);
            }
            return 0;
        }
        if (now() > deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct timespec pause_time = {0, 200000};
        nanosleep(&pause_time, NULL);
    }
}

static int
stop_all(cs_pause *pause, double deadline)
{
    int added = 1;
    for (int round = 0; added > 0; round++) {
        if (round == MAX_ROUNDS) {
            errno = EAGAIN;
            return -1;
        }
        if (seize_new_threads(pause, &added) < 0) {
            return -1;
        }
    }
    if (pause->nthreads == 0) {
        errno = ESRCH;
        return -1;
    }
    for (size_t i = 0; i < pause->nthreads; i++) {
        if (wait_stopped(pause, i, deadline) < 0) {
            return -1;
        }
    }
    return 0;
}

int
cs_pause_begin(cs_pause *pause, pid_t pid, double timeout)
{
    pause->pid = pid;
    pause->threads = NULL;
    pause->nthreads = 0;
    pause->cap = 0;
    if (stop_all(pause, now() + timeout) < 0) {
        int saved = errno;
        cs_pause_end(pause);
        errno = saved;
        return -1;
    }
    return 0;
}

/* A thread that never reported its stop (ETIMEDOUT: stuck in an
   uninterruptible sleep) cannot be detached yet; the kernel releases it
   when this process exits. */
void
cs_pause_end(cs_pause *pause)
{
    for (size_t i = 0; i < pause->nthreads; i++) {
        const cs_paused_thread *thread = &pause->threads[i];
        ptrace(PTRACE_DETACH, thread->tid, NULL,
               (void *)(intptr_t)thread->signal);
    }
    free(pause->threads);
    pause->threads = NULL;
    pause->nthreads = 0;
    pause->cap = 0;
}
