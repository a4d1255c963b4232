/* What the kernel's threads (pool helpers, background runners) share: the signal mask they
   start with and the clock they spin by. */
#ifndef NPYDIR_THREADS_H
#define NPYDIR_THREADS_H

#include <signal.h>
#include <time.h>

/* Monotonic nanoseconds, for the spin deadlines of idle and waiting threads. */
static inline long npydir_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Block every signal in the calling thread, saving the old mask in *old, so that threads
   created until npydir_restore_signals() inherit the block: signals go to the interpreter's
   threads, never to a kernel thread.  The synchronous ones a fault raises stay unblocked:
   blocked, they would kill the process at once instead of reaching a handler (the SIGBUS
   guard, npydir_guard.h). */
static inline void npydir_block_signals(sigset_t* old) {
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

static inline void npydir_restore_signals(const sigset_t* old) {
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

#endif
