/* C-level test of the kernel's background runners (src_cython/c/npydir_runner.c), without
   Python: tasks without a lane run one at a time in submission order; a lane of limit k runs
   at most k of its tasks at once, reaches k, and starts them in order; two lanes do not block
   each other; npydir_runner_wait() returns only after fn finished; npydir_runner_cancel()
   withdraws a queued task and waits for a running one; the counters add up; a forked child
   sees the parent's queued and running tasks as done (NPYDIR_TASK_FORKED) and starts runners
   of its own; many threads submitting, cancelling and waiting at once.  Built and run by
   tests/kernel/test_kernel_c.py (also under ThreadSanitizer where the compiler has it).
   Prints "ok" and exits 0, or names the failed check and exits non-zero.  Nothing waits
   forever: every polling loop has a deadline, and an alarm per check catches a blocking call
   (npydir_runner_wait, npydir_runner_cancel) that never returns. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "npydir_runner.h"

/* What should take milliseconds gets this long (a busy 2-core VM, ThreadSanitizer). */
#define DEADLINE_MS 20000L
/* A blocking task gives up after this long (longer than any deadline of the test's own). */
#define BLOCK_MS 40000L
/* A check that has not finished after this long is stuck in a blocking call. */
#define ALARM_S 60

static int in_child;               /* a forked child leaves with _exit() */
static const char* current_check;  /* (atomic) the check running, for messages */

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "FAILED %s:%d [%s%s]: ", __FILE__, __LINE__,             \
                    __atomic_load_n(&current_check, __ATOMIC_SEQ_CST),               \
                    in_child ? ", forked child" : "");                               \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            if (in_child)                                                            \
                _exit(1);                                                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static void on_alarm(int sig) {
    const char* name = __atomic_load_n(&current_check, __ATOMIC_SEQ_CST);
    static const char head[] = "FAILED: timed out (a blocking call never returned) in check ";
    (void)sig;
    if (write(2, head, sizeof head - 1) < 0 || write(2, name, strlen(name)) < 0
        || write(2, "\n", 1) < 0)
        _exit(2);
    _exit(2);
}

static void begin(const char* name) {
    __atomic_store_n(&current_check, name, __ATOMIC_SEQ_CST);
    alarm(ALARM_S);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void sleep_us(long us) {
    struct timespec t = {us / 1000000L, (us % 1000000L) * 1000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static int load(const int* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static void store(int* p, int v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static int add(int* p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
static int state_of(npydir_task_t* t) { return __atomic_load_n(&t->state, __ATOMIC_SEQ_CST); }

/* Until *p == v (1) or the deadline (0). */
static int poll_flag(const int* p, int v, long ms) {
    long end = now_ms() + ms;
    while (load(p) != v) {
        if (now_ms() > end)
            return 0;
        sleep_us(200);
    }
    return 1;
}

/* Until t is DONE (1) or the deadline (0): npydir_runner_wait without the risk of hanging. */
static int poll_done(npydir_task_t* t, long ms) {
    long end = now_ms() + ms;
    while (state_of(t) != NPYDIR_TASK_DONE) {
        if (now_ms() > end)
            return 0;
        sleep_us(200);
    }
    return 1;
}

#define WAIT_DONE(t, what) \
    CHECK(poll_done((t), DEADLINE_MS), "%s not done after %ld s", (what), DEADLINE_MS / 1000)

/* A test task: npydir_task_t first, so that fn's argument is the job. */
typedef struct job {
    npydir_task_t t;
    int index;             /* set before submit, read by fn (plain: submit must publish it) */
    int value;             /* likewise: fn's result is derived from it */
    int sleep_us;          /* fn sleeps this long */
    int hold;              /* check 2: wait for the lane's first k tasks to be running */
    struct job* before;    /* a task submitted earlier to the same lane, or NULL */
    int before_done;       /* ... which must be DONE (1) or at least not QUEUED (0) */
    int start;             /* written by fn (plain: wait must publish it) */
    int finished;          /* written by fn as it returns (plain) */
    int ran;               /* (atomic) times fn ran */
    int inside;            /* (atomic) set as fn starts */
    int release;           /* (atomic) block_fn returns once set */
    int timed_out;         /* (atomic) block_fn gave up waiting for release */
} job_t;

static void job_init(job_t* j, int index, npydir_lane_t* lane) {
    memset(j, 0, sizeof *j);
    j->index = index;
    j->value = 1000 + index;
    j->t.lane = lane;
}

/* Shared by the checks' fns (reset by reset_stats). */
static int seq;            /* (atomic) start order */
static int inside_now;     /* (atomic) fns running now */
static int inside_max;     /* (atomic) ... at most */
static int arrived;        /* (atomic) held tasks that reached their hold */
static int hold_k;         /* (atomic) how many held tasks to wait for */
static int hold_timeouts;  /* (atomic) */
static int order_errors;   /* (atomic) a task started before an earlier one of its lane */
static long expect_count;  /* tasks the runners must have run (main thread only) */

static void reset_stats(void) {
    store(&seq, 0);
    store(&inside_now, 0);
    store(&inside_max, 0);
    store(&arrived, 0);
    store(&hold_k, 0);
    store(&hold_timeouts, 0);
    store(&order_errors, 0);
}

static void note_max(int* max, int cur) {
    int m = load(max);
    while (cur > m && !__atomic_compare_exchange_n(max, &m, cur, 0, __ATOMIC_SEQ_CST,
                                                   __ATOMIC_SEQ_CST)) {
    }
}

static void check_before(job_t* j) {
    int s;
    if (j->before == NULL)
        return;
    s = state_of(&j->before->t);
    if (j->before_done ? s != NPYDIR_TASK_DONE : s == NPYDIR_TASK_QUEUED)
        add(&order_errors, 1);
}

/* Records start order and concurrency, optionally holds, sleeps, sets result. */
static void order_fn(npydir_task_t* t) {
    job_t* j = (job_t*)t;
    add(&j->ran, 1);
    store(&j->inside, 1);
    note_max(&inside_max, add(&inside_now, 1));
    j->start = add(&seq, 1) - 1;
    check_before(j);
    if (j->hold) {
        long end = now_ms() + DEADLINE_MS / 2;  /* before the main thread's deadline */
        add(&arrived, 1);
        while (load(&arrived) < load(&hold_k)) {
            if (now_ms() > end) {
                add(&hold_timeouts, 1);
                break;
            }
            sleep_us(200);
        }
    }
    if (j->sleep_us > 0)
        sleep_us(j->sleep_us);
    add(&inside_now, -1);
    j->finished = 1;
    t->result = j->value;
}

/* Runs until released (or BLOCK_MS passes). */
static void block_fn(npydir_task_t* t) {
    job_t* j = (job_t*)t;
    long end = now_ms() + BLOCK_MS;
    add(&j->ran, 1);
    j->start = add(&seq, 1) - 1;
    store(&j->inside, 1);
    while (!load(&j->release)) {
        if (now_ms() > end) {
            store(&j->timed_out, 1);
            break;
        }
        sleep_us(200);
    }
    j->finished = 1;
    t->result = j->value;
}

static void submit(job_t* j, void (*fn)(npydir_task_t*)) {
    j->t.fn = fn;
    CHECK(npydir_runner_submit(&j->t) == 0, "npydir_runner_submit failed (task %d)", j->index);
}

static void check_idle(void) {
    CHECK(npydir_runner_inflight() == 0, "inflight %ld with every task done",
          npydir_runner_inflight());
    CHECK(npydir_runner_count() == expect_count, "count %ld, expected %ld",
          npydir_runner_count(), expect_count);
}

/* ---- check 4 (first part): a task never submitted -------------------------------- */
static void test_new_task(void) {
    job_t j;
    long t0;
    begin("wait/cancel on a NEW task");
    CHECK(npydir_runner_threads() == 0 && npydir_runner_count() == 0
              && npydir_runner_inflight() == 0,
          "before any submit: %d threads, count %ld, inflight %ld", npydir_runner_threads(),
          npydir_runner_count(), npydir_runner_inflight());
    job_init(&j, 0, NULL);
    j.t.fn = order_fn;
    t0 = now_ms();
    npydir_runner_wait(&j.t);
    CHECK(now_ms() - t0 < 2000, "wait on a NEW task took %ld ms", now_ms() - t0);
    CHECK(npydir_runner_cancel(&j.t) == 0, "cancel of a NEW task did not return 0");
    CHECK(state_of(&j.t) == NPYDIR_TASK_NEW && load(&j.ran) == 0,
          "a NEW task changed state (%d) or ran (%d)", state_of(&j.t), load(&j.ran));
    CHECK(npydir_runner_threads() == 0, "wait/cancel started %d runners",
          npydir_runner_threads());
}

/* ---- check 3: two lanes do not block each other ---------------------------------- */
static void test_two_lanes(void) {
    static job_t a1, a2, b1;
    npydir_lane_t lane_a = {1, 0}, lane_b = {2, 0};
    begin("two lanes do not block each other");
    reset_stats();
    job_init(&a1, 0, &lane_a);
    job_init(&a2, 1, &lane_a);
    job_init(&b1, 2, &lane_b);
    submit(&a1, block_fn);
    CHECK(npydir_runner_threads() == 1, "%d runners for a lane of limit 1",
          npydir_runner_threads());
    CHECK(poll_flag(&a1.inside, 1, DEADLINE_MS), "lane A's blocking task never started");
    /* a2 waits behind a1 in lane A; b1 is queued behind a2 but its lane has room */
    submit(&a2, order_fn);
    CHECK(npydir_runner_inflight() == 2, "inflight %ld, expected 2", npydir_runner_inflight());
    submit(&b1, order_fn);
    CHECK(npydir_runner_threads() == 2, "a lane of limit 2 grew the runners to %d, not 2",
          npydir_runner_threads());
    CHECK(poll_done(&b1.t, DEADLINE_MS),
          "lane B's task did not run while lane A's task blocked (state %d)", state_of(&b1.t));
    CHECK(b1.finished == 1 && b1.t.result == b1.value, "lane B's task: finished %d, result %d",
          b1.finished, b1.t.result);
    CHECK(state_of(&a2.t) == NPYDIR_TASK_QUEUED && load(&a2.ran) == 0,
          "lane A (limit 1) started its second task while the first ran (state %d)",
          state_of(&a2.t));
    CHECK(npydir_runner_inflight() == 2, "inflight %ld, expected 2", npydir_runner_inflight());
    store(&a1.release, 1);
    WAIT_DONE(&a1.t, "lane A's blocking task");
    WAIT_DONE(&a2.t, "lane A's second task");
    CHECK(!load(&a1.timed_out), "the blocking task was never released");
    CHECK(a1.t.result == a1.value && a2.t.result == a2.value, "results %d %d", a1.t.result,
          a2.t.result);
    CHECK(a2.start > a1.start, "lane A ran its tasks out of order");
    expect_count += 3;
    check_idle();
}

/* ---- runners grow to the largest limit asked for, and never beyond the maximum ---- */
static void grow_to(int limit, int expect) {
    static job_t g;
    npydir_lane_t lane = {limit, 0};
    job_init(&g, 0, &lane);
    submit(&g, order_fn);
    WAIT_DONE(&g.t, "the task growing the runners");
    npydir_runner_wait(&g.t);
    CHECK(g.t.result == g.value, "result %d", g.t.result);
    CHECK(npydir_runner_threads() == expect, "a lane of limit %d: %d runners, expected %d",
          limit, npydir_runner_threads(), expect);
    expect_count += 1;
    check_idle();
}

/* ---- check 2: a lane of limit k ---------------------------------------------------- */
static void test_lane_limit(int k) {
    enum { N = 16 };
    static job_t jobs[N];
    npydir_lane_t lane = {k, 0};
    int i, threads = npydir_runner_threads();
    begin("a lane runs at most k tasks at once, reaches k, in order");
    CHECK(threads > k, "%d runners: too few to see a lane of limit %d run too many", threads, k);
    reset_stats();
    store(&hold_k, k);
    for (i = 0; i < N; i++) {
        job_init(&jobs[i], i, &lane);
        /* the first k wait until all k run, then stay a little longer, so that a (k+1)th
           task started too early would overlap them */
        jobs[i].hold = i < k;
        jobs[i].sleep_us = i < k ? 30000 : 2000;
        jobs[i].before = i > 0 ? &jobs[i - 1] : NULL;
        jobs[i].before_done = 0;
    }
    for (i = 0; i < N; i++)
        submit(&jobs[i], order_fn);
    for (i = 0; i < N; i++)
        WAIT_DONE(&jobs[i].t, "a task of the lane");
    CHECK(load(&hold_timeouts) == 0,
          "a lane of limit %d never had %d tasks running at once (%d arrived)", k, k,
          load(&arrived));
    CHECK(load(&inside_max) == k, "a lane of limit %d ran %d tasks at once", k,
          load(&inside_max));
    CHECK(load(&order_errors) == 0,
          "%d tasks of the lane started while an earlier one was still queued",
          load(&order_errors));
    for (i = 0; i < N; i++)
        CHECK(load(&jobs[i].ran) == 1 && jobs[i].finished && jobs[i].t.result == jobs[i].value,
              "task %d: ran %d, result %d", i, load(&jobs[i].ran), jobs[i].t.result);
    CHECK(lane.running == 0, "the lane's running count is %d after all its tasks",
          lane.running);
    expect_count += N;
    check_idle();
}

/* ---- check 1: tasks without a lane ------------------------------------------------- */
static void test_default_lane(void) {
    enum { N = 24 };
    static job_t jobs[N];
    int i;
    begin("tasks without a lane run one at a time, in order");
    CHECK(npydir_runner_threads() >= 2, "%d runners: too few to see two tasks at once",
          npydir_runner_threads());
    reset_stats();
    for (i = 0; i < N; i++) {
        job_init(&jobs[i], i, NULL);
        jobs[i].sleep_us = 2000;
        jobs[i].before = i > 0 ? &jobs[i - 1] : NULL;
        jobs[i].before_done = 1;  /* limit 1: the previous one has finished */
    }
    for (i = 0; i < N; i++)
        submit(&jobs[i], order_fn);
    for (i = 0; i < N; i++)
        WAIT_DONE(&jobs[i].t, "a task without a lane");
    CHECK(load(&inside_max) == 1, "%d tasks without a lane ran at once", load(&inside_max));
    CHECK(load(&order_errors) == 0, "%d tasks without a lane started before the previous ended",
          load(&order_errors));
    for (i = 0; i < N; i++) {
        CHECK(jobs[i].start == i, "task %d started as number %d", i, jobs[i].start);
        CHECK(load(&jobs[i].ran) == 1 && jobs[i].t.result == jobs[i].value,
              "task %d: ran %d, result %d", i, load(&jobs[i].ran), jobs[i].t.result);
    }
    expect_count += N;
    check_idle();
}

/* ---- check 4: wait returns only after fn finished ---------------------------------- */
static job_t shared_wait_job;
static int waiters_ok;  /* (atomic) */

static void* waiter_thread(void* arg) {
    (void)arg;
    npydir_runner_wait(&shared_wait_job.t);
    if (shared_wait_job.finished == 1 && shared_wait_job.t.result == shared_wait_job.value)
        add(&waiters_ok, 1);
    return NULL;
}

static void test_wait(void) {
    static job_t j, first, second;
    npydir_lane_t lane = {1, 0};
    pthread_t th[3];
    int spin, k;
    begin("wait returns only after fn finished");
    reset_stats();
    /* waiter_ns 0: straight to sleeping on the condition; 2 s: spinning sees it finish */
    for (spin = 0; spin < 2; spin++) {
        npydir_runner_set_spin(-1, spin ? 2000000000L : 0);
        job_init(&j, spin, NULL);
        j.sleep_us = 80000;
        submit(&j, order_fn);
        npydir_runner_wait(&j.t);
        CHECK(state_of(&j.t) == NPYDIR_TASK_DONE, "wait returned with state %d", state_of(&j.t));
        CHECK(j.finished == 1, "wait returned before fn finished (waiter spin %s)",
              spin ? "2 s" : "0");
        CHECK(j.t.result == j.value, "result %d, expected %d", j.t.result, j.value);
        expect_count += 1;
    }
    /* waiting on a task still queued behind another of its lane */
    npydir_runner_set_spin(-1, 0);
    job_init(&first, 0, &lane);
    job_init(&second, 1, &lane);
    first.sleep_us = 50000;
    second.sleep_us = 20000;
    submit(&first, order_fn);
    submit(&second, order_fn);
    npydir_runner_wait(&second.t);
    CHECK(second.finished == 1 && second.t.result == second.value,
          "wait on a queued task returned before it ran (finished %d)", second.finished);
    CHECK(state_of(&first.t) == NPYDIR_TASK_DONE && first.finished == 1,
          "the lane's earlier task is not done");
    expect_count += 2;
    /* three threads waiting on one task at once */
    store(&waiters_ok, 0);
    job_init(&shared_wait_job, 7, NULL);
    shared_wait_job.sleep_us = 80000;
    submit(&shared_wait_job, order_fn);
    for (k = 0; k < 3; k++)
        CHECK(pthread_create(&th[k], NULL, waiter_thread, NULL) == 0, "pthread_create");
    for (k = 0; k < 3; k++)
        pthread_join(th[k], NULL);
    CHECK(load(&waiters_ok) == 3, "%d of 3 concurrent waiters saw the task finished",
          load(&waiters_ok));
    expect_count += 1;
    npydir_runner_set_spin(-1, 10000);
    check_idle();
}

/* ---- check 5: cancel --------------------------------------------------------------- */
static void test_cancel(void) {
    enum { NQ = 5 };
    static job_t blocker, q[NQ], r;
    npydir_lane_t lane = {1, 0};
    int i;
    long t0;
    begin("cancel of a queued task and of a running one");
    reset_stats();
    job_init(&blocker, 99, &lane);
    submit(&blocker, block_fn);
    CHECK(poll_flag(&blocker.inside, 1, DEADLINE_MS), "the blocking task never started");
    for (i = 0; i < NQ - 1; i++) {
        job_init(&q[i], i, &lane);
        submit(&q[i], order_fn);
    }
    CHECK(npydir_runner_inflight() == NQ, "inflight %ld, expected %d", npydir_runner_inflight(),
          NQ);
    for (i = 0; i < NQ - 1; i++)
        CHECK(state_of(&q[i].t) == NPYDIR_TASK_QUEUED, "task %d: state %d, not queued", i,
              state_of(&q[i].t));
    /* the queue's head, then its tail (a task submitted next must still be found) */
    CHECK(npydir_runner_cancel(&q[0].t) == 1, "cancel of the queue's head did not return 1");
    CHECK(npydir_runner_inflight() == NQ - 1, "inflight %ld after one cancel",
          npydir_runner_inflight());
    CHECK(npydir_runner_cancel(&q[3].t) == 1, "cancel of the queue's tail did not return 1");
    CHECK(npydir_runner_inflight() == NQ - 2, "inflight %ld after two cancels",
          npydir_runner_inflight());
    job_init(&q[4], 4, &lane);
    submit(&q[4], order_fn);
    /* one in the middle */
    CHECK(npydir_runner_cancel(&q[2].t) == 1, "cancel of a task mid-queue did not return 1");
    CHECK(npydir_runner_inflight() == NQ - 2, "inflight %ld after three cancels and a submit",
          npydir_runner_inflight());
    for (i = 0; i < NQ; i++) {
        if (i != 0 && i != 2 && i != 3)
            continue;
        CHECK(state_of(&q[i].t) == NPYDIR_TASK_DONE, "cancelled task %d: state %d", i,
              state_of(&q[i].t));
        CHECK(q[i].t.result == NPYDIR_TASK_CANCELLED, "cancelled task %d: result %d", i,
              q[i].t.result);
        t0 = now_ms();
        npydir_runner_wait(&q[i].t);
        CHECK(now_ms() - t0 < 2000, "wait on a cancelled task took %ld ms", now_ms() - t0);
        CHECK(npydir_runner_cancel(&q[i].t) == 0, "second cancel of task %d did not return 0",
              i);
    }
    store(&blocker.release, 1);
    WAIT_DONE(&blocker.t, "the blocking task");
    WAIT_DONE(&q[1].t, "the queued task left in place");
    WAIT_DONE(&q[4].t, "the task submitted after the tail was cancelled");
    CHECK(!load(&blocker.timed_out), "the blocking task was never released");
    CHECK(load(&q[1].ran) == 1 && q[1].t.result == q[1].value, "task 1: ran %d, result %d",
          load(&q[1].ran), q[1].t.result);
    CHECK(load(&q[4].ran) == 1 && q[4].t.result == q[4].value, "task 4: ran %d, result %d",
          load(&q[4].ran), q[4].t.result);
    CHECK(q[1].start < q[4].start, "tasks 1 and 4 ran out of order");
    /* every task of the lane has run now: a cancelled one would have run before task 4 */
    for (i = 0; i < NQ; i++)
        if (i == 0 || i == 2 || i == 3)
            CHECK(load(&q[i].ran) == 0 && q[i].t.result == NPYDIR_TASK_CANCELLED,
                  "cancelled task %d ran %d times (result %d)", i, load(&q[i].ran),
                  q[i].t.result);
    expect_count += 3;
    check_idle();

    /* a running task: cancel waits for it and returns 0 */
    job_init(&r, 50, NULL);
    r.sleep_us = 100000;
    submit(&r, order_fn);
    CHECK(poll_flag(&r.inside, 1, DEADLINE_MS), "the task to cancel never started");
    CHECK(npydir_runner_cancel(&r.t) == 0, "cancel of a running task did not return 0");
    CHECK(state_of(&r.t) == NPYDIR_TASK_DONE, "cancel returned with state %d", state_of(&r.t));
    CHECK(r.finished == 1 && r.t.result == r.value,
          "cancel of a running task returned before fn finished (finished %d, result %d)",
          r.finished, r.t.result);
    CHECK(npydir_runner_cancel(&r.t) == 0, "cancel of a done task did not return 0");
    expect_count += 1;
    check_idle();
}

/* ---- check 7: fork() with a task running and another queued ------------------------ */
static void test_fork(void) {
    static job_t running, queued, c1, c2;
    npydir_lane_t lane = {1, 0};
    pid_t pid;
    int status;
    long count_before = npydir_runner_count();
    begin("fork with a task running and another queued");
    reset_stats();
    job_init(&running, 1, &lane);
    job_init(&queued, 2, &lane);
    submit(&running, block_fn);
    CHECK(poll_flag(&running.inside, 1, DEADLINE_MS), "the running task never started");
    submit(&queued, order_fn);
    CHECK(state_of(&queued.t) == NPYDIR_TASK_QUEUED, "state %d, not queued",
          state_of(&queued.t));
    fflush(NULL);
    pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        long t0;
        in_child = 1;
        alarm(30);  /* a deadlock kills the child instead of hanging the test */
        CHECK(state_of(&running.t) == NPYDIR_TASK_DONE
                  && running.t.result == NPYDIR_TASK_FORKED,
              "the running task: state %d, result %d", state_of(&running.t),
              running.t.result);
        CHECK(state_of(&queued.t) == NPYDIR_TASK_DONE && queued.t.result == NPYDIR_TASK_FORKED,
              "the queued task: state %d, result %d", state_of(&queued.t), queued.t.result);
        t0 = now_ms();
        npydir_runner_wait(&running.t);
        npydir_runner_wait(&queued.t);
        CHECK(now_ms() - t0 < 2000, "wait on the parent's tasks took %ld ms", now_ms() - t0);
        CHECK(npydir_runner_cancel(&queued.t) == 0, "cancel of a forked-away task returned 1");
        CHECK(npydir_runner_threads() == 0 && npydir_runner_count() == 0
                  && npydir_runner_inflight() == 0,
              "after fork: %d runners, count %ld, inflight %ld", npydir_runner_threads(),
              npydir_runner_count(), npydir_runner_inflight());
        CHECK(load(&queued.ran) == 0, "the queued task ran in the child");
        /* the same lane (its running count must have been reset) and the default lane */
        job_init(&c1, 11, &lane);
        job_init(&c2, 12, NULL);
        submit(&c1, order_fn);
        submit(&c2, order_fn);
        WAIT_DONE(&c1.t, "the child's task in the parent's lane");
        WAIT_DONE(&c2.t, "the child's task without a lane");
        npydir_runner_wait(&c1.t);
        npydir_runner_wait(&c2.t);
        CHECK(c1.t.result == c1.value && c2.t.result == c2.value, "the child's results %d %d",
              c1.t.result, c2.t.result);
        CHECK(npydir_runner_threads() >= 1, "the child started no runner");
        CHECK(npydir_runner_count() == 2 && npydir_runner_inflight() == 0,
              "the child's count %ld, inflight %ld", npydir_runner_count(),
              npydir_runner_inflight());
        CHECK(load(&running.ran) == 1 && load(&queued.ran) == 0,
              "the parent's tasks ran in the child (%d, %d)", load(&running.ran),
              load(&queued.ran));
        _exit(0);
    }
    /* the parent's tasks are untouched: the running one is still running */
    CHECK(state_of(&running.t) == NPYDIR_TASK_RUNNING, "parent: the running task's state %d",
          state_of(&running.t));
    CHECK(state_of(&queued.t) == NPYDIR_TASK_QUEUED, "parent: the queued task's state %d",
          state_of(&queued.t));
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "forked child failed: status %d (exit 1: a check failed, 2: timed out)", status);
    store(&running.release, 1);
    WAIT_DONE(&running.t, "the parent's running task");
    WAIT_DONE(&queued.t, "the parent's queued task");
    npydir_runner_wait(&queued.t);
    CHECK(!load(&running.timed_out), "the running task was never released");
    CHECK(running.t.result == running.value && queued.t.result == queued.value,
          "parent: results %d %d, expected %d %d", running.t.result, queued.t.result,
          running.value, queued.value);
    CHECK(load(&queued.ran) == 1 && queued.finished == 1, "parent: the queued task ran %d",
          load(&queued.ran));
    CHECK(npydir_runner_count() == count_before + 2, "parent: count %ld, expected %ld",
          npydir_runner_count(), count_before + 2);
    expect_count += 2;
    check_idle();
}

/* ---- check 8: many threads submitting, cancelling and waiting at once --------------- */
enum { NTHREADS = 4, ROUNDS = 40, BATCH = 9 };

static npydir_lane_t shared_lane = {2, 0};
static int shared_inside, shared_max;    /* (atomic) */
static int default_inside, default_max;  /* (atomic) */
static int own_inside[NTHREADS], own_max[NTHREADS];  /* (atomic) */
static int many_errors;                  /* (atomic) */
static int many_ran;                     /* (atomic) tasks run, in all */

typedef struct {
    job_t job;
    int thread;
    int kind;  /* 0: no lane, 1: the shared lane, 2: the thread's own lane */
} many_job_t;

static void many_fn(npydir_task_t* t) {
    many_job_t* m = (many_job_t*)t;
    int* inside = m->kind == 0 ? &default_inside
                  : m->kind == 1 ? &shared_inside : &own_inside[m->thread];
    int* max = m->kind == 0 ? &default_max : m->kind == 1 ? &shared_max : &own_max[m->thread];
    volatile double x = 0;
    int k;
    add(&m->job.ran, 1);
    add(&many_ran, 1);
    note_max(max, add(inside, 1));
    check_before(&m->job);
    for (k = 0; k < 300 + (m->job.index % 7) * 200; k++)
        x += k * 0.5;
    if (m->job.index % 5 == 0)
        sleep_us(100);
    add(inside, -1);
    m->job.finished = 1;
    t->result = m->job.value * 3;
}

static void* many_thread(void* arg) {
    int me = (int)(long)arg;
    static many_job_t jobs[NTHREADS][BATCH];
    many_job_t* js = jobs[me];
    npydir_lane_t own = {1, 0};
    int round, i, cancelled[BATCH];
    for (round = 0; round < ROUNDS; round++) {
        many_job_t* last[3] = {NULL, NULL, NULL};
        for (i = 0; i < BATCH; i++) {
            int kind = (i + round) % 3;
            job_init(&js[i].job, i, kind == 0 ? NULL : kind == 1 ? &shared_lane : &own);
            js[i].job.value = me * 100000 + round * 100 + i;
            js[i].thread = me;
            js[i].kind = kind;
            /* what this thread submitted to the lane before: limit 1 means finished */
            js[i].job.before = last[kind] != NULL ? &last[kind]->job : NULL;
            js[i].job.before_done = kind != 1;
            last[kind] = &js[i];
            js[i].job.t.fn = many_fn;
            if (npydir_runner_submit(&js[i].job.t) != 0)
                add(&many_errors, 1000);
        }
        for (i = 0; i < BATCH; i++) {
            cancelled[i] = 0;
            if ((i * 7 + round + me) % 4 == 0) {
                cancelled[i] = npydir_runner_cancel(&js[i].job.t);
                /* 0: it ran, and has finished by now */
                if (!cancelled[i] && (load(&js[i].job.ran) != 1 || js[i].job.finished != 1))
                    add(&many_errors, 1);
            }
        }
        for (i = 0; i < BATCH; i++) {
            many_job_t* m = &js[i];
            if (i % 2 == 0)
                npydir_runner_wait(&m->job.t);
            else if (!poll_done(&m->job.t, DEADLINE_MS))
                add(&many_errors, 100);
            if (state_of(&m->job.t) != NPYDIR_TASK_DONE)
                add(&many_errors, 1);
            else if (cancelled[i]) {
                if (m->job.t.result != NPYDIR_TASK_CANCELLED)
                    add(&many_errors, 1);
            } else if (m->job.t.result != m->job.value * 3 || m->job.finished != 1) {
                add(&many_errors, 1);
            }
        }
        /* every task of the round is done: a cancelled one never ran, the others once */
        for (i = 0; i < BATCH; i++)
            if (load(&js[i].job.ran) != (cancelled[i] ? 0 : 1))
                add(&many_errors, 10);
    }
    return NULL;
}

static void test_many_threads(void) {
    pthread_t th[NTHREADS];
    long t, count_before = npydir_runner_count();
    int k, spin = 0, ran;
    begin("many threads submitting, cancelling and waiting");
    for (k = 0; k < NTHREADS; k++)
        CHECK(pthread_create(&th[k], NULL, many_thread, (void*)(long)k) == 0,
              "pthread_create");
    /* meanwhile, the spins change under the runners and waiters */
    for (t = 0; t < 20; t++) {
        spin = !spin;
        npydir_runner_set_spin(spin ? 0 : 200000, spin ? 50000 : 0);
        sleep_us(2000);
    }
    for (k = 0; k < NTHREADS; k++)
        pthread_join(th[k], NULL);
    npydir_runner_set_spin(100000, 10000);
    CHECK(load(&many_errors) == 0, "error score %d (1: wrong state/result/ran, 10: a task ran "
          "a wrong number of times, 100: not done in time, 1000: submit failed)",
          load(&many_errors));
    CHECK(load(&default_max) == 1, "%d tasks without a lane ran at once", load(&default_max));
    CHECK(load(&shared_max) >= 1 && load(&shared_max) <= 2,
          "the shared lane of limit 2 ran %d tasks at once", load(&shared_max));
    for (k = 0; k < NTHREADS; k++)
        CHECK(load(&own_max[k]) == 1, "thread %d's lane of limit 1 ran %d tasks at once", k,
              load(&own_max[k]));
    CHECK(shared_lane.running == 0, "the shared lane's running count is %d",
          shared_lane.running);
    ran = load(&many_ran);
    CHECK(npydir_runner_count() == count_before + ran, "count went up by %ld, %d tasks ran",
          npydir_runner_count() - count_before, ran);
    expect_count += ran;
    check_idle();
}

int main(void) {
    signal(SIGALRM, on_alarm);
    test_new_task();
    test_two_lanes();
    begin("runners grow to the largest lane limit");
    grow_to(4, 4);
    grow_to(1, 4);  /* a smaller limit does not shrink them */
    test_lane_limit(3);
    test_lane_limit(2);
    test_default_lane();
    test_wait();
    test_cancel();
    test_fork();
    test_many_threads();
    begin("runners stop at NPYDIR_MAX_RUNNERS");
    grow_to(1000, NPYDIR_MAX_RUNNERS);
    test_lane_limit(5);
    alarm(0);
    printf("ok\n");
    return 0;
}
