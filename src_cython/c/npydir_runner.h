/* The kernel's background runners: process-wide threads that run queued copies.

   A loader that prefetches batches used to make them in Python threads, which need the GIL
   around every copy: each time the training loop let go of the GIL (a framework's profiler
   hook, every torch operation, a wait) a copier could take it, and the loop then waited for
   the copier's Python.  A copy queued here needs no Python at all: the caller prepares it
   (with the GIL), submits it, and later waits for it (without the GIL).  A runner runs each
   task with the kernel's helper pool (npydir_pool.h), exactly as a synchronous call would.

   Lanes: a task may belong to a lane, which runs at most ``limit`` of its tasks at once, in
   the order they were submitted (a loader uses one lane per iterator, its limit the copies
   it wants side by side).  Tasks without a lane run one at a time among themselves, in order.
   The runners grow to the largest limit ever asked for (at most NPYDIR_MAX_RUNNERS).

   Use: fill in t->fn (and t->lane), npydir_runner_submit(t); later npydir_runner_wait(t),
   which returns once t->state is NPYDIR_TASK_DONE, with t->result set by fn.  A task no
   longer wanted is withdrawn with npydir_runner_cancel(t): removed from the queue if it has
   not started, else waited for.  The caller must not free a task, or its lane, before that.

   fork(): the child has no runners; a pthread_atfork handler marks every task queued or
   running in the parent as done with NPYDIR_TASK_FORKED (the child's copies of them were
   never made), so nothing in the child waits for them forever. */
#ifndef NPYDIR_RUNNER_H
#define NPYDIR_RUNNER_H

#include "npydir_simd.h"

#define NPYDIR_MAX_RUNNERS 64

enum {
    NPYDIR_TASK_NEW = 0,
    NPYDIR_TASK_QUEUED = 1,
    NPYDIR_TASK_RUNNING = 2,
    NPYDIR_TASK_DONE = 3,
};

/* t->result of a task withdrawn before it ran, and of one a fork() left behind. */
#define NPYDIR_TASK_CANCELLED (-100)
#define NPYDIR_TASK_FORKED (-101)

typedef struct npydir_lane {
    int limit;      /* tasks of this lane running at once, at most (>= 1) */
    int running;    /* (the runners', under their lock) */
} npydir_lane_t;

typedef struct npydir_task {
    struct npydir_task* next;            /* queue link (the runners') */
    void (*fn)(struct npydir_task*);     /* runs on a runner thread; sets result */
    npydir_lane_t* lane;                 /* NULL: the default lane (limit 1) */
    int state;                           /* NPYDIR_TASK_* (atomic) */
    int result;                          /* fn's answer, valid once state is DONE */
} npydir_task_t;

/* Queue t (state NEW) behind every task submitted before it.  Returns 0, or -1 when no
   runner thread could be started (t stays NEW: run it yourself). */
NPYDIR_INTERNAL int npydir_runner_submit(npydir_task_t* t);
/* Until t is DONE (at once if it was never submitted).  Call without the GIL. */
NPYDIR_INTERNAL void npydir_runner_wait(npydir_task_t* t);
/* Withdraw t: 1 if it was still queued (it never runs; result NPYDIR_TASK_CANCELLED),
   0 once it has run (or was never submitted).  Call without the GIL. */
NPYDIR_INTERNAL int npydir_runner_cancel(npydir_task_t* t);
/* How long (ns) an idle runner spins for the next task, and a waiter for its task, before
   it sleeps; a negative value leaves that one as it is. */
NPYDIR_INTERNAL void npydir_runner_set_spin(long runner_ns, long waiter_ns);
/* Tasks run since the process started (or forked), and runner threads started. */
NPYDIR_INTERNAL long npydir_runner_count(void);
NPYDIR_INTERNAL int npydir_runner_threads(void);
/* Tasks queued or running now. */
NPYDIR_INTERNAL long npydir_runner_inflight(void);

#endif
