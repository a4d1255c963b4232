/* SIGBUS guard for copies out of file mappings.

   A file mapped with mmap() that another process truncates turns every access past its new
   end into SIGBUS, whose default action kills the interpreter.  The window kernel copies out
   of such mappings, so it runs each thread's share of a copy inside npydir_guarded_run():
   a SIGBUS raised by the kernel (not sent with kill()) while that thread is inside the guard
   jumps back out of the copy, and the call reports the fault instead of dying.

   - The handler is process-wide but the guard is per thread (a thread-local pointer to the
     active jump buffer), so a fault on any other thread, or outside a copy, goes on to the
     handler that was installed before ours (faulthandler, a debugger's, or the default
     action, which then kills the process as it would have without npydir).
   - npydir_guard_ensure() (re)installs the handler when it is not the current one, so a
     handler installed after ours (faulthandler.enable() late, say) is chained to instead of
     silently disabling the guard.
   - SA_NODEFER keeps SIGBUS unblocked while the handler runs, so siglongjmp() needs no saved
     signal mask: sigsetjmp(env, 0) is a few instructions, no system call.
   - Memory a guarded copy allocates for itself is registered with npydir_guard_own() and
     freed when a fault cuts the copy short.

   Plain numpy indexing of a mapping cannot be guarded this way: it runs numpy's own loops.
*/
#ifndef NPYDIR_GUARD_H
#define NPYDIR_GUARD_H

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sigjmp_buf env;
    volatile sig_atomic_t armed;
    void* volatile owned;       /* malloc'd scratch to free if a fault cuts the copy short */
} npydir_guard_t;

static __thread npydir_guard_t* npydir_guard_active;
static __thread int npydir_guard_chaining;   /* breaks a loop of handlers chaining back to us */
static struct sigaction npydir_guard_previous;
static pthread_mutex_t npydir_guard_mu = PTHREAD_MUTEX_INITIALIZER;

static void npydir_guard_handler(int sig, siginfo_t* info, void* ctx) {
    npydir_guard_t* g = npydir_guard_active;
    struct sigaction prev;
    /* si_code > 0: raised by the kernel for this thread's own access, not sent by kill(). */
    if (g != NULL && g->armed && info != NULL && info->si_code > 0) {
        g->armed = 0;
        siglongjmp(g->env, 1);
    }
    prev = npydir_guard_previous;
    if (npydir_guard_chaining || ((prev.sa_flags & SA_SIGINFO) ? prev.sa_sigaction == NULL
                                  : (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN))) {
        /* The default action, as without npydir: a fault re-executes the access and kills the
           process; a signal sent by kill() is raised again. */
        signal(sig, SIG_DFL);
        if (info == NULL || info->si_code <= 0)
            raise(sig);
        return;
    }
    npydir_guard_chaining = 1;
    if (prev.sa_flags & SA_SIGINFO)
        prev.sa_sigaction(sig, info, ctx);
    else
        prev.sa_handler(sig);
    npydir_guard_chaining = 0;
}

/* Make our handler the current SIGBUS handler, chaining to the one it replaces.
   Returns 0, or -1 if sigaction() failed (then copies run unguarded, as before). */
static int npydir_guard_ensure(void) {
    struct sigaction cur, ours;
    int rc = 0;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return -1;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == npydir_guard_handler)
        return 0;
    pthread_mutex_lock(&npydir_guard_mu);
    if (sigaction(SIGBUS, NULL, &cur) == 0 &&
            !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == npydir_guard_handler)) {
        memset(&ours, 0, sizeof ours);
        ours.sa_sigaction = npydir_guard_handler;
        ours.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&ours.sa_mask);
        npydir_guard_previous = cur;   /* before ours can run */
        rc = sigaction(SIGBUS, &ours, NULL);
    }
    pthread_mutex_unlock(&npydir_guard_mu);
    return rc;
}

/* Scratch memory of the running guarded copy: freed if a fault cuts it short.  NULL when the
   copy frees it itself. */
static void npydir_guard_own(void* p) {
    npydir_guard_t* g = npydir_guard_active;
    if (g != NULL)
        g->owned = p;
}

typedef void (*npydir_guarded_fn)(void*);

/* Run fn(arg) on this thread with the guard armed.  Returns 0, or 1 when a SIGBUS raised by
   an access of fn's cut it short. */
static int npydir_guarded_run(npydir_guarded_fn fn, void* arg) {
    npydir_guard_t g;
    npydir_guard_t* outer = npydir_guard_active;
    g.armed = 0;
    g.owned = NULL;
    npydir_guard_active = &g;   /* first touch of the thread-local outside the handler */
    if (sigsetjmp(g.env, 0) == 0) {
        g.armed = 1;
        fn(arg);
        g.armed = 0;
        npydir_guard_active = outer;
        return 0;
    }
    npydir_guard_active = outer;
    free(g.owned);
    return 1;
}

#endif
