/* The kernel's persistent helper-thread pool.

   One process-wide pool of detached helper threads, created on first use and grown to the
   largest number ever asked for (at most NPYDIR_MAX_HELPERS).  One call at a time owns the
   pool: a call that finds it owned runs on its own thread, so concurrent calls never add up
   to more threads than were asked for.  Threads are plain pthreads rather than OpenMP because
   a torch DataLoader forks worker processes and GNU libgomp deadlocks in a forked child whose
   parent already ran a parallel region; a pthread_atfork handler resets the pool in the child.

   Use: n = npydir_pool_start(want, fn, arg); if n > 0, helpers call fn(arg) (at most n of
   them) while the caller does its own share, then the caller calls npydir_pool_finish(),
   which returns once every helper that joined has left fn.  fn must share the work through
   its argument (e.g. an atomic chunk counter), since any number of helpers up to n may join.
   n == 0: the caller runs alone and must not call npydir_pool_finish(). */
#ifndef NPYDIR_POOL_H
#define NPYDIR_POOL_H

#include "npydir_simd.h"

#define NPYDIR_MAX_HELPERS 63

typedef void (*npydir_task_fn)(void*);

NPYDIR_INTERNAL int npydir_pool_start(int want, npydir_task_fn fn, void* arg);
NPYDIR_INTERNAL void npydir_pool_finish(void);
/* How long (ns) an idle helper spins for the next call before it sleeps. */
NPYDIR_INTERNAL void npydir_pool_set_spin(long ns);
/* Helpers started so far. */
NPYDIR_INTERNAL long npydir_pool_helpers(void);

#endif
