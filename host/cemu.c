/* The functional emulator's kernels (SpMV and SpMM over a "ds" DMA image), in C.
 *
 * Why C: the emulator must add products in exactly the order the hardware does (a sequential
 * float32 sum per output, in increasing column order, docs/emulator.md). numpy's reductions
 * use pairwise summation and scipy may reorder, so neither can guarantee that order; a plain
 * loop can, and it runs at scipy's speed.
 *
 * Arithmetic policy (one place, switched by the ftz / canonical_nan fields of the job):
 * float32 operations are IEEE binary32 with round to nearest even, each product rounded
 * before it is added (no fused multiply-add: built with -ffp-contract=off). int32 wraps
 * around (two's complement): computed in uint32_t, where overflow is defined.
 *
 * Nothing in the image is trusted: every offset, segment and coordinate is checked before use.
 */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "cemu.h"

enum {
    E_HEADER = -1,    /* not a 2-D "ds" image of the job's value type and shape */
    E_INDEX = -2,     /* a tile-list entry outside the directory */
    E_BOUNDS = -3,    /* a tile or one of its sections outside the image */
    E_SEGMENT = -4,   /* a segment array that is not a valid offset list */
    E_COORD = -5,     /* a coordinate outside its tile */
};

#define CANONICAL_NAN 0x7fc00000u

static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static inline float flush(float v)
{
    /* A (well predicted) branch rather than a select: a select would put the test on the
     * running sum's dependency chain and roughly double the cost of each addition. */
    uint32_t b;
    memcpy(&b, &v, 4);
    if (__builtin_expect((b & 0x7f800000u) == 0 && (b & 0x007fffffu) != 0, 0)) {
        b &= 0x80000000u;                  /* subnormal -> zero of the same sign */
        memcpy(&v, &b, 4);
    }
    return v;
}

/* Zero or subnormal (NaN is neither)? A float compare: no move to integer registers. */
static inline int tiny(float v)
{
    return __builtin_fabsf(v) < FLT_MIN;
}

/* Any subnormal among n float32 bit patterns? One vectorisable pass. */
static int has_subnormal(const uint32_t *v, int64_t n)
{
    uint32_t any = 0;
    for (int64_t i = 0; i < n; i++)
        any |= ((v[i] & 0x7f800000u) == 0) & ((v[i] & 0x007fffffu) != 0);
    return any != 0;
}

/* flush() as a select, for loops that vectorise (no dependency chain runs through it). */
static inline float flush_sel(float v)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    b &= (b & 0x7f800000u) ? 0xffffffffu : 0x80000000u;
    memcpy(&v, &b, 4);
    return v;
}

/* The two float32 operations of the (+, *) semiring. With ftz, operands and results that are
 * subnormal become zero of the same sign (the policy of an ALU without subnormal support). */
static inline float fmul32(float a, float b, const int ftz)
{
    return ftz ? flush(flush(a) * flush(b)) : a * b;
}

static inline float fadd32(float a, float b, const int ftz)
{
    return ftz ? flush(flush(a) + flush(b)) : a + b;
}

static inline float canon(float v, const int canonical_nan)
{
    if (canonical_nan && v != v) {
        uint32_t b = CANONICAL_NAN;
        memcpy(&v, &b, 4);
    }
    return v;
}

typedef struct {
    int64_t rows, cols;          /* the tile's extent */
    int64_t row0, col0;          /* its origin in A */
    uint32_t nvals;
    const uint32_t *seg;         /* rows + 1 offsets */
    const uint8_t *crd;          /* nvals coordinates, 2 or 4 bytes each */
    const uint8_t *vals;         /* nvals values */
    int x_clean;                 /* no subnormal in the job's x / B */
} tile_view;

/* Locate tile-list entry i and check everything about it except its coordinates. */
static int open_tile(const ff_emu_job *job, int64_t i, int64_t n_dir, uint64_t dir_offset,
                     int64_t tr, int64_t tc, int64_t grid_r, int64_t grid_c, int cb,
                     tile_view *t)
{
    const uint8_t *img = job->image;
    uint32_t d = job->tiles[i];
    if ((int64_t)d >= n_dir)
        return E_INDEX;
    const uint8_t *e = img + dir_offset + 32 * (uint64_t)d;     /* a 2-D directory entry */
    uint64_t off = rd64(e), nbytes = rd32(e + 8);
    uint32_t nvals = rd32(e + 12), ri = rd32(e + 16), ci = rd32(e + 20);
    if (ri >= grid_r || ci >= grid_c)
        return E_INDEX;
    if (off > job->image_bytes || nbytes > job->image_bytes - off || nbytes < 32)
        return E_BOUNDS;
    const uint8_t *th = img + off;                               /* the tile header */
    t->row0 = (int64_t)ri * tr;
    t->col0 = (int64_t)ci * tc;
    t->rows = job->m - t->row0 < tr ? job->m - t->row0 : tr;
    t->cols = job->n - t->col0 < tc ? job->n - t->col0 : tc;
    t->nvals = nvals;
    uint64_t vals_off = rd32(th + 4), seg_off = rd32(th + 24), crd_off = rd32(th + 28);
    if (rd32(th) != nvals || rd32(th + 8) != (uint64_t)t->rows || rd32(th + 20) != nvals)
        return E_BOUNDS;
    if (seg_off + 4 * (uint64_t)(t->rows + 1) > nbytes || crd_off + (uint64_t)cb * nvals > nbytes
        || vals_off + 4 * (uint64_t)nvals > nbytes || (seg_off | crd_off | vals_off) & 3)
        return E_BOUNDS;
    t->seg = (const uint32_t *)(th + seg_off);
    t->crd = th + crd_off;
    t->vals = th + vals_off;
    if (t->seg[0] != 0 || t->seg[t->rows] != nvals)
        return E_SEGMENT;
    return 0;
}

static inline uint32_t crd_at(const uint8_t *crd, uint32_t q, const int cb)
{
    return cb == 2 ? ((const uint16_t *)crd)[q] : ((const uint32_t *)crd)[q];
}

/* Every coordinate of the tile inside its width? One vectorisable pass, so the multiply loops
 * need no test per nonzero. */
static inline int coords_ok(const tile_view *t, const int cb)
{
    uint32_t top = 0;
    if (cb == 2) {
        const uint16_t *c = (const uint16_t *)t->crd;
        for (uint32_t q = 0; q < t->nvals; q++)
            top = c[q] > top ? c[q] : top;
    } else {
        const uint32_t *c = (const uint32_t *)t->crd;
        for (uint32_t q = 0; q < t->nvals; q++)
            top = c[q] > top ? c[q] : top;
    }
    return t->nvals == 0 || (int64_t)top < t->cols;
}

/* One tile of SpMV / SpMM. Each output row adds its products in increasing column order onto
 * its running sum in y; SpMM does that for each column c of B independently. */
static inline __attribute__((always_inline)) int run_tile(
    const ff_emu_job *job, const tile_view *t, const int cb, const int is_float,
    const int ftz, const int canonical_nan, const int spmv)
{
    const int64_t k = job->k;
    if (!coords_ok(t, cb))
        return E_COORD;
    const int clean = is_float && ftz && t->x_clean
                      && !has_subnormal((const uint32_t *)t->vals, t->nvals);
    for (int64_t r = 0; r < t->rows; r++) {
        uint32_t s0 = t->seg[r], s1 = t->seg[r + 1];
        if (s1 < s0 || s1 > t->nvals)
            return E_SEGMENT;
        if (s0 == s1)
            continue;
        int64_t row = t->row0 + r;
        if (is_float) {
            const float *av = (const float *)t->vals;
            const float *x = (const float *)job->x + t->col0 * k;
            float *y = (float *)job->y + row * k;
            if (spmv) {
                /* Exactly acc = fadd32(acc, fmul32(a, b)), arranged for speed: results of
                 * fmul32 / fadd32 are already flushed, so fadd32's flushing of its operands
                 * changes nothing after the first (the flush of y's initial value). */
                float acc = ftz ? flush(y[0]) : y[0];
                if (ftz && clean) {
                    /* No subnormal operand: fmul32 can differ from a * b only by flushing a
                     * subnormal product. */
                    for (uint32_t q = s0; q < s1; q++) {
                        float p = av[q] * x[crd_at(t->crd, q, cb)];
                        if (__builtin_expect(tiny(p), 0))
                            p = flush(p);
                        acc = acc + p;
                        if (__builtin_expect(tiny(acc), 0))
                            acc = flush(acc);
                    }
                } else {
                    for (uint32_t q = s0; q < s1; q++) {
                        float a = av[q], b = x[crd_at(t->crd, q, cb)], p = a * b;
                        /* fmul32 differs from a * b only when a, b or the product is zero or
                         * subnormal; test that in the float domain, take the exact path then. */
                        if (ftz && __builtin_expect(tiny(a) | tiny(b) | tiny(p), 0))
                            p = fmul32(a, b, 1);
                        acc = acc + p;
                        if (ftz && __builtin_expect(tiny(acc), 0))
                            acc = flush(acc);
                    }
                }
                y[0] = canon(acc, canonical_nan);
            } else {
                /* The same operations as fadd32(y, fmul32(a, b)), arranged to vectorise across
                 * the k columns: flushes are selects, and operands already flushed (the
                 * running sums after their first flush, a) are not flushed again. */
                if (ftz)
                    for (int64_t j = 0; j < k; j++)
                        y[j] = flush_sel(y[j]);
                for (uint32_t q = s0; q < s1; q++) {
                    uint32_t c = crd_at(t->crd, q, cb);
                    const float *b = x + (int64_t)c * k;
                    if (ftz) {
                        float a = flush_sel(av[q]);
                        for (int64_t j = 0; j < k; j++)
                            y[j] = flush_sel(y[j] + flush_sel(a * flush_sel(b[j])));
                    } else {
                        float a = av[q];
                        for (int64_t j = 0; j < k; j++)
                            y[j] = y[j] + a * b[j];
                    }
                }
                for (int64_t j = 0; j < k; j++)
                    y[j] = canon(y[j], canonical_nan);
            }
        } else {
            const uint32_t *av = (const uint32_t *)t->vals;
            const uint32_t *x = (const uint32_t *)job->x + t->col0 * k;
            uint32_t *y = (uint32_t *)job->y + row * k;
            for (uint32_t q = s0; q < s1; q++) {
                uint32_t c = crd_at(t->crd, q, cb);
                uint32_t a = av[q];
                const uint32_t *b = x + (int64_t)c * k;
                for (int64_t j = 0; j < k; j++)
                    y[j] += a * b[j];
            }
        }
    }
    return 0;
}

#define RUN_VARIANT(name, CB, FLOAT, FTZ, NAN, SPMV)                                        \
    static int name(const ff_emu_job *job, const tile_view *t)                              \
    {                                                                                       \
        return run_tile(job, t, CB, FLOAT, FTZ, NAN, SPMV);                                 \
    }

/* Specialised copies, so the inner loops carry no run-time policy tests. */
RUN_VARIANT(f2_spmv, 2, 1, 0, 1, 1)
RUN_VARIANT(f4_spmv, 4, 1, 0, 1, 1)
RUN_VARIANT(f2_spmm, 2, 1, 0, 1, 0)
RUN_VARIANT(f4_spmm, 4, 1, 0, 1, 0)
RUN_VARIANT(f2_spmv_ftz, 2, 1, 1, 1, 1)
RUN_VARIANT(f4_spmv_ftz, 4, 1, 1, 1, 1)
RUN_VARIANT(f2_spmm_ftz, 2, 1, 1, 1, 0)
RUN_VARIANT(f4_spmm_ftz, 4, 1, 1, 1, 0)
RUN_VARIANT(i2, 2, 0, 0, 0, 0)
RUN_VARIANT(i4, 4, 0, 0, 0, 0)

typedef int (*tile_fn)(const ff_emu_job *, const tile_view *);

static int generic(const ff_emu_job *job, const tile_view *t, int cb)
{
    /* NaN payloads propagated (canonical_nan = 0): unspecialised, slower. */
    int spmv = job->k == 1;
    if (cb == 2)
        return spmv ? run_tile(job, t, 2, 1, job->ftz, job->canonical_nan, 1)
                    : run_tile(job, t, 2, 1, job->ftz, job->canonical_nan, 0);
    return spmv ? run_tile(job, t, 4, 1, job->ftz, job->canonical_nan, 1)
                : run_tile(job, t, 4, 1, job->ftz, job->canonical_nan, 0);
}

int ff_emu_run(const ff_emu_job *job, int64_t *bad_tile)
{
    const uint8_t *img = job->image;
    *bad_tile = -1;
    if (job->image_bytes < 96 || rd32(img) != 0x49444646u || img[6] != 2
        || img[7] != job->dtype)
        return E_HEADER;
    int cb = img[8];
    const uint8_t *m0 = img + 64, *m1 = img + 80;          /* the mode table */
    if ((cb != 2 && cb != 4) || m0[8] != 0 || m0[9] != 0 || m1[8] != 1 || m1[9] != 1
        || rd32(m0) != (uint64_t)job->m || rd32(m1) != (uint64_t)job->n
        || rd32(m0 + 4) == 0 || rd32(m1 + 4) == 0 || img[10] != 32 || img[11] != 0)
        return E_HEADER;
    int64_t tr = rd32(m0 + 4), tc = rd32(m1 + 4);
    int64_t grid_r = rd32(m0 + 12), grid_c = rd32(m1 + 12);
    int64_t n_dir = rd32(img + 12);
    uint64_t dir_offset = rd64(img + 32);
    if (dir_offset > job->image_bytes || (uint64_t)n_dir * 32 > job->image_bytes - dir_offset
        || grid_r != (job->m + tr - 1) / tr || grid_c != (job->n + tc - 1) / tc)
        return E_HEADER;

    int is_float = job->dtype == 1;
    int fast = !is_float || job->canonical_nan;
    tile_fn fn;
    if (!is_float)
        fn = cb == 2 ? i2 : i4;
    else if (job->k == 1 && job->ftz)
        fn = cb == 2 ? f2_spmv_ftz : f4_spmv_ftz;
    else if (job->k == 1)
        fn = cb == 2 ? f2_spmv : f4_spmv;
    else if (job->ftz)
        fn = cb == 2 ? f2_spmm_ftz : f4_spmm_ftz;
    else
        fn = cb == 2 ? f2_spmm : f4_spmm;

    int x_clean = !is_float || !job->ftz
                  || !has_subnormal((const uint32_t *)job->x, job->n * job->k);
    for (int64_t i = 0; i < job->n_tiles; i++) {
        tile_view t;
        int rc = open_tile(job, i, n_dir, dir_offset, tr, tc, grid_r, grid_c, cb, &t);
        t.x_clean = x_clean;
        if (rc == 0)
            rc = fast ? fn(job, &t) : generic(job, &t, cb);
        if (rc) {
            *bad_tile = i;
            return rc;
        }
    }
    return 0;
}
