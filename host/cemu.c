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
 * What ff_emu_run checks, so that no input makes it read or write outside what it was given:
 *   - the job: m, n >= 0 and k >= 1; n * k elements fit in x_bytes and m * k in y_bytes;
 *     image, tiles, x and y 4-byte aligned;
 *   - the image: its header and mode table (2-D "ds", the job's value type, m x n, 16- or
 *     32-bit coordinates), the directory inside image_bytes, the tile grid matching m, n and
 *     the tile shape;
 *   - each tile-list entry: inside the directory; its tile's grid position inside the grid,
 *     so that its row and column origin plus its extent stay inside m and n; the tile and
 *     its sections (segments, coordinates, values) inside the image and aligned; the tile
 *     header agreeing with its directory entry; segment arrays non-decreasing from 0 to
 *     nvals; every coordinate inside the tile's width.
 * What it trusts (emu.py guarantees these): that image_bytes, 4 * n_tiles, x_bytes and
 * y_bytes bytes are readable at image, tiles, x and y (y writable), and that y overlaps
 * neither the image, x nor the tile list (a y inside the image could rewrite coordinates
 * after they were checked).
 *
 * Speed of the default policy (flush subnormals, canonical NaN): testing every product and
 * partial sum for a subnormal costs more than the arithmetic. So each run of tiles sharing a
 * row tile (the rows whose sums it carries) first runs as plain IEEE arithmetic, with the
 * x86 exception flags cleared. Flushing changes a result only where a subnormal appears: as
 * an operand (the processor then raises the denormal-operand flag DE), as an inexact result
 * (underflow flag UE), or as an exact result, which is either used as an operand later (DE)
 * or stored as a row's final sum (tested per row). When none of these happened, the plain
 * results are the flushed results, bit for bit; otherwise the rows' initial sums are put back
 * and the run is redone with the exact flushing kernels. NaN is made canonical once per
 * output: no operation turns a NaN into a number, so a sum that ends as NaN is exactly the
 * sum in which some operation produced one. Elsewhere than x86 the exact kernels always run.
 */
#define _POSIX_C_SOURCE 200112L /* clock_gettime, threads */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#define MXCSR_DEFAULT 0x1f80u   /* all exceptions masked, round to nearest, no FTZ / DAZ */
#define MXCSR_SUBNORMAL 0x12u   /* the UE and DE flags */
#else
#define HAVE_MXCSR 0
#endif

#include "cemu.h"
#include "cthreads.h"

enum {
    E_HEADER = -1,    /* not a 2-D "ds" image of the job's value type and shape */
    E_INDEX = -2,     /* a tile-list entry outside the directory */
    E_BOUNDS = -3,    /* a tile or one of its sections outside the image */
    E_SEGMENT = -4,   /* a segment array that is not a valid offset list */
    E_COORD = -5,     /* a coordinate outside its tile */
    E_OPERAND = -6,   /* m, n, k do not fit the x / y buffers, or a misaligned pointer */
    E_TIMEOUT = -7,   /* the deadline passed; y is incomplete */
    E_MEMORY = -8,    /* no memory for the job's bookkeeping; y is untouched */
};

#define CANONICAL_NAN 0x7fc00000u

/* Products computed between two looks at the clock: about 0.1 ms of work. */
#define CLOCK_EVERY 65536

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

static inline int subnormal(float v)
{
    return tiny(v) & (v != 0.0f);
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

/* The float32 multiplication of the (+, *) semiring. With ftz, operands and results that are
 * subnormal become zero of the same sign (the policy of an ALU without subnormal support). */
static inline float fmul32(float a, float b, const int ftz)
{
    return ftz ? flush(flush(a) * flush(b)) : a * b;
}

static inline float canon(float v, const int canonical_nan)
{
    if (canonical_nan && v != v) {
        uint32_t b = CANONICAL_NAN;
        memcpy(&v, &b, 4);
    }
    return v;
}

/* The image's geometry, checked once per job. */
typedef struct {
    int64_t n_dir;               /* directory entries */
    uint64_t dir_offset;
    int64_t tr, tc;              /* tile shape */
    int64_t grid_r, grid_c;      /* tile grid */
    int cb;                      /* bytes per coordinate: 2 or 4 */
} geometry;

/* State carried across the tiles of one job. */
typedef struct {
    int64_t deadline_ns;         /* 0: none */
    int64_t budget;              /* products left before the next look at the clock */
    int x_clean;                 /* no subnormal in x / B; -1 until first needed */
    int tiny_out;                /* a plain-arithmetic run stored a subnormal sum */
    int avx2;                    /* the CPU has AVX2 */
} run_state;

/* Has the deadline passed? Also restarts the budget. */
static int expired(run_state *s)
{
    s->budget = CLOCK_EVERY;
    if (!s->deadline_ns)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec >= s->deadline_ns;
}

typedef struct {
    int64_t rows, cols;          /* the tile's extent */
    int64_t row0, col0;          /* its origin in A */
    uint32_t nvals;
    const uint32_t *seg;         /* rows + 1 offsets */
    const uint8_t *crd;          /* nvals coordinates, 2 or 4 bytes each */
    const uint8_t *vals;         /* nvals values */
} tile_view;

/* The row-tile index of directory entry d (d < n_dir). */
static inline uint32_t row_tile_of(const ff_emu_job *job, const geometry *g, uint32_t d)
{
    return rd32(job->image + g->dir_offset + 32 * (uint64_t)d + 16);
}

/* Locate tile-list entry i and check everything about it except its coordinates. */
static int open_tile(const ff_emu_job *job, const geometry *g, int64_t i, tile_view *t)
{
    const uint8_t *img = job->image;
    uint32_t d = job->tiles[i];
    if ((int64_t)d >= g->n_dir)
        return E_INDEX;
    const uint8_t *e = img + g->dir_offset + 32 * (uint64_t)d;  /* a 2-D directory entry */
    uint64_t off = rd64(e), nbytes = rd32(e + 8);
    uint32_t nvals = rd32(e + 12), ri = rd32(e + 16), ci = rd32(e + 20);
    if (ri >= g->grid_r || ci >= g->grid_c)
        return E_INDEX;
    if (off > job->image_bytes || nbytes > job->image_bytes - off || nbytes < 32 || off & 3)
        return E_BOUNDS;
    const uint8_t *th = img + off;                               /* the tile header */
    t->row0 = (int64_t)ri * g->tr;
    t->col0 = (int64_t)ci * g->tc;
    t->rows = job->m - t->row0 < g->tr ? job->m - t->row0 : g->tr;
    t->cols = job->n - t->col0 < g->tc ? job->n - t->col0 : g->tc;
    /* Implied by the grid check and the grid matching m, n; kept because y and x are indexed
     * from these. */
    if (t->rows <= 0 || t->cols <= 0 || t->row0 + t->rows > job->m || t->col0 + t->cols > job->n)
        return E_INDEX;
    t->nvals = nvals;
    uint64_t vals_off = rd32(th + 4), seg_off = rd32(th + 24), crd_off = rd32(th + 28);
    if (rd32(th) != nvals || rd32(th + 8) != (uint64_t)t->rows || rd32(th + 20) != nvals)
        return E_BOUNDS;
    if (seg_off + 4 * (uint64_t)(t->rows + 1) > nbytes
        || crd_off + (uint64_t)g->cb * nvals > nbytes
        || vals_off + 4 * (uint64_t)nvals > nbytes || (seg_off | crd_off | vals_off) & 3)
        return E_BOUNDS;
    t->seg = (const uint32_t *)(th + seg_off);
    t->crd = th + crd_off;
    t->vals = th + vals_off;
    /* From 0 to nvals without decreasing: then every row's range lies inside the tile. One
     * vectorisable pass, so the row loops need no test. */
    const uint32_t *seg = t->seg;
    uint32_t down = seg[0] != 0 || seg[t->rows] != nvals;
    for (int64_t r = 0; r < t->rows; r++)
        down |= seg[r + 1] < seg[r];
    return down ? E_SEGMENT : 0;
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
 * its running sum in y; SpMM does that for each column c of B independently. With ftz = 0 and
 * float32, it also notes in s->tiny_out whether a final sum it stored is subnormal. */
static inline __attribute__((always_inline)) int run_tile(
    const ff_emu_job *job, const tile_view *t, run_state *s, const int cb, const int is_float,
    const int ftz, const int canonical_nan, const int spmv)
{
    const int64_t k = job->k;
    if (!coords_ok(t, cb))
        return E_COORD;
    /* Local copies: stores into y could otherwise alias them and force reloads per row. */
    const uint32_t *seg = t->seg, nvals = t->nvals;
    const uint8_t *crd = t->crd;
    const int64_t rows = t->rows;
    int clean = 0;
    if (is_float && ftz) {
        if (s->x_clean < 0)
            s->x_clean = !has_subnormal((const uint32_t *)job->x, job->n * k);
        clean = s->x_clean && !has_subnormal((const uint32_t *)t->vals, nvals);
    }
    int tiny_out = 0;
    int64_t budget = s->budget;
    for (int64_t r = 0; r < rows; r++) {
        uint32_t s0 = seg[r], s1 = seg[r + 1];
        budget -= (int64_t)(s1 - s0) * k + 1;
        if (__builtin_expect(budget < 0, 0)) {
            if (expired(s))
                return E_TIMEOUT;
            budget = s->budget;
        }
        if (s0 == s1)
            continue;
        int64_t row = t->row0 + r;
        if (is_float) {
            const float *av = (const float *)t->vals;
            const float *x = (const float *)job->x + t->col0 * k;
            float *y = (float *)job->y + row * k;
            if (spmv && !ftz) {
                float acc = y[0];
                for (uint32_t q = s0; q < s1; q++)
                    acc = acc + av[q] * x[crd_at(crd, q, cb)];
                acc = canon(acc, canonical_nan);
                tiny_out |= subnormal(acc);
                y[0] = acc;
            } else if (spmv) {
                /* Exactly acc = fadd32(acc, fmul32(a, b)), arranged for speed: results of
                 * fmul32 / fadd32 are already flushed, so fadd32's flushing of its operands
                 * changes nothing after the first (the flush of y's initial value). */
                float acc = flush(y[0]);
                if (clean) {
                    /* No subnormal operand: fmul32 can differ from a * b only by flushing a
                     * subnormal product. */
                    for (uint32_t q = s0; q < s1; q++) {
                        float p = av[q] * x[crd_at(crd, q, cb)];
                        if (__builtin_expect(tiny(p), 0))
                            p = flush(p);
                        acc = acc + p;
                        if (__builtin_expect(tiny(acc), 0))
                            acc = flush(acc);
                    }
                } else {
                    for (uint32_t q = s0; q < s1; q++) {
                        float a = av[q], b = x[crd_at(crd, q, cb)], p = a * b;
                        /* fmul32 differs from a * b only when a, b or the product is zero or
                         * subnormal; test that in the float domain, take the exact path then. */
                        if (__builtin_expect(tiny(a) | tiny(b) | tiny(p), 0))
                            p = fmul32(a, b, 1);
                        acc = acc + p;
                        if (__builtin_expect(tiny(acc), 0))
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
                    uint32_t c = crd_at(crd, q, cb);
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
                int any = 0;
                for (int64_t j = 0; j < k; j++) {
                    y[j] = canon(y[j], canonical_nan);
                    any |= subnormal(y[j]);
                }
                tiny_out |= any & !ftz;
            }
        } else {
            const uint32_t *av = (const uint32_t *)t->vals;
            const uint32_t *x = (const uint32_t *)job->x + t->col0 * k;
            uint32_t *y = (uint32_t *)job->y + row * k;
            for (uint32_t q = s0; q < s1; q++) {
                uint32_t c = crd_at(crd, q, cb);
                uint32_t a = av[q];
                const uint32_t *b = x + (int64_t)c * k;
                for (int64_t j = 0; j < k; j++)
                    y[j] += a * b[j];
            }
        }
    }
    s->budget = budget;
    s->tiny_out |= tiny_out;
    return 0;
}

/* Plain IEEE SpMV (no flushing; canonical NaN) of rows r .. end - 1 of a tile, two rows at a
 * time. Each row's sum is still one sequential chain in column order, but two chains advance
 * together, so one addition's latency hides behind the other's. Rows without entries are
 * left as they are. Notes in s->tiny_out whether a final sum it stored is subnormal. With
 * `ahead`, the products of entries `from` on were formed already: ahead[q - from]. */
static inline __attribute__((always_inline)) int plain_rows(
    const tile_view *t, const float *x, float *y, int64_t r, int64_t end, run_state *s,
    const int cb, const float *ahead, uint32_t from)
{
    const uint32_t *seg = t->seg;
    const uint8_t *crd = t->crd;
    const float *av = (const float *)t->vals;
    int tiny_out = 0;
    for (; r < end; r += 2) {
        int two = r + 1 < end;
        uint32_t q0 = seg[r], q1 = seg[r + 1], e1 = two ? seg[r + 2] : q1;
        uint32_t n0 = q1 - q0, n1 = e1 - q1, both = n0 < n1 ? n0 : n1;
        s->budget -= (int64_t)(n0 + n1) + 2;
        if (__builtin_expect(s->budget < 0, 0) && expired(s))
            return E_TIMEOUT;
        float a0 = y[r], a1 = two ? y[r + 1] : 0.0f;
#define PRODUCT(q) (ahead ? ahead[(q) - from] : av[q] * x[crd_at(crd, q, cb)])
        for (uint32_t i = 0; i < both; i++) {
            a0 = a0 + PRODUCT(q0 + i);
            a1 = a1 + PRODUCT(q1 + i);
        }
        for (uint32_t i = both; i < n0; i++)
            a0 = a0 + PRODUCT(q0 + i);
        for (uint32_t i = both; i < n1; i++)
            a1 = a1 + PRODUCT(q1 + i);
#undef PRODUCT
        if (n0) {
            a0 = canon(a0, 1);
            tiny_out |= subnormal(a0);
            y[r] = a0;
        }
        if (n1) {
            a1 = canon(a1, 1);
            tiny_out |= subnormal(a1);
            y[r + 1] = a1;
        }
    }
    s->tiny_out |= tiny_out;
    return 0;
}

#if HAVE_MXCSR
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))

/* The largest of eight non-negative int32. */
static inline __attribute__((always_inline)) AVX2 uint32_t hmax8(__m256i v)
{
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(m);
}

/* Products a block of rows computes ahead (16 KB: stays in L1 with the block's rows). */
#define AHEAD 4096

/* p[j] = av[j] * x[crd[j]] for j < n: one gather per eight products, from values and
 * coordinates read in order. The same rounded products the row loops would form. */
static inline __attribute__((always_inline)) AVX2 void products(
    float *p, const float *av, const uint8_t *crd, uint32_t n, const float *x, const int cb)
{
    uint32_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256i c = cb == 2
                        ? _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(crd + 2 * j)))
                        : _mm256_loadu_si256((const __m256i *)(crd + 4 * j));
        __m256 b = _mm256_i32gather_ps(x, c, 4);
        _mm256_storeu_ps(p + j, _mm256_mul_ps(_mm256_loadu_ps(av + j), b));
    }
    for (; j < n; j++)
        p[j] = av[j] * x[crd_at(crd, j, cb)];
}

/* Add each of eight rows' i-th product (p[q + i]) where the row has one (i < len); the
 * others add -0.0, which leaves every float as it is. */
static inline __attribute__((always_inline)) AVX2 __m256 add_step(__m256 acc, const float *p,
                                                                __m256i q, __m256i len, __m256i i)
{
    __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(len, i));
    return _mm256_add_ps(
        acc, _mm256_mask_i32gather_ps(_mm256_set1_ps(-0.0f), p, _mm256_add_epi32(q, i), live, 4));
}

/* plain_rows for a whole tile, eight rows at a time, one per lane of an AVX2 vector: step i
 * adds each row's i-th product, so each row's sum is still its sequential chain in column
 * order, and no branch depends on a row's length (a mispredicted loop exit per row would cost
 * more than the row's arithmetic). The products of a block of up to 64 rows are formed first
 * (`products`), so each step gathers one vector of products rather than values, coordinates
 * and x. Groups whose longest row is far above their mean (most lanes would idle), groups
 * with more than AHEAD entries, and the last rows % 8, go to plain_rows. The caller checks
 * that the tile's width fits the gathers' signed 32-bit indices. */
static inline __attribute__((always_inline)) AVX2 int gather_rows(
    const tile_view *t, const float *x, float *y, run_state *s, const int cb)
{
    const uint32_t *seg = t->seg;
    const float *av = (const float *)t->vals;
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32((int)CANONICAL_NAN));
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 fmin = _mm256_set1_ps(FLT_MIN), fzero = _mm256_setzero_ps();
    float p[AHEAD];
    int tiny = 0;
    /* Steps nearly every group needs: the longest of eight rows is rarely above the mean
     * plus twice its square root (true of Poisson-like row lengths). */
    const uint64_t mean = t->rows ? (t->nvals + t->rows - 1) / t->rows : 0;
    uint32_t usual = 1;
    while (usual < 64 && (usual < mean || (usual - mean) * (usual - mean) < 4 * mean))
        usual++;
    const int64_t whole = t->rows & ~(int64_t)7;
    for (int64_t r = 0; r < whole;) {
        int64_t end = whole - r < 64 ? whole : r + 64;
        while (end > r + 8 && seg[end] - seg[r] > AHEAD)
            end -= 8;
        const uint32_t base = seg[r], span = seg[end] - base;
        if (span > AHEAD) { /* one group of long rows: their own loop */
            int rc = plain_rows(t, x, y, r, end, s, cb, NULL, 0);
            if (rc)
                return rc;
            r = end;
            continue;
        }
        if (span == 0) { /* empty rows (common in sparse tiles): nothing to add or store */
            r = end;
            continue;
        }
        products(p, av + base, t->crd + (size_t)cb * base, span, x, cb);
        const __m256i from = _mm256_set1_epi32((int)base);
        for (; r < end; r += 8) {
            __m256i q = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(seg + r)), from);
            __m256i len = _mm256_sub_epi32(
                _mm256_loadu_si256((const __m256i *)(seg + r + 1)), _mm256_add_epi32(q, from));
            uint32_t total = seg[r + 8] - seg[r];
            if (total == 0)
                continue;
            uint32_t most = hmax8(len);
            if ((uint64_t)most * 8 > 4 * (uint64_t)total + 32) {
                int rc = plain_rows(t, x, y, r, r + 8, s, cb, p, base);
                if (rc)
                    return rc;
                continue;
            }
            s->budget -= (int64_t)total + 8;
            if (__builtin_expect(s->budget < 0, 0) && expired(s))
                return E_TIMEOUT;
            __m256 y0 = _mm256_loadu_ps(y + r), acc = y0;
            __m256i i = zero;
            /* `usual` steps, the same count in most groups (no mispredicted loop exit); a
             * group's own count where it needs more, or more than four fewer (a tile whose
             * mean a few long rows inflate: there the wasted steps would cost more than a
             * mispredicted exit). */
            const uint32_t steps = most <= usual && most + 4 >= usual ? usual : most;
            for (uint32_t step = 0; step < steps; step++, i = _mm256_add_epi32(i, one))
                acc = add_step(acc, p, q, len, i);
            __m256 has = _mm256_castsi256_ps(_mm256_cmpgt_epi32(len, zero));
            acc = _mm256_blendv_ps(acc, qnan, _mm256_cmp_ps(acc, acc, _CMP_UNORD_Q));
            __m256 sub = _mm256_and_ps(
                _mm256_cmp_ps(_mm256_and_ps(acc, magnitude), fmin, _CMP_LT_OQ),
                _mm256_cmp_ps(acc, fzero, _CMP_NEQ_OQ));
            tiny |= _mm256_movemask_ps(_mm256_and_ps(sub, has));
            _mm256_storeu_ps(y + r, _mm256_blendv_ps(y0, acc, has));
        }
    }
    s->tiny_out |= tiny != 0;
    return plain_rows(t, x, y, whole, t->rows, s, cb, NULL, 0);
}

static AVX2 int gather_rows2(const tile_view *t, const float *x, float *y, run_state *s)
{
    return gather_rows(t, x, y, s, 2);
}

static AVX2 int gather_rows4(const tile_view *t, const float *x, float *y, run_state *s)
{
    return gather_rows(t, x, y, s, 4);
}
#endif

/* Plain IEEE SpMV over one tile: gathers where the CPU has AVX2 and the tile suits them. */
static inline __attribute__((always_inline)) int plain_spmv(
    const ff_emu_job *job, const tile_view *t, run_state *s, const int cb)
{
    if (!coords_ok(t, cb))
        return E_COORD;
    const float *x = (const float *)job->x + t->col0;
    float *y = (float *)job->y + t->row0;
#if HAVE_MXCSR
    if (s->avx2 && t->cols <= 0x7fffffff)
        return cb == 2 ? gather_rows2(t, x, y, s) : gather_rows4(t, x, y, s);
#endif
    return plain_rows(t, x, y, 0, t->rows, s, cb, NULL, 0);
}

typedef int (*tile_fn)(const ff_emu_job *, const tile_view *, run_state *);

#define RUN_VARIANT(name, CB, FLOAT, FTZ, NAN, SPMV)                                        \
    static int name(const ff_emu_job *job, const tile_view *t, run_state *s)                \
    {                                                                                       \
        return run_tile(job, t, s, CB, FLOAT, FTZ, NAN, SPMV);                              \
    }

/* Specialised copies, so the inner loops carry no run-time policy tests. */
static int f2_spmv(const ff_emu_job *job, const tile_view *t, run_state *s)
{
    return plain_spmv(job, t, s, 2);
}

static int f4_spmv(const ff_emu_job *job, const tile_view *t, run_state *s)
{
    return plain_spmv(job, t, s, 4);
}

RUN_VARIANT(f2_spmm, 2, 1, 0, 1, 0)
RUN_VARIANT(f4_spmm, 4, 1, 0, 1, 0)
RUN_VARIANT(f2_spmv_ftz, 2, 1, 1, 1, 1)
RUN_VARIANT(f4_spmv_ftz, 4, 1, 1, 1, 1)
RUN_VARIANT(f2_spmm_ftz, 2, 1, 1, 1, 0)
RUN_VARIANT(f4_spmm_ftz, 4, 1, 1, 1, 0)
RUN_VARIANT(i2, 2, 0, 0, 0, 0)
RUN_VARIANT(i4, 4, 0, 0, 0, 0)

/* NaN payloads propagated (canonical_nan = 0): unspecialised, slower. */
static int generic(const ff_emu_job *job, const tile_view *t, run_state *s, int cb)
{
    int spmv = job->k == 1;
    if (cb == 2)
        return spmv ? run_tile(job, t, s, 2, 1, job->ftz, job->canonical_nan, 1)
                    : run_tile(job, t, s, 2, 1, job->ftz, job->canonical_nan, 0);
    return spmv ? run_tile(job, t, s, 4, 1, job->ftz, job->canonical_nan, 1)
                : run_tile(job, t, s, 4, 1, job->ftz, job->canonical_nan, 0);
}

static int generic2(const ff_emu_job *job, const tile_view *t, run_state *s)
{
    return generic(job, t, s, 2);
}

static int generic4(const ff_emu_job *job, const tile_view *t, run_state *s)
{
    return generic(job, t, s, 4);
}

/* Run tile-list entries i0 .. i1 - 1 with fn. */
static int run_range(const ff_emu_job *job, const geometry *g, run_state *s, int64_t i0,
                     int64_t i1, tile_fn fn, int64_t *bad_tile)
{
    for (int64_t i = i0; i < i1; i++) {
        tile_view t;
        int rc = open_tile(job, g, i, &t);
        if (rc == 0)
            rc = fn(job, &t, s);
        if (rc) {
            *bad_tile = i;
            return rc;
        }
    }
    return 0;
}

/* The job's operands: fit and alignment (E_OPERAND). */
static int check_operands(const ff_emu_job *job)
{
    if (job->m < 0 || job->n < 0 || job->k < 1 || job->n_tiles < 0)
        return E_OPERAND;
    /* Divisions, not products, so that no size overflows. */
    if ((uint64_t)job->n > job->x_bytes / 4 / (uint64_t)job->k
        || (uint64_t)job->m > job->y_bytes / 4 / (uint64_t)job->k)
        return E_OPERAND;
    if (((uintptr_t)job->image | (uintptr_t)job->tiles | (uintptr_t)job->x | (uintptr_t)job->y)
        & 3)
        return E_OPERAND;
    return 0;
}

/* What the workers share: the job, its kernels, and its groups (runs of tile-list entries
 * that share a row tile: group g is entries start[g] .. start[g + 1] - 1), taken in order. */
typedef struct {
    const ff_emu_job *job;
    const geometry *g;
    tile_fn exact, plain;
    const int64_t *start;
    int64_t n_groups;
    int64_t next;               /* the next group to take (atomic) */
    int stop;                   /* a worker failed: the others stop after their group (atomic) */
    int workers;                /* workers started so far (atomic): each one's slot below */
    int rc[FF_MAX_THREADS];     /* each worker's failure (0: none), and its tile-list entry */
    int64_t bad_tile[FF_MAX_THREADS];
} run_shared;

/* One group: with `plain`, first as plain arithmetic, redone exactly if a subnormal appeared
 * (the row tile's initial sums, kept in `saved`, are put back first). */
static int run_group(const run_shared *sh, run_state *s, uint8_t *saved, int64_t i, int64_t j,
                     int64_t *bad_tile)
{
    const ff_emu_job *job = sh->job;
    const geometry *g = sh->g;
    uint32_t ri = (int64_t)job->tiles[i] < g->n_dir ? row_tile_of(job, g, job->tiles[i])
                                                    : UINT32_MAX;
#if HAVE_MXCSR
    if (sh->plain && saved && ri < g->grid_r) {
        int64_t row0 = (int64_t)ri * g->tr, rows = g->tr < job->m - row0 ? g->tr : job->m - row0;
        uint8_t *y = job->y + row0 * job->k * 4;
        size_t bytes = (size_t)(rows * job->k * 4);
        memcpy(saved, y, bytes);
        _mm_setcsr(MXCSR_DEFAULT);
        s->tiny_out = 0;
        int rc = run_range(job, g, s, i, j, sh->plain, bad_tile);
        if (rc == 0 && (s->tiny_out || _mm_getcsr() & MXCSR_SUBNORMAL)) {
            memcpy(y, saved, bytes);
            rc = run_range(job, g, s, i, j, sh->exact, bad_tile);
        }
        return rc;
    }
#else
    (void)saved;
    (void)ri;
#endif
    return run_range(job, g, s, i, j, sh->exact, bad_tile);
}

/* A worker: groups in turn until none is left or a worker has failed. */
static void *run_groups(void *arg)
{
    run_shared *sh = arg;
    const ff_emu_job *job = sh->job;
    int me = __atomic_fetch_add(&sh->workers, 1, __ATOMIC_RELAXED);
    run_state s = {job->deadline_ns, 0, -1, 0, 0};
#if HAVE_MXCSR
    s.avx2 = __builtin_cpu_supports("avx2");
    _mm_setcsr(MXCSR_DEFAULT); /* each thread has its own mode and flags */
#endif
    uint8_t *saved = NULL;
    if (sh->plain) {
        int64_t rows = sh->g->tr < job->m ? sh->g->tr : job->m;
        saved = malloc((size_t)(rows * job->k * 4) + 1); /* none: the exact kernel only */
    }
    for (;;) {
        if (__atomic_load_n(&sh->stop, __ATOMIC_RELAXED))
            break;
        int64_t gi = __atomic_fetch_add(&sh->next, 1, __ATOMIC_RELAXED);
        if (gi >= sh->n_groups)
            break;
        sh->rc[me] = run_group(sh, &s, saved, sh->start[gi], sh->start[gi + 1],
                               &sh->bad_tile[me]);
        if (sh->rc[me]) {
            __atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    free(saved);
    return NULL;
}

/* Split the tile list into groups (runs sharing a row tile); return their number, or -1 when
 * out of memory. *shared tells whether some row tile has more than one group: those must run
 * one after the other, in list order, so then the job runs on one thread. An entry outside
 * the directory is a group of its own (its tile fails when opened). */
static int64_t make_groups(const ff_emu_job *job, const geometry *g, int64_t **start,
                           int *shared)
{
    *start = malloc(sizeof(int64_t) * (size_t)(job->n_tiles + 1));
    uint8_t *seen = calloc((size_t)g->grid_r + 1, 1);
    if (!*start || !seen) {
        free(*start);
        free(seen);
        return -1;
    }
    int64_t n = 0;
    *shared = 0;
    for (int64_t i = 0; i < job->n_tiles;) {
        int64_t j = i + 1;
        if ((int64_t)job->tiles[i] < g->n_dir) {
            uint32_t ri = row_tile_of(job, g, job->tiles[i]);
            while (j < job->n_tiles && (int64_t)job->tiles[j] < g->n_dir
                   && row_tile_of(job, g, job->tiles[j]) == ri)
                j++;
            if (ri < g->grid_r) {
                *shared |= seen[ri];
                seen[ri] = 1;
            }
        }
        (*start)[n++] = i;
        i = j;
    }
    (*start)[n] = job->n_tiles;
    free(seen);
    return n;
}

static int run_job(const ff_emu_job *job, int64_t *bad_tile)
{
    const uint8_t *img = job->image;
    int rc = check_operands(job);
    if (rc)
        return rc;
    if (job->image_bytes < 96 || rd32(img) != 0x49444646u || img[6] != 2
        || img[7] != job->dtype)
        return E_HEADER;
    geometry g;
    g.cb = img[8];
    const uint8_t *m0 = img + 64, *m1 = img + 80;          /* the mode table */
    if ((g.cb != 2 && g.cb != 4) || m0[8] != 0 || m0[9] != 0 || m1[8] != 1 || m1[9] != 1
        || rd32(m0) != (uint64_t)job->m || rd32(m1) != (uint64_t)job->n
        || rd32(m0 + 4) == 0 || rd32(m1 + 4) == 0 || img[10] != 32 || img[11] != 0)
        return E_HEADER;
    g.tr = rd32(m0 + 4);
    g.tc = rd32(m1 + 4);
    g.grid_r = rd32(m0 + 12);
    g.grid_c = rd32(m1 + 12);
    g.n_dir = rd32(img + 12);
    g.dir_offset = rd64(img + 32);
    if (g.dir_offset > job->image_bytes
        || (uint64_t)g.n_dir * 32 > job->image_bytes - g.dir_offset
        || g.grid_r != (job->m + g.tr - 1) / g.tr || g.grid_c != (job->n + g.tc - 1) / g.tc)
        return E_HEADER;

    /* exact: the kernel of the job's policy. plain: the same without flushing, where the
     * policy flushes and the flags can tell when that changed nothing (see the top). */
    int cb2 = g.cb == 2, spmv = job->k == 1;
    run_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.job = job;
    sh.g = &g;
    if (job->dtype != 1)
        sh.exact = cb2 ? i2 : i4;
    else if (!job->canonical_nan)
        sh.exact = cb2 ? generic2 : generic4;
    else if (!job->ftz)
        sh.exact = spmv ? (cb2 ? f2_spmv : f4_spmv) : (cb2 ? f2_spmm : f4_spmm);
    else {
        sh.exact = spmv ? (cb2 ? f2_spmv_ftz : f4_spmv_ftz) : (cb2 ? f2_spmm_ftz : f4_spmm_ftz);
        if (HAVE_MXCSR)
            sh.plain = spmv ? (cb2 ? f2_spmv : f4_spmv) : (cb2 ? f2_spmm : f4_spmm);
    }
    int64_t *start;
    int shared;
    sh.n_groups = make_groups(job, &g, &start, &shared);
    if (sh.n_groups < 0)
        return E_MEMORY;
    sh.start = start;
    /* Groups write disjoint rows of y, and each runs its tiles in list order on one thread,
     * so the sums, and so the bits, do not depend on the thread count. */
    int threads = job->threads < 1 ? 1 : job->threads; /* ff_on_threads caps it */
    if (shared || threads > sh.n_groups)
        threads = shared || sh.n_groups < 1 ? 1 : (int)sh.n_groups;
    ff_on_threads(run_groups, &sh, threads);
    free(start);
    /* The failure at the lowest tile-list entry: groups are taken in list order, so every
     * group before it was taken and ran to its end. */
    rc = 0;
    for (int w = 0; w < sh.workers; w++)
        if (sh.rc[w] && (!rc || sh.bad_tile[w] < *bad_tile)) {
            rc = sh.rc[w];
            *bad_tile = sh.bad_tile[w];
        }
    return rc;
}

int ff_emu_run(const ff_emu_job *job, int64_t *bad_tile)
{
    *bad_tile = -1;
#if HAVE_MXCSR
    /* Round to nearest and gradual underflow whatever the caller set (the flushing policy is
     * done in software); the caller's mode and flags are given back. */
    unsigned int caller = _mm_getcsr();
    _mm_setcsr(MXCSR_DEFAULT);
    int rc = run_job(job, bad_tile);
    _mm_setcsr(caller);
    return rc;
#else
    return run_job(job, bad_tile);
#endif
}
