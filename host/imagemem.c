/* Memory for DMA images: a few freed images' pages are kept and handed to the next pack.
 *
 * Why: the kernel clears every page of a new mapping on its first write. For a large image
 * that is a tenth to a quarter of the pack (scripts/image_memory_speed.py: 8192 x 1000 tiles,
 * 184 MB, 66.8 ms into new pages, 53.8 ms into kept ones), and a program that packs again and
 * again (a matrix per layer, per solver step) pays it on every call, since an image this big
 * is mapped and unmapped by malloc each time.
 *
 * A freed region is kept (at most KEEP of them) after madvise(MADV_FREE): the kernel may take
 * its pages back whenever it needs memory, and until it does, writing them again takes no
 * fault. A region whose pages were taken reads as zeros, which is as good, since the packer
 * writes every byte of an image. Without MADV_FREE, nothing is kept. The regions are mapped
 * whole, rounded up to 2 MiB, and offered transparent huge pages, as numpy does for its large
 * arrays.
 */
#include <stdint.h>

#include "imagemem.h"

#if defined(__linux__) || defined(__APPLE__) || defined(__FreeBSD__)
#include <pthread.h>
#include <sys/mman.h>

#define KEEP 2
#define ROUND ((int64_t)2 << 20)

typedef struct {
    void *p;
    int64_t capacity;
} region;

static region kept[KEEP];  /* kept[0..n_kept), oldest first */
static int n_kept;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* kept[i], taken out of the list (the lock held). */
static region take(int i)
{
    region r = kept[i];
    for (; i + 1 < n_kept; i++)
        kept[i] = kept[i + 1];
    n_kept--;
    return r;
}

void *ff_image_alloc(int64_t nbytes, int64_t *capacity) {
    if (nbytes <= 0)
        nbytes = 1;
    /* The smallest kept region that fits without wasting half of itself. */
    pthread_mutex_lock(&lock);
    int best = -1;
    for (int i = 0; i < n_kept; i++)
        if (kept[i].capacity >= nbytes && kept[i].capacity / 2 < nbytes &&
            (best < 0 || kept[i].capacity < kept[best].capacity))
            best = i;
    if (best >= 0) {
        region r = take(best);
        pthread_mutex_unlock(&lock);
        *capacity = r.capacity;
        return r.p;
    }
    pthread_mutex_unlock(&lock);
    if (nbytes > INT64_MAX - ROUND)
        return NULL;
    int64_t size = (nbytes + ROUND - 1) / ROUND * ROUND;
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, (size_t)size, MADV_HUGEPAGE); /* only advice: no matter if refused */
#endif
    *capacity = size;
    return p;
}

void ff_image_free(void *p, int64_t capacity) {
    if (!p)
        return;
#ifdef MADV_FREE
    if (madvise(p, (size_t)capacity, MADV_FREE) == 0) {
        region out = {NULL, 0};
        pthread_mutex_lock(&lock);
        if (n_kept == KEEP) /* the oldest makes room */
            out = take(0);
        kept[n_kept++] = (region){p, capacity};
        pthread_mutex_unlock(&lock);
        if (out.p)
            munmap(out.p, (size_t)out.capacity);
        return;
    }
#endif
    munmap(p, (size_t)capacity);
}

int64_t ff_image_trim(void) {
    pthread_mutex_lock(&lock);
    region out[KEEP];
    int n = n_kept;
    for (int i = 0; i < n; i++)
        out[i] = kept[i];
    n_kept = 0;
    pthread_mutex_unlock(&lock);
    int64_t freed = 0;
    for (int i = 0; i < n; i++) {
        munmap(out[i].p, (size_t)out[i].capacity);
        freed += out[i].capacity;
    }
    return freed;
}

int64_t ff_image_kept(void) {
    pthread_mutex_lock(&lock);
    int64_t total = 0;
    for (int i = 0; i < n_kept; i++)
        total += kept[i].capacity;
    pthread_mutex_unlock(&lock);
    return total;
}

#else /* no mmap: plain malloc, nothing kept */
#include <stdlib.h>

void *ff_image_alloc(int64_t nbytes, int64_t *capacity) {
    *capacity = nbytes > 0 ? nbytes : 1;
    return malloc((size_t)*capacity);
}

void ff_image_free(void *p, int64_t capacity) {
    (void)capacity;
    free(p);
}

int64_t ff_image_trim(void) { return 0; }

int64_t ff_image_kept(void) { return 0; }
#endif
