/* Running one worker function on several threads, for the host's C loops (the packer, its
 * CRC-32, the emulator's kernels). Included by their .c files; not part of any cffi cdef. */
#ifndef FF_CTHREADS_H
#define FF_CTHREADS_H

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FF_THREADS 1
#endif

#define FF_MAX_THREADS 16

/* Run work(arg) on `threads` threads (at most FF_MAX_THREADS), the caller's among them, and
 * return when all have. work must take its share from a queue in arg (an atomic counter),
 * so that what a thread that could not be started would have done is done by the others. */
static inline void ff_on_threads(void *(*work)(void *), void *arg, int threads)
{
#ifdef FF_THREADS
    pthread_t ids[FF_MAX_THREADS];
    int started[FF_MAX_THREADS] = {0};
    if (threads > FF_MAX_THREADS)
        threads = FF_MAX_THREADS;
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, work, arg) == 0;
    work(arg);
    for (int t = 1; t < threads; t++)
        if (started[t])
            pthread_join(ids[t], NULL);
#else
    (void)threads;
    work(arg);
#endif
}

#endif
