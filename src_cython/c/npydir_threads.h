/* What every thread the kernel starts (pool helpers, background runners) inherits. */
#ifndef NPYDIR_THREADS_H
#define NPYDIR_THREADS_H

#include <signal.h>

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
