/* The kernel's background runners: see npydir_runner.h. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "npydir_runner.h"
#include "npydir_threads.h"

static npydir_lane_t npydir_default_lane = {1, 0};

static struct {
    pthread_mutex_t mu;      /* the queue, ``running``, lanes' counts, the counters below */
    pthread_cond_t work;     /* idle runners sleep here */
    pthread_cond_t done;     /* waiters sleep here */
    npydir_task_t* head;     /* queued tasks, oldest first (read unlocked while spinning) */
    npydir_task_t* tail;
    npydir_task_t* running[NPYDIR_MAX_RUNNERS];  /* each runner's task, or NULL */
    int started;             /* runner threads */
    int sleeping;            /* runners asleep on ``work`` */
    int waiters;             /* threads asleep on ``done`` */
    long runner_spin_ns;     /* (atomic) */
    long waiter_spin_ns;     /* (atomic) */
    long count;              /* tasks run (atomic) */
    long inflight;           /* tasks queued or running (atomic) */
} npydir_runner = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                   PTHREAD_COND_INITIALIZER, NULL, NULL, {NULL}, 0, 0, 0,
                   100000, 10000, 0, 0};

static pthread_once_t npydir_runner_once = PTHREAD_ONCE_INIT;

static npydir_lane_t* npydir_lane_of(const npydir_task_t* t) {
    return t->lane != NULL ? t->lane : &npydir_default_lane;
}

/* fork(): hold the lock across it, so the child sees a whole queue, not half an update. */
static void npydir_runner_prefork(void) { pthread_mutex_lock(&npydir_runner.mu); }
static void npydir_runner_parent(void) { pthread_mutex_unlock(&npydir_runner.mu); }

static void npydir_runner_forget(npydir_task_t* t) {
    npydir_lane_of(t)->running = 0;
    t->result = NPYDIR_TASK_FORKED;
    __atomic_store_n(&t->state, NPYDIR_TASK_DONE, __ATOMIC_RELEASE);
}

static void npydir_runner_child(void) {
    /* Only the forking thread survives: no runner, and no task of the parent's runs here.
       Mark them done so that the child's copies of their owners never wait. */
    npydir_task_t* t = npydir_runner.head;
    int k;
    while (t != NULL) {
        npydir_task_t* next = t->next;
        t->next = NULL;
        npydir_runner_forget(t);
        t = next;
    }
    for (k = 0; k < NPYDIR_MAX_RUNNERS; k++) {
        if (npydir_runner.running[k] != NULL)
            npydir_runner_forget(npydir_runner.running[k]);
        npydir_runner.running[k] = NULL;
    }
    npydir_default_lane.running = 0;
    npydir_runner.head = npydir_runner.tail = NULL;
    npydir_runner.started = 0;
    npydir_runner.sleeping = 0;
    npydir_runner.waiters = 0;
    npydir_runner.count = 0;
    npydir_runner.inflight = 0;
    pthread_mutex_init(&npydir_runner.mu, NULL);
    pthread_cond_init(&npydir_runner.work, NULL);
    pthread_cond_init(&npydir_runner.done, NULL);
}

static void npydir_runner_init_once(void) {
    pthread_atfork(npydir_runner_prefork, npydir_runner_parent, npydir_runner_child);
}

/* Under mu: unlink and return the oldest queued task whose lane has room, or NULL. */
static npydir_task_t* npydir_runner_pop_eligible(void) {
    npydir_task_t *t, *prev = NULL;
    for (t = npydir_runner.head; t != NULL; prev = t, t = t->next) {
        npydir_lane_t* lane = npydir_lane_of(t);
        if (lane->running < lane->limit) {
            if (prev == NULL)
                __atomic_store_n(&npydir_runner.head, t->next, __ATOMIC_RELEASE);
            else
                prev->next = t->next;
            if (npydir_runner.tail == t)
                npydir_runner.tail = prev;
            t->next = NULL;
            lane->running++;
            return t;
        }
    }
    return NULL;
}

/* The next task, marked running; waits (spin, then sleep) while none may start. */
static npydir_task_t* npydir_runner_take(int index) {
    npydir_task_t* t;
    long deadline = npydir_now_ns()
                    + __atomic_load_n(&npydir_runner.runner_spin_ns, __ATOMIC_RELAXED);
    /* Back-to-back batches: the next submit usually comes within microseconds, and a
       wake-up from sleep costs more than that on a virtual machine. */
    while (__atomic_load_n(&npydir_runner.head, __ATOMIC_ACQUIRE) == NULL
           && npydir_now_ns() < deadline) {
        int k;
        for (k = 0; k < 64; k++)
            NPYDIR_PAUSE();
    }
    pthread_mutex_lock(&npydir_runner.mu);
    while ((t = npydir_runner_pop_eligible()) == NULL) {
        npydir_runner.sleeping++;
        pthread_cond_wait(&npydir_runner.work, &npydir_runner.mu);
        npydir_runner.sleeping--;
    }
    npydir_runner.running[index] = t;
    __atomic_store_n(&t->state, NPYDIR_TASK_RUNNING, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&npydir_runner.mu);
    return t;
}

static void* npydir_runner_main(void* arg) {
    int index = (int)(intptr_t)arg;
    for (;;) {
        npydir_task_t* t = npydir_runner_take(index);
        t->fn(t);
        pthread_mutex_lock(&npydir_runner.mu);
        npydir_runner.running[index] = NULL;
        npydir_lane_of(t)->running--;
        __atomic_fetch_add(&npydir_runner.count, 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&npydir_runner.inflight, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&t->state, NPYDIR_TASK_DONE, __ATOMIC_RELEASE);
        if (npydir_runner.waiters > 0)
            pthread_cond_broadcast(&npydir_runner.done);
        /* The lane has room again: a task of it may be waiting behind others. */
        if (npydir_runner.head != NULL && npydir_runner.sleeping > 0)
            pthread_cond_signal(&npydir_runner.work);
        pthread_mutex_unlock(&npydir_runner.mu);
    }
    return NULL;
}

/* Under mu: start runner threads up to ``want``.  0 if at least one runs, else -1. */
static int npydir_runner_grow_locked(int want) {
    sigset_t old;
    pthread_attr_t attr;
    pthread_t tid;
    if (want > NPYDIR_MAX_RUNNERS)
        want = NPYDIR_MAX_RUNNERS;
    if (npydir_runner.started >= want)
        return 0;
    if (pthread_attr_init(&attr))
        return npydir_runner.started > 0 ? 0 : -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    npydir_block_signals(&old);  /* runners inherit it */
    while (npydir_runner.started < want) {
        if (pthread_create(&tid, &attr, npydir_runner_main,
                           (void*)(intptr_t)npydir_runner.started))
            break;  /* no more threads (EAGAIN): work with those we have */
        npydir_runner.started++;
    }
    npydir_restore_signals(&old);
    pthread_attr_destroy(&attr);
    return npydir_runner.started > 0 ? 0 : -1;
}

int npydir_runner_submit(npydir_task_t* t) {
    pthread_once(&npydir_runner_once, npydir_runner_init_once);
    pthread_mutex_lock(&npydir_runner.mu);
    if (npydir_runner_grow_locked(npydir_lane_of(t)->limit)) {
        pthread_mutex_unlock(&npydir_runner.mu);
        return -1;
    }
    t->next = NULL;
    t->result = 0;
    __atomic_fetch_add(&npydir_runner.inflight, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&t->state, NPYDIR_TASK_QUEUED, __ATOMIC_RELEASE);
    if (npydir_runner.tail == NULL)
        __atomic_store_n(&npydir_runner.head, t, __ATOMIC_RELEASE);
    else
        npydir_runner.tail->next = t;
    npydir_runner.tail = t;
    if (npydir_runner.sleeping > 0)
        pthread_cond_signal(&npydir_runner.work);
    pthread_mutex_unlock(&npydir_runner.mu);
    return 0;
}

void npydir_runner_wait(npydir_task_t* t) {
    long deadline;
    int state = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE);
    if (state == NPYDIR_TASK_DONE || state == NPYDIR_TASK_NEW)
        return;
    /* A short spin first: a batch that is nearly done is back sooner than a wake-up. */
    deadline = npydir_now_ns()
               + __atomic_load_n(&npydir_runner.waiter_spin_ns, __ATOMIC_RELAXED);
    while (npydir_now_ns() < deadline) {
        int k;
        for (k = 0; k < 16; k++) {
            if (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == NPYDIR_TASK_DONE)
                return;
            NPYDIR_PAUSE();
        }
    }
    pthread_mutex_lock(&npydir_runner.mu);
    npydir_runner.waiters++;
    while (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != NPYDIR_TASK_DONE)
        pthread_cond_wait(&npydir_runner.done, &npydir_runner.mu);
    npydir_runner.waiters--;
    pthread_mutex_unlock(&npydir_runner.mu);
}

int npydir_runner_cancel(npydir_task_t* t) {
    npydir_task_t *u, *prev = NULL;
    if (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == NPYDIR_TASK_NEW)
        return 0;
    pthread_mutex_lock(&npydir_runner.mu);
    if (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == NPYDIR_TASK_QUEUED) {
        for (u = npydir_runner.head; u != NULL; prev = u, u = u->next) {
            if (u == t) {
                if (prev == NULL)  /* idle runners read head while they spin */
                    __atomic_store_n(&npydir_runner.head, t->next, __ATOMIC_RELEASE);
                else
                    prev->next = t->next;
                if (npydir_runner.tail == t)
                    npydir_runner.tail = prev;
                break;
            }
        }
        t->next = NULL;
        __atomic_fetch_sub(&npydir_runner.inflight, 1, __ATOMIC_RELAXED);
        t->result = NPYDIR_TASK_CANCELLED;
        __atomic_store_n(&t->state, NPYDIR_TASK_DONE, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&npydir_runner.mu);
        return 1;
    }
    pthread_mutex_unlock(&npydir_runner.mu);
    npydir_runner_wait(t);
    return 0;
}

void npydir_runner_set_spin(long runner_ns, long waiter_ns) {
    if (runner_ns >= 0)
        __atomic_store_n(&npydir_runner.runner_spin_ns, runner_ns, __ATOMIC_RELAXED);
    if (waiter_ns >= 0)
        __atomic_store_n(&npydir_runner.waiter_spin_ns, waiter_ns, __ATOMIC_RELAXED);
}

long npydir_runner_count(void) {
    return __atomic_load_n(&npydir_runner.count, __ATOMIC_RELAXED);
}

long npydir_runner_inflight(void) {
    return __atomic_load_n(&npydir_runner.inflight, __ATOMIC_RELAXED);
}

int npydir_runner_threads(void) {
    int n;
    pthread_mutex_lock(&npydir_runner.mu);
    n = npydir_runner.started;
    pthread_mutex_unlock(&npydir_runner.mu);
    return n;
}
