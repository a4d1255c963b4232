/* C-level test of the kernel's helper-thread pool (src_cython/c/npydir_pool.c), without
   Python: every chunk of a task runs exactly once, npydir_pool_finish() returns only after
   the helpers have left the task, concurrent callers each get their work done, a forked child
   (forked while another thread owns the pool) starts a pool of its own, and idle helpers
   sleep.  Built and run by tests/kernel/test_kernel_c.py (also under ThreadSanitizer where the
   compiler has it).  Prints "ok" and exits 0, or names the failed check and exits 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "npydir_pool.h"

#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) {                                               \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);   \
            fprintf(stderr, __VA_ARGS__);                            \
            fprintf(stderr, "\n");                                   \
            exit(1);                                                 \
        }                                                            \
    } while (0)

enum { MAX_CHUNKS = 4096 };

typedef struct {
    long nchunks;
    long next;                      /* atomic: next chunk to claim */
    long inside;                    /* atomic: threads inside the task */
    unsigned char done[MAX_CHUNKS]; /* each chunk's visits (atomic increments) */
} task_t;

static void work(void* arg) {
    task_t* t = arg;
    long c;
    __atomic_fetch_add(&t->inside, 1, __ATOMIC_SEQ_CST);
    while ((c = __atomic_fetch_add(&t->next, 1, __ATOMIC_SEQ_CST)) < t->nchunks) {
        volatile double x = 0;  /* a little work, so helpers get a chance to join */
        for (int k = 0; k < 200; k++)
            x += k * 0.5;
        __atomic_fetch_add(&t->done[c], 1, __ATOMIC_SEQ_CST);
    }
    __atomic_fetch_sub(&t->inside, 1, __ATOMIC_SEQ_CST);
}

/* One call as the kernel makes it; returns the helper slots the pool opened. */
static int one_call(task_t* t, long nchunks, int want) {
    int opened;
    memset(t, 0, sizeof *t);
    t->nchunks = nchunks;
    opened = npydir_pool_start(want, work, t);
    work(t);
    if (opened > 0)
        npydir_pool_finish();
    CHECK(__atomic_load_n(&t->inside, __ATOMIC_SEQ_CST) == 0,
          "a helper was still inside the task after npydir_pool_finish()");
    for (long c = 0; c < nchunks; c++)
        CHECK(t->done[c] == 1, "chunk %ld ran %d times", c, t->done[c]);
    return opened;
}

static void test_start_and_finish(void) {
    static task_t t;
    int opened = 0;
    for (int call = 0; call < 500; call++)
        opened |= one_call(&t, 1 + call % MAX_CHUNKS * 7 % MAX_CHUNKS, 1 + call % 4);
    CHECK(opened > 0, "the pool never opened a slot");
    CHECK(npydir_pool_helpers() >= 1 && npydir_pool_helpers() <= NPYDIR_MAX_HELPERS,
          "%ld helpers", npydir_pool_helpers());
    CHECK(npydir_pool_start(0, work, &t) == 0, "want=0 must not open slots");
}

static void* caller_thread(void* arg) {
    static __thread task_t t;
    (void)arg;
    for (int call = 0; call < 200; call++)
        one_call(&t, 64 + call, 3);
    return NULL;
}

static void test_many_callers(void) {
    pthread_t th[8];
    long before = npydir_pool_helpers();
    for (int k = 0; k < 8; k++)
        CHECK(pthread_create(&th[k], NULL, caller_thread, NULL) == 0, "pthread_create");
    for (int k = 0; k < 8; k++)
        pthread_join(th[k], NULL);
    /* one call owns the pool at a time, so 8 callers asking for 3 each never need more */
    CHECK(npydir_pool_helpers() <= (before > 3 ? before : 3),
          "%ld helpers after 8 concurrent callers (had %ld)", npydir_pool_helpers(), before);
}

static int owner_inside;   /* atomic */
static int owner_release;  /* atomic */

static void hold(void* arg) {
    (void)arg;
    __atomic_store_n(&owner_inside, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&owner_release, __ATOMIC_SEQ_CST))
        usleep(100);
}

static void* owner_thread(void* arg) {
    (void)arg;
    int opened = npydir_pool_start(1, hold, NULL);
    hold(NULL);
    if (opened > 0)
        npydir_pool_finish();
    return NULL;
}

static void test_fork_while_owned(void) {
    pthread_t th;
    pid_t pid;
    int status;
    __atomic_store_n(&owner_inside, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&owner_release, 0, __ATOMIC_SEQ_CST);
    CHECK(pthread_create(&th, NULL, owner_thread, NULL) == 0, "pthread_create");
    while (!__atomic_load_n(&owner_inside, __ATOMIC_SEQ_CST))
        usleep(100);
    pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        /* the owner thread and the helpers do not exist here: the pool must start afresh */
        static task_t t;
        int opened = 0;
        alarm(20);  /* a deadlock kills the child instead of hanging the test */
        for (int call = 0; call < 50; call++)
            opened |= one_call(&t, 256, 2);
        _exit(opened > 0 ? 0 : 3);
    }
    __atomic_store_n(&owner_release, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "forked child failed: status %d (3: its pool opened no slot; signal: deadlock)", status);
}

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void test_idle_helpers_sleep(void) {
    static task_t t;
    double before;
    npydir_pool_set_spin(1000000);  /* 1 ms of spinning after a call, then sleep */
    one_call(&t, 512, 2);
    usleep(50000);
    before = cpu_seconds();
    usleep(300000);
    CHECK(cpu_seconds() - before < 0.05,
          "idle helpers used %.3f s of CPU in 0.3 s", cpu_seconds() - before);
    npydir_pool_set_spin(100000);
    one_call(&t, 512, 2);  /* and they wake up for the next call */
}

int main(void) {
    test_start_and_finish();
    test_many_callers();
    test_fork_while_owned();
    test_idle_helpers_sleep();
    printf("ok\n");
    return 0;
}
