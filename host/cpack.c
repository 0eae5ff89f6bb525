/* The C fast path of the DMA-image packer: two depth-first walks over the source fibertree.
 *
 * Why C: a tile's entries are scattered across the source (a CSR row crosses every column
 * tile), so the numpy reference must sort all entries by tile and build each tile separately.
 * Walking the tree once in storage order visits each tile's entries in that tile's own
 * lexicographic order, so every section can be appended in place with per-tile cursors: no
 * sort and no temporary copy of the coordinates.
 */
#include <stdint.h>
#include <string.h>

#include "cpack.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FF_THREADS 1
#endif

#define MAXD 8
#define FF_MAX_THREADS 16

typedef struct {
    const ff_tree *t;
    int fill;                 /* 0: counting pass, 1: filling pass */
    int64_t local[MAXD];      /* tile-local coordinates of the current path */
    int64_t path[MAXD];       /* source positions of the current path */
    int64_t stride[MAXD];     /* row-major strides of the tile grid */
    /* counting pass */
    int64_t *ncrd;
    /* filling pass */
    uint8_t *image;
    const int64_t *slot, *ext, *seg_off, *crd_off, *vals_off;
    int64_t *last, *cur;
} walker;

static void walk(walker *w, int k, int64_t parent, int64_t tile, int64_t lo, int64_t hi);

/* Walk levels 0 .. ndim-2 of the current path within `tile` once per run (not per leaf):
 * note first visits of source nodes and return the tile-local position of the last level's
 * parent. A run is a stretch of one last-level fiber that falls into one tile. */
static int64_t run_parent(walker *w, int64_t tile, int64_t i)
{
    const ff_tree *t = w->t;
    int64_t local = 0;
    for (int k = 0; k < t->ndim - 1; k++) {
        if (t->dense[k]) {
            if (w->fill)
                local = local * w->ext[i * t->ndim + k] + w->local[k];
            continue;
        }
        int64_t s = (w->fill ? i : tile) * t->ndim + k;
        if (w->last[s] != w->path[k]) {   /* first entry of this source node in this tile */
            w->last[s] = w->path[k];
            if (!w->fill) {
                w->ncrd[s]++;
                continue;
            }
            int64_t at = ++w->cur[s];       /* cur holds the last index written, from -1 */
            uint8_t *crd = w->image + w->crd_off[s];
            int64_t lc = w->local[k];
            if (t->coord_bytes == 2)
                ((uint16_t *)crd)[at] = (uint16_t)lc;
            else
                ((uint32_t *)crd)[at] = (uint32_t)lc;
            ((uint32_t *)(w->image + w->seg_off[s]))[local + 1]++;
        }
        if (w->fill)
            local = w->cur[s];
    }
    return local;
}

/* One run of the last level: `n` leaves with source positions q0.. and local coordinates
 * crd[q] - base (compressed) or c0 - base .. (dense), all in grid tile `tile`. */
static void run(walker *w, int64_t tile, int64_t q0, int64_t n, const int32_t *crd, int64_t base,
                int64_t c0)
{
    const ff_tree *t = w->t;
    int last = t->ndim - 1;
    int64_t i = w->fill ? w->slot[tile] : -1;
    int64_t parent = run_parent(w, tile, i);
    if (!w->fill) {
        if (!t->dense[last])
            w->ncrd[tile * t->ndim + last] += n;
        return;
    }
    int64_t s = i * t->ndim + last;
    uint32_t *vals = (uint32_t *)(w->image + w->vals_off[i]);
    if (t->dense[last]) {
        memcpy(vals + parent * w->ext[s] + (c0 - base), t->vals + q0, (size_t)n * 4);
        return;
    }
    int64_t at = w->cur[s] + 1;
    w->cur[s] += n;
    ((uint32_t *)(w->image + w->seg_off[s]))[parent + 1] += (uint32_t)n;
    memcpy(vals + at, t->vals + q0, (size_t)n * 4);
    const int32_t *src = crd + q0;
    if (t->coord_bytes == 2) {
        uint16_t *dst = (uint16_t *)(w->image + w->crd_off[s]) + at;
        for (int64_t j = 0; j < n; j++)
            dst[j] = (uint16_t)(src[j] - base);
    } else {
        uint32_t *dst = (uint32_t *)(w->image + w->crd_off[s]) + at;
        for (int64_t j = 0; j < n; j++)
            dst[j] = (uint32_t)(src[j] - base);
    }
}

/* Which tile a coordinate falls in. Coordinates and tile sizes fit in 32 bits, and a 32-bit
 * division costs a fraction of a 64-bit one; power-of-two tiles (the usual case) shift. */
static inline int64_t tile_of(int64_t c, int64_t tk)
{
    if ((tk & (tk - 1)) == 0)
        return c >> __builtin_ctzll((unsigned long long)tk);
    return (int64_t)((uint32_t)c / (uint32_t)tk);
}

/* The first index in a[0..n) whose value is >= key (a sorted); branch-free, because the
 * run boundaries it finds are unpredictable. Short fibers (the common case) are counted with a
 * vectorisable scan instead, which beats the chain of dependent loads of a binary search. */
static int64_t lower_bound(const int32_t *a, int64_t n, int64_t key)
{
    if (n <= 64) {
        if (key > INT32_MAX) /* a boundary past every int32 coordinate */
            return n;
        int32_t k = (int32_t)key;
        int64_t below = 0;
        for (int64_t i = 0; i < n; i++)
            below += a[i] < k;
        return below;
    }
    const int32_t *base = a;
    while (n > 1) {
        int64_t half = n / 2;
        base += (base[half] < key) ? half : 0;
        n -= half;
    }
    return (base - a) + (*base < key);
}

/* The children of position `parent` at level k: coordinates for a dense level, source
 * positions for a compressed one. */
static inline int64_t child_lo(const ff_tree *t, int k, int64_t parent)
{
    return t->dense[k] ? 0 : t->pos[k][parent];
}

static inline int64_t child_hi(const ff_tree *t, int k, int64_t parent)
{
    return t->dense[k] ? t->size[k] : t->pos[k][parent + 1];
}

/* Visit the children lo .. hi-1 of `parent` at level k: coordinates for a dense level,
 * source positions for a compressed one. `tile` is the grid id accumulated so far. */
static void walk(walker *w, int k, int64_t parent, int64_t tile, int64_t lo, int64_t hi)
{
    const ff_tree *t = w->t;
    int64_t tk = t->tile[k], stride = w->stride[k];
    if (k == t->ndim - 1) {
        /* The last level: cut the fiber into runs at tile boundaries. */
        if (t->dense[k]) {
            int64_t n = t->size[k];
            for (int64_t c0 = lo; c0 < hi; c0 += tk) {
                int64_t len = hi - c0 < tk ? hi - c0 : tk;
                run(w, tile + tile_of(c0, tk) * stride, parent * n + c0, len, NULL, c0, c0);
            }
            return;
        }
        const int32_t *crd = t->crd[k];
        int64_t q = lo;
        while (q < hi) {
            int64_t ct = tile_of(crd[q], tk), bound = (ct + 1) * tk, q1 = hi;
            if (crd[hi - 1] >= bound)
                q1 = q + 1 + lower_bound(crd + q + 1, hi - q - 1, bound);
            run(w, tile + ct * stride, q, q1 - q, crd, ct * tk, 0);
            q = q1;
        }
        return;
    }
    if (t->dense[k]) {
        int64_t n = t->size[k];
        /* Track the tile index and local coordinate incrementally: no division per node. */
        int64_t ct = tile_of(lo, tk), lc = lo - ct * tk;
        for (int64_t c = lo; c < hi; c++) {
            int64_t p = parent * n + c;
            w->local[k] = lc;
            w->path[k] = p;
            walk(w, k + 1, p, tile + ct * stride, child_lo(t, k + 1, p), child_hi(t, k + 1, p));
            if (++lc == tk) {
                lc = 0;
                ct++;
            }
        }
    } else {
        const int32_t *crd = t->crd[k];
        for (int64_t q = lo; q < hi; q++) {
            int64_t ct = tile_of(crd[q], tk);
            w->local[k] = crd[q] - ct * tk;
            w->path[k] = q;
            walk(w, k + 1, q, tile + ct * stride, child_lo(t, k + 1, q), child_hi(t, k + 1, q));
        }
    }
}

static void init(walker *w, const ff_tree *t)
{
    memset(w, 0, sizeof *w);
    w->t = t;
    int64_t s = 1;
    for (int k = t->ndim - 1; k >= 0; k--) {
        w->stride[k] = s;
        s *= t->grid[k];
    }
}

/* Work is split between threads along level 0, at tile boundaries: threads then own disjoint
 * sets of tiles, so every counter, cursor and section has exactly one writer and the bytes do
 * not depend on the thread count. */
typedef void (*walk_fn)(walker *w, int64_t lo, int64_t hi);

typedef struct {
    walker w;
    walk_fn fn;
    int64_t lo, hi;
} part;

static void *run_part(void *arg)
{
    part *p = arg;
    p->fn(&p->w, p->lo, p->hi);
    return NULL;
}

static void walk_root(walker *w, int64_t lo, int64_t hi)
{
    walk(w, 0, 0, 0, lo, hi);
}

/* CSR-like trees (a dense level over a compressed one: "ds", "ds:1,0") are the common case,
 * and their runs are short (every row crosses every column tile), so they get a loop of their
 * own that keeps the per-run cost to a few instructions. It writes exactly what walk() would. */
static void csr_rows(walker *w, int64_t lo, int64_t hi)
{
    const ff_tree *t = w->t;
    const int64_t *pos = t->pos[1];
    const int32_t *crd = t->crd[1];
    int64_t tr = t->tile[0], tc = t->tile[1], gc = t->grid[1];
    int64_t rt = tile_of(lo, tr), lr = lo - rt * tr;
    for (int64_t r = lo; r < hi; r++) {
        int64_t q = pos[r], end = pos[r + 1];
        while (q < end) {
            int64_t ct = tile_of(crd[q], tc), bound = (ct + 1) * tc, q1 = end;
            if (crd[end - 1] >= bound)
                q1 = q + 1 + lower_bound(crd + q + 1, end - q - 1, bound);
            int64_t n = q1 - q, tile = rt * gc + ct;
            if (!w->fill) {
                w->ncrd[tile * 2 + 1] += n;
            } else {
                int64_t s = w->slot[tile] * 2 + 1, at = w->cur[s] + 1, base = ct * tc;
                w->cur[s] += n;
                ((uint32_t *)(w->image + w->seg_off[s]))[lr + 1] = (uint32_t)n;
                memcpy((uint32_t *)(w->image + w->vals_off[s >> 1]) + at, t->vals + q,
                       (size_t)n * 4);
                if (t->coord_bytes == 2) {
                    uint16_t *dst = (uint16_t *)(w->image + w->crd_off[s]) + at;
                    for (int64_t j = 0; j < n; j++)
                        dst[j] = (uint16_t)(crd[q + j] - base);
                } else {
                    uint32_t *dst = (uint32_t *)(w->image + w->crd_off[s]) + at;
                    for (int64_t j = 0; j < n; j++)
                        dst[j] = (uint32_t)(crd[q + j] - base);
                }
            }
            q = q1;
        }
        if (++lr == tr) {
            lr = 0;
            rt++;
        }
    }
}

static void walk_parallel(const walker *proto, int threads)
{
    walk_fn fn = proto->t->ndim == 2 && proto->t->dense[0] && !proto->t->dense[1] ? csr_rows
                                                                                  : walk_root;
    const ff_tree *t = proto->t;
    int64_t lo = child_lo(t, 0, 0), hi = child_hi(t, 0, 0), tk = t->tile[0];
    part parts[FF_MAX_THREADS];
    int n = 0;
    if (threads > FF_MAX_THREADS)
        threads = FF_MAX_THREADS;
    int64_t start = lo;
    for (int i = 1; i <= threads && start < hi; i++) {
        int64_t end = hi;
        if (i < threads) {
            /* The split point nearest an even share, moved to the next tile boundary. */
            int64_t target = lo + (hi - lo) * i / threads;
            if (t->dense[0]) {
                end = (tile_of(target, tk) + 1) * tk;
            } else {
                int64_t bound = (tile_of(t->crd[0][target < hi ? target : hi - 1], tk) + 1) * tk;
                end = lo + lower_bound(t->crd[0] + lo, hi - lo, bound);
            }
            if (end > hi)
                end = hi;
            if (end <= start)
                continue;
        }
        parts[n].w = *proto;
        parts[n].fn = fn;
        parts[n].lo = start;
        parts[n].hi = end;
        n++;
        start = end;
    }
#ifdef FF_THREADS
    pthread_t ids[FF_MAX_THREADS];
    int started[FF_MAX_THREADS] = {0};
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&ids[i], NULL, run_part, &parts[i]) == 0;
    if (n > 0)
        run_part(&parts[0]);
    for (int i = 1; i < n; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            run_part(&parts[i]); /* no thread available: do it here */
    }
#else
    for (int i = 0; i < n; i++)
        run_part(&parts[i]);
#endif
}

void ff_count(const ff_tree *tree, int64_t *ncrd, int64_t *last, int threads)
{
    walker w;
    init(&w, tree);
    int64_t n = 1;
    for (int k = 0; k < tree->ndim; k++)
        n *= tree->grid[k];
    for (int64_t s = 0; s < n * tree->ndim; s++)
        last[s] = -1;
    w.ncrd = ncrd;
    w.last = last;
    if (n > 0)
        walk_parallel(&w, threads);
}

void ff_fill(const ff_tree *tree, uint8_t *image, const int64_t *slot, int64_t n_tiles,
             const int64_t *ext, const int64_t *npos, const int64_t *seg_off,
             const int64_t *crd_off, const int64_t *vals_off, int64_t *last, int64_t *cur,
             int threads)
{
    walker w;
    init(&w, tree);
    int nd = tree->ndim;
    for (int64_t s = 0; s < n_tiles * nd; s++) {
        last[s] = -1;
        cur[s] = -1;
    }
    w.fill = 1;
    w.image = image;
    w.slot = slot;
    w.ext = ext;
    w.seg_off = seg_off;
    w.crd_off = crd_off;
    w.vals_off = vals_off;
    w.last = last;
    w.cur = cur;
    if (n_tiles > 0)
        walk_parallel(&w, threads);
    /* Segment arrays were filled with per-parent counts at [parent + 1]; make them offsets. */
    for (int64_t i = 0; i < n_tiles; i++) {
        int64_t parents = 1;
        for (int k = 0; k < nd; k++) {
            int64_t s = i * nd + k;
            if (!tree->dense[k]) {
                uint32_t *seg = (uint32_t *)(image + seg_off[s]);
                for (int64_t j = 1; j <= parents; j++)
                    seg[j] += seg[j - 1];
            }
            parents = npos[s];
        }
    }
}

/* CRC-32 of A followed by B, from crc(A), crc(B) and len(B): appending len(B) zero bytes to A
 * is a linear map on the CRC register over GF(2), applied by repeated squaring of the
 * one-zero-bit operator. This lets the host checksum an image's halves in parallel. */
static uint32_t gf2_apply(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (int i = 0; vec; i++, vec >>= 1)
        if (vec & 1)
            sum ^= mat[i];
    return sum;
}

static void gf2_square(uint32_t *out, const uint32_t *mat)
{
    for (int i = 0; i < 32; i++)
        out[i] = gf2_apply(mat, mat[i]);
}

uint32_t ff_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    uint32_t op[32], sq[32];
    op[0] = 0xEDB88320u; /* the reflected CRC-32 polynomial: one zero bit */
    for (int i = 1; i < 32; i++)
        op[i] = 1u << (i - 1);
    gf2_square(sq, op); /* two zero bits */
    gf2_square(op, sq); /* four zero bits */
    gf2_square(sq, op); /* one zero byte */
    /* sq now appends 2^j bytes for j = 0, 1, ...: square it as len_b's bits are consumed. */
    while (len_b) {
        if (len_b & 1)
            crc_a = gf2_apply(sq, crc_a);
        len_b >>= 1;
        if (!len_b)
            break;
        gf2_square(op, sq);
        memcpy(sq, op, sizeof sq);
    }
    return crc_a ^ crc_b;
}
