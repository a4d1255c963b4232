/* The kernel's persistent helper-thread pool: see npydir_pool.h. */
#define _GNU_SOURCE  /* sched_getcpu, CPU_* affinity macros */
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "npydir_pool.h"
#include "npydir_threads.h"

/* ---- persistent helper threads ------------------------------------------------------
   One process-wide pool of detached helper threads, created on first use and grown to the
   largest number ever asked for (at most NPYDIR_MAX_HELPERS).  One call at a time owns
   the pool (a try-lock): a call that finds it owned runs on its own thread, so concurrent
   calls never add up to more threads than were asked for.  The owner publishes a task and
   a number of open slots; helpers claim a slot, run the task (which claims chunks of
   windows from the caller's shared counter) and leave.  The caller starts on the task at
   once and, when no chunk is left, closes the slots and waits only for helpers that
   joined.  An idle helper spins for npydir_pool.spin_ns (so back-to-back calls do not pay
   a wake-up), then sleeps on a condition variable: no CPU is used when idle.
   fork(): the child has none of the parent's threads, so a pthread_atfork handler resets
   the pool there; the child's first threaded call starts new helpers. */
#include <sched.h>
#include <signal.h>
#include <time.h>



static struct {
    pthread_mutex_t mu;    /* thread creation and sleeping */
    pthread_cond_t cv;
    int nhelpers;          /* helpers started (atomic) */
    int busy;              /* 1 while a call owns the pool (atomic try-lock) */
    uint64_t state;        /* (helpers inside the task << 32) | open slots (atomic) */
    unsigned seq;          /* bumped by every publish (atomic) */
    int sleepers;          /* helpers blocked on cv (atomic) */
    npydir_task_fn fn;     /* the task: written by the owner before it opens slots */
    void* arg;
    long spin_ns;          /* how long an idle helper spins before it sleeps */
    int owner_cpu;         /* core the last caller started on (-1: unknown) */
    int wanted;            /* helpers the last call asked for (atomic) */
    int numbered;          /* helpers that took an index (atomic) */
} npydir_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                 0, 0, 0, 0, 0, NULL, NULL, 100000, -1, 0, 0};

static pthread_once_t npydir_pool_once = PTHREAD_ONCE_INIT;

static void npydir_pool_atfork_child(void) {
    /* Only the forking thread survives: forget the helpers (their stacks leak, a few
       pages) and any owner.  The mutex may have been held by a thread that is gone. */
    pthread_mutex_init(&npydir_pool.mu, NULL);
    pthread_cond_init(&npydir_pool.cv, NULL);
    npydir_pool.nhelpers = 0;
    npydir_pool.busy = 0;
    npydir_pool.state = 0;
    npydir_pool.sleepers = 0;
    npydir_pool.fn = NULL;
    npydir_pool.arg = NULL;
    npydir_pool.owner_cpu = -1;
    npydir_pool.wanted = 0;
    npydir_pool.numbered = 0;
}

static void npydir_pool_init_once(void) {
    pthread_atfork(NULL, NULL, npydir_pool_atfork_child);
}

/* Is this thread on the core the last caller ran on?  Unknown: no. */
static int npydir_on_owner_cpu(void) {
#if defined(__linux__)
    return sched_getcpu() == __atomic_load_n(&npydir_pool.owner_cpu, __ATOMIC_RELAXED);
#else
    return 0;
#endif
}

/* A helper that finds itself on the caller's core is useless there and keeps the caller
   off it.  The scheduler puts a woken helper there whenever no core is idle, and a core
   running only niced work is not idle: beside a nice-19 process, 2 threads ran no faster
   than one.  So the helper moves itself to another core it may run on (its affinity
   without the caller's core, then its affinity back: it stays where it landed).  Returns 0
   if it could not (one core only, or not Linux); the caller of this then yields instead. */
static int npydir_move_off_owner_cpu(void) {
#if defined(__linux__)
    cpu_set_t allowed, others;
    int cpu = __atomic_load_n(&npydir_pool.owner_cpu, __ATOMIC_RELAXED);
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof(allowed), &allowed))
        return 0;
    others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0 || sched_setaffinity(0, sizeof(others), &others))
        return 0;
    sched_setaffinity(0, sizeof(allowed), &allowed);
    return 1;
#else
    return 0;
#endif
}

/* Wait until seq differs from seen: spin until *deadline, then sleep.  On the caller's own
   core, move off it (or yield it every few hundred nanoseconds): a plain spin there kept
   the caller off its core until the spin ended (measured: +50 us per call).  On another
   core, never yield: that hands the core to whatever else is runnable there, niced work
   included. */
static unsigned npydir_pool_wait(unsigned seen, long* deadline) {
    unsigned s;
    int k;
    while (npydir_now_ns() < *deadline) {
        for (k = 0; k < 16; k++) {
            s = __atomic_load_n(&npydir_pool.seq, __ATOMIC_ACQUIRE);
            if (s != seen)
                return s;
            NPYDIR_PAUSE();
        }
        if (npydir_on_owner_cpu() && !npydir_move_off_owner_cpu())
            sched_yield();
    }
    pthread_mutex_lock(&npydir_pool.mu);
    /* seq_cst pairs with the owner's seq bump then sleepers read: one sees the other. */
    __atomic_fetch_add(&npydir_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    while ((s = __atomic_load_n(&npydir_pool.seq, __ATOMIC_SEQ_CST)) == seen)
        pthread_cond_wait(&npydir_pool.cv, &npydir_pool.mu);
    __atomic_fetch_sub(&npydir_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&npydir_pool.mu);
    return s;
}

static void* npydir_helper_main(void* p) {
    unsigned seen = (unsigned)(uintptr_t)p;
    int index = __atomic_fetch_add(&npydir_pool.numbered, 1, __ATOMIC_RELAXED);
    long deadline = 0;
    uint64_t st;
    for (;;) {
        seen = npydir_pool_wait(seen, &deadline);
        /* Calls are coming: the helpers the last call asked for stay awake for the next
           one, even if this one was over before we woke up (else a helper that wakes too
           late, on a busy machine, would sleep through every call).  Surplus helpers of
           a larger earlier call keep their old deadline and go back to sleep. */
        if (index < __atomic_load_n(&npydir_pool.wanted, __ATOMIC_RELAXED))
            deadline = npydir_now_ns() + __atomic_load_n(&npydir_pool.spin_ns,
                                                         __ATOMIC_RELAXED);
        if (npydir_on_owner_cpu())
            npydir_move_off_owner_cpu();
        /* Join: take a slot and count ourselves inside in one step, so the owner waits
           for exactly the helpers that run its task. */
        st = __atomic_load_n(&npydir_pool.state, __ATOMIC_SEQ_CST);
        while ((uint32_t)st > 0) {
            if (__atomic_compare_exchange_n(&npydir_pool.state, &st,
                                            st - 1 + ((uint64_t)1 << 32), 0,
                                            __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
                npydir_pool.fn(npydir_pool.arg);
                __atomic_fetch_sub(&npydir_pool.state, (uint64_t)1 << 32, __ATOMIC_SEQ_CST);
                /* Worked: spin a while for the next call. */
                deadline = npydir_now_ns() + __atomic_load_n(&npydir_pool.spin_ns,
                                                             __ATOMIC_RELAXED);
                break;
            }
        }
    }
    return NULL;
}

static void npydir_pool_grow(int want) {
    sigset_t old;
    pthread_attr_t attr;
    pthread_t tid;
    unsigned seen;
    pthread_mutex_lock(&npydir_pool.mu);
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        npydir_block_signals(&old);  /* helpers inherit it */
        while (npydir_pool.nhelpers < want) {
            seen = __atomic_load_n(&npydir_pool.seq, __ATOMIC_SEQ_CST);
            if (pthread_create(&tid, &attr, npydir_helper_main, (void*)(uintptr_t)seen))
                break;  /* no more threads (EAGAIN): work with those we have */
            __atomic_store_n(&npydir_pool.nhelpers, npydir_pool.nhelpers + 1,
                             __ATOMIC_RELEASE);
        }
        npydir_restore_signals(&old);
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&npydir_pool.mu);
}

/* Own the pool and open up to want helper slots for fn(arg).  Returns the slots opened;
   0 (the pool is owned by another call, or no thread could be started) means the caller
   runs alone and must not call npydir_pool_finish. */
int npydir_pool_start(int want, npydir_task_fn fn, void* arg) {
    int expected = 0, have, sleepers, k;
    if (want <= 0)
        return 0;
    if (want > NPYDIR_MAX_HELPERS)
        want = NPYDIR_MAX_HELPERS;
    if (!__atomic_compare_exchange_n(&npydir_pool.busy, &expected, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return 0;
    pthread_once(&npydir_pool_once, npydir_pool_init_once);
    if (__atomic_load_n(&npydir_pool.nhelpers, __ATOMIC_ACQUIRE) < want)
        npydir_pool_grow(want);
    have = __atomic_load_n(&npydir_pool.nhelpers, __ATOMIC_ACQUIRE);
    if (want > have)
        want = have;
    if (want == 0) {
        __atomic_store_n(&npydir_pool.busy, 0, __ATOMIC_RELEASE);
        return 0;
    }
    npydir_pool.fn = fn;
    npydir_pool.arg = arg;
#if defined(__linux__)
    __atomic_store_n(&npydir_pool.owner_cpu, sched_getcpu(), __ATOMIC_RELAXED);
#endif
    __atomic_store_n(&npydir_pool.wanted, want, __ATOMIC_RELAXED);
    __atomic_store_n(&npydir_pool.state, (uint64_t)want, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&npydir_pool.seq, 1, __ATOMIC_SEQ_CST);
    sleepers = __atomic_load_n(&npydir_pool.sleepers, __ATOMIC_SEQ_CST);
    if (sleepers > 0) {
        pthread_mutex_lock(&npydir_pool.mu);
        if (want >= sleepers)
            pthread_cond_broadcast(&npydir_pool.cv);
        else
            for (k = 0; k < want; k++)
                pthread_cond_signal(&npydir_pool.cv);
        pthread_mutex_unlock(&npydir_pool.mu);
    }
    return want;
}

/* After the caller's own share: close the slots, wait for the helpers that joined. */
void npydir_pool_finish(void) {
    uint64_t st = __atomic_load_n(&npydir_pool.state, __ATOMIC_SEQ_CST);
    long spins = 0;
    while (!__atomic_compare_exchange_n(&npydir_pool.state, &st, st & ~(uint64_t)0xffffffffu,
                                        0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    while (__atomic_load_n(&npydir_pool.state, __ATOMIC_SEQ_CST) >> 32) {
        /* A helper is finishing its last chunk.  It may share this core (then it runs
           only when we yield) or have been preempted: spin briefly, then yield. */
        if (++spins < 64)
            NPYDIR_PAUSE();
        else
            sched_yield();
    }
    __atomic_store_n(&npydir_pool.busy, 0, __ATOMIC_RELEASE);
}

void npydir_pool_set_spin(long ns) {
    __atomic_store_n(&npydir_pool.spin_ns, ns, __ATOMIC_RELAXED);
}
long npydir_pool_helpers(void) {
    return __atomic_load_n(&npydir_pool.nhelpers, __ATOMIC_ACQUIRE);
}
