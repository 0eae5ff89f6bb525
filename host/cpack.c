/* The C fast path of the DMA-image packer: a counting pass and a filling pass over the source
 * fibertree, split over threads, each thread checksumming the bytes it wrote.
 *
 * Why C: a tile's entries are scattered across the source (a CSR row crosses every column
 * tile), so the numpy reference must sort all entries by tile and build each tile separately.
 * Walking the tree in storage order visits each tile's entries in that tile's own
 * lexicographic order, so every section can be appended in place with per-tile cursors: no
 * sort and no temporary copy of the coordinates. CSR-like trees, the common case, get loops of
 * their own a row band at a time: the AVX-512 and AVX2 compress loops for a few tiles across,
 * else the scatter below, or the run loops (cpack_band.h) for bands of long runs.
 *
 * What the entry points trust. They are reached only through fiberflow.host.images.pack_c.pack_c
 * (from ff.pack), whose tree comes from a Tensor: its constructors check that the arrays have
 * consistent lengths, that every pos array starts at 0, never decreases and ends at its crd
 * array's length, that coordinates are within the level sizes and sorted within each fiber,
 * and ff.pack checks the lengths and pos arrays once more just before packing (a Tensor's
 * arrays are public and may have been replaced). pack_c passes the geometry (sizes, tiles,
 * grid) it made from the same tensor, and the layout arrays dma_image.plan made from
 * ff_count's own counts. Lengths, pos and sortedness are trusted as they are. The coordinates
 * are checked once more, cheaply, by ff_count (the largest of each row band's, or each
 * fiber's, against the level size, a negative one being huge as unsigned): an out-of-range one
 * makes it return FF_BAD_COORD instead of counting, and pack_c raises CoordinateError before
 * ff_fill, which indexes tiles and sections by coordinate, ever runs. ff_fill itself trusts its
 * input to be what ff_count counted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpack.h"
#include "crc32.h"

#include "cthreads.h"

/* The CSR loops' vector levels (FF_SIMD_AVX512, FF_SIMD_AVX2) are compiled for x86-64 with GCC
 * or Clang, each function for its own instruction set; which run is decided at run time. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FF_AVX512 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,popcnt")))
#define AVX2 __attribute__((target("avx2,bmi2,popcnt")))
#endif

#ifdef __SSE2__
#include <emmintrin.h> /* the scatter's non-temporal stores (stream_out) */
#endif

#define MAXD 8

typedef struct {
    const ff_tree *t;
    int fill;                 /* 0: counting pass, 1: filling pass */
    int64_t local[MAXD];      /* tile-local coordinates of the current path */
    int64_t path[MAXD];       /* source positions of the current path */
    int64_t stride[MAXD];     /* row-major strides of the tile grid */
    /* counting pass */
    int64_t *ncrd;
    int64_t *ids, n_ids;      /* the non-empty grid tiles found (a part's from ids[its first]) */
    /* filling pass */
    uint8_t *image;
    const int64_t *slot, *ext, *seg_off, *crd_off, *vals_off, *tile_off, *npos;
    int64_t *last, *cur;
    int64_t n_tiles, header_bytes;
    const int64_t *index;     /* the tiles' grid indices, for their directory entries */
    int64_t dir_offset, dir_entry_bytes;
    int64_t *used;            /* the CSR loops: the current band's non-empty tile columns */
    uint32_t *scratch;        /* the scatter: a chunk's segment entries, step + 1 per tile */
    int64_t *runs;            /* the CSR loops: runs per row band (see ff_count) */
    int simd;                 /* the vector level of the CSR loops: FF_SIMD_NONE .. AVX512 */
    int extents;              /* filling pass: record each tile's level-1 range (ff_fill) */
    int bad;                  /* counting pass: FF_OK, or FF_BAD_COORD */
} walker;

static void walk(walker *w, int k, int64_t parent, int64_t tile, int64_t lo, int64_t hi);
static uint32_t checksum(const walker *w, uint32_t crc, const uint8_t *p, uint64_t n);

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

/* Store n tile-local coordinates src[j] - base at entry `at` of a coordinate section. */
static inline void put_coords(uint8_t *section, int64_t at, int cb, const int32_t *src, int64_t n,
                              int64_t base)
{
    if (cb == 2) {
        uint16_t *dst = (uint16_t *)section + at;
        for (int64_t j = 0; j < n; j++)
            dst[j] = (uint16_t)(src[j] - base);
    } else {
        uint32_t *dst = (uint32_t *)section + at;
        for (int64_t j = 0; j < n; j++)
            dst[j] = (uint32_t)(src[j] - base);
    }
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
    put_coords(w->image + w->crd_off[s], at, t->coord_bytes, crd + q0, n, base);
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

/* The largest of a[0..n) as unsigned (a negative coordinate is huge), a reduction the compiler
 * vectorises; with AVX2 it has an unsigned maximum instruction, which SSE2, the baseline, lacks
 * (its emulation took half the counting pass). */
#define TOP_BODY                                                                                   \
    uint32_t top = 0;                                                                              \
    for (int64_t i = 0; i < n; i++)                                                                \
        top = (uint32_t)a[i] > top ? (uint32_t)a[i] : top;                                         \
    return top;

static uint32_t top_portable(const int32_t *a, int64_t n)
{
    TOP_BODY
}

#ifdef FF_AVX512
static AVX2 uint32_t top_avx2(const int32_t *a, int64_t n)
{
    TOP_BODY
}
#endif

/* Whether all of a[0..n) lie in 0 .. size-1, at the vector level simd. */
static int coords_in(const int32_t *a, int64_t n, int64_t size, int simd)
{
    uint32_t top = 0;
#ifdef FF_AVX512
    if (simd > FF_SIMD_NONE)
        top = top_avx2(a, n);
    else
#endif
        top = top_portable(a, n);
    (void)simd;
    return n == 0 || (int64_t)top < size;
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
        if (!w->fill && !coords_in(crd + lo, hi - lo, t->size[k], w->simd)) {
            w->bad = FF_BAD_COORD;
            return;
        }
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
        if (!w->fill && !coords_in(crd + lo, hi - lo, t->size[k], w->simd)) {
            w->bad = FF_BAD_COORD;
            return;
        }
        for (int64_t q = lo; q < hi && !w->bad; q++) {
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

/* Zero image bytes from p up to absolute offset end: the padding after a section. */
static inline void zero_to(uint8_t *image, uint8_t *p, int64_t end)
{
    if (image + end > p)
        memset(p, 0, (size_t)(image + end - p));
}

/* CSR-like trees (a dense level over a sorted compressed one: "ds", "ds:1,0") are the common case
 * and get loops of their own, a row band (one row tile) at a time, which write exactly what the
 * walk would. A band's tiles are consecutive in the image, as are their sections. */

/* The fill state of one column tile of the current row band. */
typedef struct {
    uint32_t *seg; /* NULL: the tile is empty */
    uint8_t *crd;
    uint32_t *vals;
    int64_t n;    /* entries appended so far */
    int64_t room; /* entries the tile holds in all */
    int64_t done; /* the run loops: segment entries 1 .. done are written */
    uint32_t *out; /* the scatter: the image's segment array, while seg is a scratch chunk */
    uint32_t crc;  /* the scatter: CRC-32 of the tile's bytes final so far */
} band_tile;

/* Zero the padding after a filled tile's sections (slot s, `rows` segment entries + 1). */
static void zero_pads(const walker *w, const band_tile *bt, int64_t s, int64_t rows, int cb)
{
    zero_to(w->image, (uint8_t *)(bt->seg + rows + 1), w->crd_off[s * 2 + 1]);
    zero_to(w->image, bt->crd + (int64_t)cb * bt->n, w->vals_off[s]);
    zero_to(w->image, (uint8_t *)(bt->vals + bt->n), w->tile_off[s + 1]);
}

/* Point the band's tile states at their sections, and list the non-empty tile columns in
 * w->used; return how many there are. The band loops go over that list, not the whole row of
 * tiles: with small tiles a band may have hundreds of columns and only a few non-empty (a banded
 * matrix at 256 x 256: 9 of 782), and a check of every column per chunk of rows cost a tenth of
 * the fill. Only the compress loops look at empty tiles (`every`): for those, a NULL segment, no
 * room, and the image for the other sections, a valid address for masked-off stores. The other
 * loops reach a tile only through its entries, and setting the empty ones' states cost a
 * twentieth of a 256 x 256 pack. */
static int64_t open_band(const walker *w, band_tile *tiles, int64_t rt, int every)
{
    int64_t gc = w->t->grid[1], n_used = 0;
    for (int64_t ct = 0; ct < gc; ct++) {
        int64_t s = w->slot[rt * gc + ct];
        band_tile *bt = &tiles[ct];
        if (s < 0 && !every)
            continue;
        bt->seg = NULL;
        bt->crd = w->image;
        bt->vals = (uint32_t *)w->image;
        bt->n = bt->room = 0;
        bt->done = 0;
        if (s < 0)
            continue;
        w->used[n_used++] = ct;
        bt->seg = (uint32_t *)(w->image + w->seg_off[s * 2 + 1]);
        bt->crd = w->image + w->crd_off[s * 2 + 1];
        bt->vals = (uint32_t *)(w->image + w->vals_off[s]);
        bt->room = w->npos[s * 2 + 1];
        bt->seg[0] = 0;
    }
    return n_used;
}

/* Division by the tile width as a multiply and a shift (Granlund and Montgomery, 1994): exact
 * for every c < 2^31, which every checked coordinate is (level sizes fit in 31 bits), and a few
 * times cheaper than a divide, which would also sit on each entry's path to its store. */
typedef struct {
    uint64_t mul;
    int shift;
} divider;

static divider make_divider(int64_t d)
{
    int l = 0;
    while (((int64_t)1 << l) < d)
        l++;
    divider v;
    v.shift = 31 + l;
    v.mul = (((uint64_t)1 << v.shift) + (uint64_t)d - 1) / (uint64_t)d; /* rounded up */
    return v;
}

static inline uint32_t divide(divider v, uint32_t c)
{
    return (uint32_t)(((uint64_t)c * v.mul) >> v.shift);
}

/* The column of the entry before i in its fiber, which starts at `first`: that of entry i itself
 * for the first (no run starts there). The AVX-512 run loops' vectors compare their first lane
 * with it: read from the coordinates, not from the loop's running state, so that one vector's
 * run starts need not wait for the last one's to be taken (a chain through a store, a reload
 * and a broadcast for every vector). */
static inline uint32_t before(divider dv, const int32_t *crd, int64_t i, int64_t first)
{
    return divide(dv, (uint32_t)crd[i - (i > first)]);
}

/* How far ahead of a tile's cursor (in entries) the run loops ask for its sections' lines. */
#define RUN_AHEAD 32

/* Rows a scatter chunk spans: few enough that the chunk's segment entries of all the band's
 * tiles (gc * rows * 4 bytes, here at most 512 KiB) stay in the core's L2 cache between the
 * zeroing, the scatter and the scan, as many as that allows (each chunk costs a call per tile),
 * and at least one cache line of each tile's segment array. */
static int64_t chunk_rows(int64_t gc)
{
    int64_t r = ((int64_t)1 << 17) / (gc > 0 ? gc : 1);
    return r < 16 ? 16 : r & ~(int64_t)15;
}

/* Segment entries a+1 .. b of one tile hold, for each row, the tile's running entry count after
 * that row if the row had entries there, else 0; make every one the running count. Running
 * counts grow with the row, so that is a running maximum from entry a (already final). */
static void running_max(uint32_t *seg, int64_t a, int64_t b)
{
    uint32_t m = seg[a];
    for (int64_t i = a + 1; i <= b; i++) {
        m = seg[i] > m ? seg[i] : m;
        seg[i] = m;
    }
}

#ifdef FF_AVX512
/* The same 16 entries at a time: a prefix maximum within the vector in four shift-and-max
 * steps, then the maximum with the previous vector's last lane. The scalar loop's compare and
 * select per entry, each waiting on the last, took as long as the scatter itself with many tile
 * columns (thousands of segment entries per tile and band, a few tens of entries). */
static AVX512 void running_max_avx512(uint32_t *seg, int64_t a, int64_t b)
{
    __m512i carry = _mm512_set1_epi32((int32_t)seg[a]), zero = _mm512_setzero_si512();
    for (int64_t i = a + 1; i <= b; i += 16) {
        int64_t left = b + 1 - i;
        __mmask16 m = (__mmask16)(left < 16 ? (1u << left) - 1u : 0xffffu);
        __m512i x = _mm512_maskz_loadu_epi32(m, seg + i);
        x = _mm512_max_epu32(x, _mm512_alignr_epi32(x, zero, 15));
        x = _mm512_max_epu32(x, _mm512_alignr_epi32(x, zero, 14));
        x = _mm512_max_epu32(x, _mm512_alignr_epi32(x, zero, 12));
        x = _mm512_max_epu32(x, _mm512_alignr_epi32(x, zero, 8));
        x = _mm512_max_epu32(x, carry);
        _mm512_mask_storeu_epi32(seg + i, m, x);
        carry = _mm512_permutexvar_epi32(_mm512_set1_epi32(15), x);
    }
}

/* As running_max_avx512, 8 entries at a time: the prefix within each 128-bit half, then the
 * low half's last lane into the high half. */
static AVX2 void running_max_avx2(uint32_t *seg, int64_t a, int64_t b)
{
    __m256i carry = _mm256_set1_epi32((int32_t)seg[a]);
    int64_t i = a + 1;
    for (; i + 8 <= b + 1; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(seg + i));
        x = _mm256_max_epu32(x, _mm256_slli_si256(x, 4));
        x = _mm256_max_epu32(x, _mm256_slli_si256(x, 8));
        __m256i low3 = _mm256_shuffle_epi32(x, 0xff);
        x = _mm256_max_epu32(x, _mm256_permute2x128_si256(low3, low3, 0x08));
        x = _mm256_max_epu32(x, carry);
        _mm256_storeu_si256((__m256i *)(seg + i), x);
        carry = _mm256_permutevar8x32_epi32(x, _mm256_set1_epi32(7));
    }
    running_max(seg, i - 1, b); /* the last few; seg[i - 1] is final */
}
#endif

/* The scatter of rows a .. b-1 of a band: each entry straight to its tile's cursor, its row's
 * segment entry (seg[1] is row a's) set to the tile's count so far. No run finding: there is no
 * chain of dependent loads, compares and divides from one run to the next, the cost of the run
 * loops this replaces when runs are short (many tile columns, a few entries per row in each).
 * CB, the coordinate width, is a constant in each instance. */
static inline __attribute__((always_inline)) void scatter_rows(band_tile *tiles,
                                                               const int64_t *pos,
                                                               const int32_t *crd,
                                                               const uint32_t *vals, int64_t a,
                                                               int64_t b, divider dv, uint32_t tc,
                                                               const int CB)
{
    for (int64_t lr = a; lr < b; lr++) {
        for (int64_t q = pos[lr], end = pos[lr + 1]; q < end; q++) {
            uint32_t c = (uint32_t)crd[q], ct = divide(dv, c);
            band_tile *bt = &tiles[ct];
            int64_t k = bt->n++;
            /* Each tile's sections are written a few bytes at a time, one tile after another at
             * random: too many streams for the hardware prefetchers to follow, so every new
             * line would stall the stores until it arrives. Asking for it 32 entries ahead
             * took 20-40% off the fill with tens of tiles across (past a section's end the
             * prefetch is of the next bytes of the image, harmless). */
            __builtin_prefetch(bt->vals + k + 32, 1, 3);
            __builtin_prefetch(bt->crd + CB * (k + 32), 1, 3);
            bt->vals[k] = vals[q];
            if (CB == 2)
                ((uint16_t *)bt->crd)[k] = (uint16_t)(c - ct * tc);
            else
                ((uint32_t *)bt->crd)[k] = c - ct * tc;
            bt->seg[lr - a + 1] = (uint32_t)(k + 1);
        }
    }
}

/* Bands with more segment bytes than this build them in a scratch buffer (fill_band_scatter). */
#define SCRATCH_BYTES ((int64_t)1 << 20)

/* Segment entries src[0 .. n-1] to dst by non-temporal stores, where the CPU has them: the
 * lines go to memory without first being read from it, the read an ordinary store to a line
 * not in cache makes. */
static void stream_out(uint32_t *dst, const uint32_t *src, int64_t n)
{
#ifdef __SSE2__
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++)
        _mm_stream_si32((int *)(dst + i), (int)src[i]);
    for (; i + 4 <= n; i += 4)
        _mm_stream_si128((__m128i *)(dst + i), _mm_loadu_si128((const __m128i *)(src + i)));
    for (; i < n; i++)
        _mm_stream_si32((int *)(dst + i), (int)src[i]);
#else
    memcpy(dst, src, sizeof(uint32_t) * (size_t)n);
#endif
}

/* Any tile width, any number of tile columns, any vector level: the band a chunk of rows at a
 * time (clear the chunk's segment entries, scatter, running maximum), then the padding; returns
 * `crc` (the CRC-32 of the part's bytes before the band) continued over the band's tiles, their
 * headers already written.
 *
 * Bands whose segment arrays outgrow the caches (tall tiles, many of them across: at 8192 x
 * 1000 and 4M nonzeros the segment arrays are 164 of the image's 184 MB) build each chunk's
 * entries in w->scratch, which stays in the core's L2 cache: there they are cleared, scattered
 * into, scanned and checksummed, and then streamed to the image (stream_out). In place, every
 * segment line is read from memory before it is written, and read again by the band's
 * checksum. Each tile's CRC runs along as its bytes become final, and the tiles' CRCs are
 * combined. Paired runs, medians, random and power-law rows: with the CRC by PCLMULQDQ or
 * tables the scratch takes 0.83-0.91x the in-place time (8192 x 1000, 16384 x 2000, 4096 x
 * 500, 2048 x 256); with VPCLMULQDQ (the AVX-512 level) the band's read-back is cheap and the
 * per-tile calls and CRC combines are not: 1.00-1.08x at 8192 x 1000, 1.16-1.28x with
 * hundreds of tiles across, so that level stays in place. So do smaller bands (256 x 256
 * tiles: 1.5x the time). */
static uint32_t fill_band_scatter(const walker *w, band_tile *tiles, int64_t n_used, int64_t rt,
                                  int64_t r0, int64_t rows, uint32_t crc)
{
    const ff_tree *t = w->t;
    int64_t gc = t->grid[1], step = chunk_rows(gc);
    const int64_t *pos = t->pos[1] + r0;
    divider dv = make_divider(t->tile[1]);
    uint32_t tc = (uint32_t)t->tile[1];
    void (*scan)(uint32_t *, int64_t, int64_t) = running_max;
#ifdef FF_AVX512
    scan = w->simd == FF_SIMD_AVX512 ? running_max_avx512
           : w->simd == FF_SIMD_AVX2 ? running_max_avx2
                                     : running_max;
#endif
    const int64_t *used = w->used;
    int scratch = w->simd != FF_SIMD_AVX512 && n_used * rows * 4 > SCRATCH_BYTES;
    for (int64_t u = 0; u < n_used; u++) {
        band_tile *bt = &tiles[used[u]];
        bt->out = bt->seg; /* open_band set seg[0] */
        if (scratch) {
            uint8_t *start = w->image + w->tile_off[w->slot[rt * gc + used[u]]];
            bt->crc = checksum(w, 0, start, (uint64_t)((uint8_t *)(bt->out + 1) - start));
            bt->seg = w->scratch + u * (step + 1);
            bt->seg[0] = 0; /* the running count before the chunk */
        }
    }
    for (int64_t a = 0; a < rows; a += step) {
        int64_t b = a + step < rows ? a + step : rows;
        for (int64_t u = 0; u < n_used; u++) { /* seg[1] is row a's entry */
            band_tile *bt = &tiles[used[u]];
            if (!scratch)
                bt->seg = bt->out + a;
            memset(bt->seg + 1, 0, (size_t)(b - a) * 4);
        }
        if (t->coord_bytes == 2)
            scatter_rows(tiles, pos, t->crd[1], t->vals, a, b, dv, tc, 2);
        else
            scatter_rows(tiles, pos, t->crd[1], t->vals, a, b, dv, tc, 4);
        for (int64_t u = 0; u < n_used; u++) {
            band_tile *bt = &tiles[used[u]];
            scan(bt->seg, 0, b - a);
            if (scratch) {
                bt->crc = checksum(w, bt->crc, (const uint8_t *)(bt->seg + 1), (uint64_t)(b - a) * 4);
                stream_out(bt->out + a + 1, bt->seg + 1, b - a);
                bt->seg[0] = bt->seg[b - a];
            }
        }
    }
#ifdef __SSE2__
    if (scratch)
        _mm_sfence(); /* the streamed lines before anything after the pack reads them */
#endif
    for (int64_t u = 0; u < n_used; u++) {
        band_tile *bt = &tiles[used[u]];
        int64_t s = w->slot[rt * gc + used[u]];
        bt->seg = bt->out;
        zero_pads(w, bt, s, rows, t->coord_bytes);
        if (scratch) {
            const uint8_t *from = (const uint8_t *)(bt->out + rows + 1);
            bt->crc = checksum(w, bt->crc, from, (uint64_t)(w->image + w->tile_off[s + 1] - from));
            crc = ff_crc32_combine(crc, bt->crc, (uint64_t)(w->tile_off[s + 1] - w->tile_off[s]));
        }
    }
    if (scratch)
        return crc;
    int64_t s0 = w->slot[rt * gc + used[0]], s1 = w->slot[rt * gc + used[n_used - 1]] + 1;
    return checksum(w, crc, w->image + w->tile_off[s0],
                    (uint64_t)(w->tile_off[s1] - w->tile_off[s0]));
}

/* Entries q .. end - 1 (coordinates checked) into tallies t[0..3][tile], 4 interleaved so that
 * consecutive entries of one tile do not wait on each other's increments. */
static inline void tally_entries(const int32_t *crd, int64_t q, int64_t end, divider dv,
                                 int64_t *const t[4])
{
    for (; q + 4 <= end; q += 4) {
        t[0][divide(dv, (uint32_t)crd[q])]++;
        t[1][divide(dv, (uint32_t)crd[q + 1])]++;
        t[2][divide(dv, (uint32_t)crd[q + 2])]++;
        t[3][divide(dv, (uint32_t)crd[q + 3])]++;
    }
    for (; q < end; q++)
        t[0][divide(dv, (uint32_t)crd[q])]++;
}

/* The runs (stretches in one tile) of a row's entries q .. end - 1. */
static int64_t row_runs(const int32_t *crd, int64_t q, int64_t end, divider dv)
{
    int64_t runs = 0;
    for (uint32_t prev = UINT32_MAX; q < end; q++) {
        uint32_t ct = divide(dv, (uint32_t)crd[q]);
        runs += ct != prev;
        prev = ct;
    }
    return runs;
}

/* A vector loop that tallies entries q .. end - 1 into t[tile] a run (a stretch in one tile
 * column) at a time and returns how many runs it found: TALLY_FN in cpack_band.h. */
typedef int64_t (*runs_fn)(const int32_t *, int64_t, int64_t, divider, int64_t *);

/* Count the entries of a band's `rows` rows (coordinates checked) by tile column into
 * ncrd[ct * 2] for the columns the band reaches (the others are left as they are), list the
 * non-empty ones (grid tiles g0 + ct) in w->ids, and return the band's runs
 * (stretches of a row in one tile) for long_runs if `runs` is set, else 0. With a run tally
 * (`by_runs`, at a vector level), those are counted exactly, as the tally goes; without, they
 * are four times those of every fourth row (a compare per entry cost the count of a random
 * matrix a third more; rows, unlike pairs of entries, are not thrown off by rows of equal
 * lengths). A pass over the rows' first and last entries bounds the columns the band reaches:
 * the tallies are cleared and summed over those only (a band of a banded matrix at 256 x 256
 * reaches 30 of 782: clearing and summing all took longer than counting its entries). */
static int64_t count_scatter(const int64_t *pos, int64_t rows, const int32_t *crd, divider dv,
                             int64_t gc, int64_t *tally, int64_t *ncrd, int runs, runs_fn by_runs,
                             walker *w, int64_t g0)
{
    if (!runs)
        by_runs = NULL;
    int64_t lo = gc, hi = -1, sampled = 0;
    int pass = runs || gc > 64; /* else the pass over the rows would cost more than it saves */
    if (!pass) {
        lo = 0;
        hi = pos[rows] > pos[0] ? gc - 1 : -1;
    }
    for (int64_t r = 0; r < rows && pass; r++) {
        if (pos[r] == pos[r + 1])
            continue;
        int64_t a = divide(dv, (uint32_t)crd[pos[r]]);
        int64_t b = divide(dv, (uint32_t)crd[pos[r + 1] - 1]);
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
        if (runs && !by_runs && r % 4 == 0)
            sampled += a == b ? 1 : row_runs(crd, pos[r], pos[r + 1], dv);
    }
    if (hi < lo)
        return 0;
    int64_t span = hi - lo + 1;
    int64_t *const t[4] = {tally - lo, tally + span - lo, tally + 2 * span - lo,
                           tally + 3 * span - lo};
    memset(tally, 0, sizeof(int64_t) * 4 * (size_t)span);
    if (by_runs)
        sampled = by_runs(crd, pos[0], pos[rows], dv, t[0]);
    else
        tally_entries(crd, pos[0], pos[rows], dv, t);
    for (int64_t ct = lo; ct <= hi; ct++) {
        ncrd[ct * 2] = t[0][ct] + t[1][ct] + t[2][ct] + t[3][ct];
        if (ncrd[ct * 2])
            w->ids[w->n_ids++] = g0 + ct;
    }
    return by_runs ? sampled : runs ? 4 * sampled : 0;
}

#ifdef FF_AVX512

/* Bands with few column tiles (the usual shape: a row tile across a handful of wide tiles) skip
 * per-entry tile lookups altogether: 16 entries at a time, each tile's share is picked out with
 * a compare against its bounds and a compress, wherever the rows begin and end. The segment
 * entries come from a second, per-row sweep over the band's coordinates, still in cache.
 * The work per entry grows with the tiles across, the scatter's does not: measured on random
 * and banded 4M-entry matrices, 2048-row bands, one thread, the AVX-512 loop is the faster up
 * to 6 tiles across (at 8 about even, at 16 1.4x to 2x slower), the AVX2 one up to 4 (at 8
 * 1.5x to 1.9x slower). */
#define FEW_TILES 6
#define FEW_TILES_AVX2 4

/* CALL(n) for n = gc, 1 <= gc <= FEW_TILES: instances with the tile count a constant, so loops
 * over the tiles unroll and their per-tile state lives in registers. */
#define GC_SWITCH(gc, CALL)                                                                        \
    switch (gc) {                                                                                  \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;                        \
    case 4: CALL(4); break; case 5: CALL(5); break; case 6: CALL(6); break;                        \
    }

/* lim[ct] = ct * tc for ct = 0 .. gc: where each tile column starts (and the last one ends). */
static void tile_limits(int64_t tc, int64_t gc, int32_t *lim)
{
    for (int64_t ct = 0; ct <= gc; ct++)
        lim[ct] = ct * tc > INT32_MAX ? INT32_MAX : (int32_t)(ct * tc);
}

/* 16 entries per step with masked loads and stores: no scalar tail. */
static inline AVX512 __mmask16 first_mask(int64_t left)
{
    uint32_t k = left < 16 ? (uint32_t)left : 16u; /* a conditional move, not a branch */
    return (__mmask16)((1u << k) - 1u);
}

/* 16 coordinates narrowed to 16 bits, kept in a register: fused into a masked store to memory
 * (vpmovdw m256{k}) the narrowing is several times slower on some CPUs. */
static inline AVX512 __m256i narrow16(__m512i c)
{
    __m256i narrow = _mm512_cvtepi32_epi16(c);
    __asm__("" : "+v"(narrow));
    return narrow;
}

/* The run loop's primitives with AVX-512: 16 entries per step with masked loads and stores, so
 * a whole run usually takes one step, with no scalar tail and no branch on its length. */
/* The tile columns of entries i .. i + 15 (those below end; the lanes past it hold 0) into
 * lane[], by the divider's multiply and shift on the even and odd lanes, and the lanes where a
 * run (a stretch in one tile column) starts: whose column differs from the lane before's, lane
 * 0's from prev. Finding runs from whole vectors of columns keeps the loops free of the chain a
 * run at a time would make (the column of the run's first entry, then a search for its end,
 * then the next run's first entry). */
static inline AVX512 unsigned run_starts_avx512(const int32_t *crd, int64_t i, int64_t end,
                                                divider dv, uint32_t prev, uint32_t *lane)
{
    __mmask16 m = first_mask(end - i);
    __m512i c = _mm512_maskz_loadu_epi32(m, crd + i), mul = _mm512_set1_epi64((int64_t)dv.mul);
    __m128i shift = _mm_cvtsi32_si128(dv.shift);
    __m512i even = _mm512_srl_epi64(_mm512_mul_epu32(c, mul), shift);
    __m512i odd = _mm512_srl_epi64(_mm512_mul_epu32(_mm512_srli_epi64(c, 32), mul), shift);
    __m512i ct = _mm512_or_si512(even, _mm512_slli_epi64(odd, 32));
    _mm512_storeu_si512(lane, ct);
    __m512i before = _mm512_alignr_epi32(ct, _mm512_set1_epi32((int32_t)prev), 15);
    return _mm512_mask_cmpneq_epi32_mask(m, ct, before);
}

static inline AVX512 void copy_run_avx512(band_tile *bt, int cb, const int32_t *src,
                                          const uint32_t *vals, int64_t n, int64_t base,
                                          int64_t readable)
{
    (void)readable; /* masked loads: nothing is read past the run */
    __m512i b = _mm512_set1_epi32((int32_t)base);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = first_mask(n - j);
        _mm512_mask_storeu_epi32(bt->vals + bt->n + j, m, _mm512_maskz_loadu_epi32(m, vals + j));
        __m512i c = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, src + j), b);
        if (cb == 2)
            _mm256_mask_storeu_epi16((uint16_t *)bt->crd + bt->n + j, m, narrow16(c));
        else
            _mm512_mask_storeu_epi32((uint32_t *)bt->crd + bt->n + j, m, c);
    }
}

#define BAND_FN fill_band_runs_avx512
#define TALLY_FN tally_runs_avx512
#define BAND_ATTR AVX512
#define LANES 16
#define STEP_VECS 1
#define RUN_STARTS(crd, i, end, first, total, dv, prev, lane)                                      \
    ((void)(prev), run_starts_avx512(crd, i, end, dv, before(dv, crd, i, first), lane))
#define COPY_RUN copy_run_avx512
#include "cpack_band.h"
#undef BAND_FN
#undef TALLY_FN
#undef BAND_ATTR
#undef LANES
#undef STEP_VECS
#undef RUN_STARTS
#undef COPY_RUN


/* The lanes of m at or above the start of tile column ct; none for ct = GC. A tile's entries
 * are then above_(ct) & ~above_(ct+1): one compare per tile. (Tile 0 takes every lane below
 * tile 1: coordinates are checked, in the counting pass, to be at least 0.) */
static inline __attribute__((always_inline)) AVX512 __mmask16 above(__mmask16 m, __m512i c,
                                                                    const int32_t *lim, int ct,
                                                                    const int GC)
{
    if (ct == 0)
        return m;
    if (ct == GC)
        return 0;
    return _mm512_mask_cmpge_epi32_mask(m, c, _mm512_set1_epi32(lim[ct]));
}

/* A tile's share (mask k) of 16 entries, local coordinates `local`, appended at entry bt->n of
 * its sections, which hold `room` entries in all: full-width stores while at least 16 entries of
 * room are left (what they write past the share lies in the same section and is overwritten by
 * the next shares), masked ones after. */
static inline AVX512 void append(band_tile *bt, int cb, int64_t room, __mmask16 k, __m512i local,
                                 __m512i v)
{
    int got = __builtin_popcount(k);
    local = _mm512_maskz_compress_epi32(k, local);
    v = _mm512_maskz_compress_epi32(k, v);
    uint16_t *c16 = (uint16_t *)bt->crd + bt->n;
    uint32_t *c32 = (uint32_t *)bt->crd + bt->n;
    __m256i narrow = narrow16(local);
    if (bt->n + 16 <= room) {
        _mm512_storeu_si512(bt->vals + bt->n, v);
        if (cb == 2)
            _mm256_storeu_si256((__m256i *)c16, narrow);
        else
            _mm512_storeu_si512(c32, local);
    } else {
        __mmask16 out = (__mmask16)((1u << got) - 1u);
        _mm512_mask_storeu_epi32(bt->vals + bt->n, out, v);
        if (cb == 2)
            _mm256_mask_storeu_epi16(c16, out, narrow);
        else
            _mm512_mask_storeu_epi32(c32, out, local);
    }
    bt->n += got;
}

/* Segment entries of a band, row by row: running counts of each tile's entries. GC is a
 * constant in each instance (see chunks), so the counts live in registers. */
static inline __attribute__((always_inline)) AVX512 void seg_rows_n(
    band_tile *tiles, const int64_t *pos, const int32_t *crd, int64_t rows, const int32_t *lim,
    const int GC)
{
    int64_t sum[FEW_TILES] = {0};
    for (int64_t lr = 0; lr < rows; lr++) {
        for (int64_t q = pos[lr], end = pos[lr + 1]; q < end; q += 16) {
            __mmask16 m = first_mask(end - q);
            __m512i c = _mm512_maskz_loadu_epi32(m, crd + q);
            __mmask16 from = m;
            for (int ct = 0; ct < GC; ct++) {
                __mmask16 next = above(m, c, lim, ct + 1, GC);
                sum[ct] += __builtin_popcount(from & ~next);
                from = next;
            }
        }
        for (int ct = 0; ct < GC; ct++)
            if (tiles[ct].seg)
                tiles[ct].seg[lr + 1] = (uint32_t)sum[ct];
    }
}

/* All of a band's tiles in one sweep, GC a constant (see chunks): each 16 entries are loaded
 * once, and the tiles' cursors stay in registers. */
static inline __attribute__((always_inline)) AVX512 void sweep_n(
    band_tile *tiles, const int64_t *room, const int32_t *crd, const uint32_t *vals, int64_t q,
    int64_t end, const int32_t *lim, int cb, const int GC)
{
    band_tile t[FEW_TILES];
    for (int ct = 0; ct < GC; ct++)
        t[ct] = tiles[ct];
    for (; q < end; q += 16) {
        __mmask16 m = first_mask(end - q);
        __m512i c = _mm512_maskz_loadu_epi32(m, crd + q), v = _mm512_maskz_loadu_epi32(m, vals + q);
        __mmask16 from = m;
        for (int ct = 0; ct < GC; ct++) {
            __mmask16 next = above(m, c, lim, ct + 1, GC);
            append(&t[ct], cb, room[ct], (__mmask16)(from & ~next),
                   _mm512_sub_epi32(c, _mm512_set1_epi32(lim[ct])), v);
            from = next;
        }
    }
    for (int ct = 0; ct < GC; ct++)
        tiles[ct].n = t[ct].n;
}

/* The band's entries, then its segment entries, by the instance for its tile count. */
static AVX512 void chunks(band_tile *tiles, const int64_t *room, const int64_t *pos,
                          const int32_t *crd, const uint32_t *vals, int64_t rows,
                          const int32_t *lim, int cb, int64_t gc)
{
#define BAND(n)                                                                                    \
    do {                                                                                           \
        sweep_n(tiles, room, crd, vals, pos[0], pos[rows], lim, cb, n);                            \
        seg_rows_n(tiles, pos, crd, rows, lim, n);                                                 \
    } while (0)
    GC_SWITCH(gc, BAND)
#undef BAND
}

/* How many of a band's n coordinates fall in each of GC column tiles; returns the largest
 * coordinate, as unsigned, for the bounds check (the count of an out-of-bounds band is not
 * used). */
static inline __attribute__((always_inline)) AVX512 uint32_t count_chunks_n(
    const int32_t *crd, int64_t n, const int32_t *lim, int64_t *count, const int GC)
{
    int64_t sum[FEW_TILES] = {0};
    __m512i top = _mm512_setzero_si512();
    for (int64_t q = 0; q < n; q += 16) {
        __mmask16 m = first_mask(n - q);
        __m512i c = _mm512_maskz_loadu_epi32(m, crd + q);
        top = _mm512_max_epu32(top, c);
        __mmask16 from = m;
        for (int ct = 0; ct < GC; ct++) {
            __mmask16 next = above(m, c, lim, ct + 1, GC);
            sum[ct] += __builtin_popcount(from & ~next);
            from = next;
        }
    }
    for (int ct = 0; ct < GC; ct++)
        count[ct] = sum[ct];
    return _mm512_reduce_max_epu32(top);
}

static AVX512 uint32_t count_band_chunks(const int32_t *crd, int64_t n, const int32_t *lim,
                                         int64_t gc, int64_t *count)
{
    uint32_t top = 0;
#define COUNT(k) top = count_chunks_n(crd, n, lim, count, k)
    GC_SWITCH(gc, COUNT)
#undef COUNT
    return top;
}

/* The same compress loop and band count for CPUs with AVX2 but not AVX-512, 8 entries at a time.
 * AVX2 has no compress instruction: a tile's share of 8 entries (an 8-bit match mask) is
 * gathered to the front by a lane permutation looked up by that mask. */

/* perm8[m]: the lanes set in m, in order, then lane 0 repeated (those lanes are not kept);
 * shuf16[m]: the same as a byte shuffle of 8 16-bit lanes. Built at load time, like the CRC
 * tables, so no call ever sees them half written. */
static uint32_t perm8[256][8] __attribute__((aligned(32)));
static uint8_t shuf16[256][16] __attribute__((aligned(16)));

__attribute__((constructor)) static void init_perm8(void)
{
    for (int m = 0; m < 256; m++) {
        int n = 0;
        for (int lane = 0; lane < 8; lane++)
            if (m >> lane & 1)
                perm8[m][n++] = (uint32_t)lane;
        for (; n < 8; n++)
            perm8[m][n] = 0;
        for (int j = 0; j < 8; j++) {
            shuf16[m][2 * j] = (uint8_t)(2 * perm8[m][j]);
            shuf16[m][2 * j + 1] = (uint8_t)(2 * perm8[m][j] + 1);
        }
    }
}

/* All-ones in the first `left` lanes (left may exceed 8). */
static inline AVX2 __m256i lanes_below(int64_t left)
{
    int32_t k = left < 8 ? (int32_t)left : 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* As above, for 8 lanes (all of them: the caller masks): a bit per lane at or above lim[ct]. */
static inline __attribute__((always_inline)) AVX2 unsigned above8(__m256i c, const int32_t *lim,
                                                                 int ct, const int GC)
{
    if (ct == 0)
        return 0xffu;
    if (ct == GC)
        return 0;
    return (unsigned)_mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(c, _mm256_set1_epi32(lim[ct] - 1))));
}

/* As append, for 8 entries, whose coordinates are c; base is the tile's start. With 16-bit
 * coordinates, c16 holds their low halves: a local coordinate is below 65536, so it is the
 * difference of the low halves modulo 2^16, one subtraction after the shuffle. The
 * full-width stores are safe while 8 entries of room are left, by the same argument; after
 * that, masked stores, or a short copy for 16-bit coordinates (AVX2 has no 16-bit masked
 * store). */
static inline AVX2 void append8(band_tile *bt, int cb, int64_t room, unsigned m, __m256i c,
                                __m128i c16, int32_t base, __m256i v)
{
    int got = __builtin_popcount(m);
    __m256i idx = _mm256_load_si256((const __m256i *)perm8[m]);
    v = _mm256_permutevar8x32_epi32(v, idx);
    uint16_t *d16 = (uint16_t *)bt->crd + bt->n;
    uint32_t *d32 = (uint32_t *)bt->crd + bt->n;
    if (cb == 2) {
        __m128i l = _mm_sub_epi16(_mm_shuffle_epi8(c16, _mm_load_si128((const __m128i *)shuf16[m])),
                                  _mm_set1_epi16((short)base));
        if (bt->n + 8 <= room) {
            _mm256_storeu_si256((__m256i *)(bt->vals + bt->n), v);
            _mm_storeu_si128((__m128i *)d16, l);
        } else {
            _mm256_maskstore_epi32((int *)(bt->vals + bt->n), lanes_below(got), v);
            uint16_t tmp[8];
            _mm_storeu_si128((__m128i *)tmp, l);
            for (int j = 0; j < got; j++)
                d16[j] = tmp[j];
        }
    } else {
        __m256i l = _mm256_sub_epi32(_mm256_permutevar8x32_epi32(c, idx), _mm256_set1_epi32(base));
        if (bt->n + 8 <= room) {
            _mm256_storeu_si256((__m256i *)(bt->vals + bt->n), v);
            _mm256_storeu_si256((__m256i *)d32, l);
        } else {
            __m256i out = lanes_below(got);
            _mm256_maskstore_epi32((int *)(bt->vals + bt->n), out, v);
            _mm256_maskstore_epi32((int *)d32, out, l);
        }
    }
    bt->n += got;
}

/* 8 entries (those in `valid`) into their tiles. The low halves of the coordinates are packed
 * once here for all the tiles. */
static inline __attribute__((always_inline)) AVX2 void step8_n(
    band_tile *t, const int64_t *room, __m256i c, __m256i v, unsigned valid, const int32_t *lim,
    int cb, const int GC)
{
    __m128i c16 = _mm_setzero_si128();
    if (cb == 2) {
        __m256i low = _mm256_and_si256(c, _mm256_set1_epi32(0xffff));
        c16 = _mm_packus_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1));
    }
    unsigned from = valid;
    for (int ct = 0; ct < GC; ct++) {
        unsigned next = above8(c, lim, ct + 1, GC) & valid;
        append8(&t[ct], cb, room[ct], from & ~next, c, c16, lim[ct], v);
        from = next;
    }
}

static inline __attribute__((always_inline)) AVX2 void sweep8_n(
    band_tile *tiles, const int64_t *room, const int32_t *crd, const uint32_t *vals, int64_t q,
    int64_t end, const int32_t *lim, int cb, const int GC)
{
    band_tile t[FEW_TILES];
    for (int ct = 0; ct < GC; ct++)
        t[ct] = tiles[ct];
    for (; q + 8 <= end; q += 8)
        step8_n(t, room, _mm256_loadu_si256((const __m256i *)(crd + q)),
                _mm256_loadu_si256((const __m256i *)(vals + q)), 0xffu, lim, cb, GC);
    if (q < end) { /* the band's last entries: masked loads, not past the arrays' ends */
        __m256i in = lanes_below(end - q);
        step8_n(t, room, _mm256_maskload_epi32(crd + q, in),
                _mm256_maskload_epi32((const int *)(vals + q), in), (1u << (end - q)) - 1u, lim,
                cb, GC);
    }
    for (int ct = 0; ct < GC; ct++)
        tiles[ct].n = t[ct].n;
}

/* As seg_rows_n, 8 entries at a time. Loads stop at the row's end (a masked load for its last
 * entries), as the row may end the coordinate array. */
static inline __attribute__((always_inline)) AVX2 void seg_rows8_n(
    band_tile *tiles, const int64_t *pos, const int32_t *crd, int64_t rows, const int32_t *lim,
    const int GC)
{
    int64_t sum[FEW_TILES] = {0};
    for (int64_t lr = 0; lr < rows; lr++) {
        for (int64_t q = pos[lr], end = pos[lr + 1]; q < end; q += 8) {
            __m256i c;
            unsigned valid = 0xffu;
            if (end - q >= 8) {
                c = _mm256_loadu_si256((const __m256i *)(crd + q));
            } else {
                c = _mm256_maskload_epi32(crd + q, lanes_below(end - q));
                valid = (1u << (end - q)) - 1u;
            }
            unsigned from = valid;
            for (int ct = 0; ct < GC; ct++) {
                unsigned next = above8(c, lim, ct + 1, GC) & valid;
                sum[ct] += __builtin_popcount(from & ~next);
                from = next;
            }
        }
        for (int ct = 0; ct < GC; ct++)
            if (tiles[ct].seg)
                tiles[ct].seg[lr + 1] = (uint32_t)sum[ct];
    }
}

static AVX2 void chunks8(band_tile *tiles, const int64_t *room, const int64_t *pos,
                         const int32_t *crd, const uint32_t *vals, int64_t rows,
                         const int32_t *lim, int cb, int64_t gc)
{
#define BAND(n)                                                                                    \
    do {                                                                                           \
        sweep8_n(tiles, room, crd, vals, pos[0], pos[rows], lim, cb, n);                           \
        seg_rows8_n(tiles, pos, crd, rows, lim, n);                                                \
    } while (0)
    GC_SWITCH(gc, BAND)
#undef BAND
}

/* As count_chunks_n: per lane, how many coordinates lie at or above each tile's start (a compare
 * and a subtract per tile), summed across lanes once per block of entries, before any lane
 * could overflow; a tile's count is the difference of its start's and the next one's. */
static inline __attribute__((always_inline)) AVX2 uint32_t count_chunks8_n(
    const int32_t *crd, int64_t n, const int32_t *lim, int64_t *count, const int GC)
{
    int64_t from[FEW_TILES + 1] = {0};
    __m256i top = _mm256_setzero_si256();
    from[0] = n;
    for (int64_t b = 0; b < n; b += (int64_t)1 << 30) {
        int64_t e = n - b < ((int64_t)1 << 30) ? n : b + ((int64_t)1 << 30);
        __m256i acc[FEW_TILES];
        for (int ct = 1; ct < GC; ct++)
            acc[ct] = _mm256_setzero_si256();
        int64_t q = b;
        for (; q + 8 <= e; q += 8) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(crd + q));
            top = _mm256_max_epu32(top, c);
            for (int ct = 1; ct < GC; ct++)
                acc[ct] = _mm256_sub_epi32(
                    acc[ct], _mm256_cmpgt_epi32(c, _mm256_set1_epi32(lim[ct] - 1)));
        }
        if (q < e) { /* masked-off lanes load as 0, below every tile's start but the first */
            __m256i c = _mm256_maskload_epi32(crd + q, lanes_below(e - q));
            top = _mm256_max_epu32(top, c);
            for (int ct = 1; ct < GC; ct++)
                acc[ct] = _mm256_sub_epi32(
                    acc[ct], _mm256_cmpgt_epi32(c, _mm256_set1_epi32(lim[ct] - 1)));
        }
        for (int ct = 1; ct < GC; ct++) {
            uint32_t lane[8];
            _mm256_storeu_si256((__m256i *)lane, acc[ct]);
            for (int j = 0; j < 8; j++)
                from[ct] += lane[j];
        }
    }
    for (int ct = 0; ct < GC; ct++)
        count[ct] = from[ct] - from[ct + 1];
    uint32_t lane[8], m = 0;
    _mm256_storeu_si256((__m256i *)lane, top);
    for (int j = 0; j < 8; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

static AVX2 uint32_t count_band_chunks8(const int32_t *crd, int64_t n, const int32_t *lim,
                                        int64_t gc, int64_t *count)
{
    uint32_t top = 0;
#define COUNT(k) top = count_chunks8_n(crd, n, lim, count, k)
    GC_SWITCH(gc, COUNT)
#undef COUNT
    return top;
}

/* The run loop's primitives with AVX2, 8 entries per step. Loads are whole vectors while they
 * lie in the arrays, else masked at the fiber's (or run's) end. */
/* As run_starts_avx512, for entries i .. i + 7 of a fiber that starts at `first`, entries
 * below `total` lying in the arrays, prev the column of entry i - 1 (if i > first). While
 * whole vectors lie in the arrays, which is nearly always, the loads are plain ones, not masked
 * at the fiber's end (the lanes past it are masked off in the result). A power-of-two tile
 * width (the usual tiles) is a shift, not the divider's multiplies, cheap enough to take each
 * lane's predecessor's column from the coordinates one entry back; other widths take lane 0's
 * from prev (a scalar divide per vector instead, as AVX-512 has it, took 1.06-1.09x the time
 * at 408 x 8000 in paired runs on a loaded machine). */
static inline AVX2 unsigned run_starts_avx2(const int32_t *crd, int64_t i, int64_t end,
                                            int64_t first, int64_t total, divider dv,
                                            uint32_t prev, uint32_t *lane)
{
    int64_t left = end - i;
    unsigned m = left < 8 ? (1u << left) - 1u : 0xffu;
    m &= i == first ? ~1u : ~0u; /* no run starts at the fiber's first entry */
    int whole = i > 0 && i + 8 <= total;
    __m256i c = whole ? _mm256_loadu_si256((const __m256i *)(crd + i))
                      : _mm256_maskload_epi32(crd + i, lanes_below(left));
    __m256i up = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6); /* each lane from the one below */
    int32_t back = crd[i - (i > 0)];                       /* lane 0's predecessor */
    __m256i ct, pt;
    if (dv.mul == (uint64_t)1 << 31) { /* make_divider's multiplier for exactly those widths */
        __m128i l = _mm_cvtsi32_si128(dv.shift - 31);
        __m256i p = whole ? _mm256_loadu_si256((const __m256i *)(crd + i - 1))
                          : _mm256_blend_epi32(_mm256_permutevar8x32_epi32(c, up),
                                               _mm256_set1_epi32(back), 0x01);
        ct = _mm256_srl_epi32(c, l);
        pt = _mm256_srl_epi32(p, l);
    } else {
        __m256i mul = _mm256_set1_epi64x((int64_t)dv.mul);
        __m128i shift = _mm_cvtsi32_si128(dv.shift);
        __m256i even = _mm256_srl_epi64(_mm256_mul_epu32(c, mul), shift);
        __m256i odd = _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(c, 32), mul), shift);
        ct = _mm256_or_si256(even, _mm256_slli_epi64(odd, 32));
        pt = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(ct, up),
                                _mm256_set1_epi32((int32_t)prev), 0x01);
    }
    _mm256_storeu_si256((__m256i *)lane, ct);
    __m256i same = _mm256_cmpeq_epi32(ct, pt);
    return m & ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(same));
}

/* Stores are full-width while the tile has room for 8 more entries (what they write past the
 * run lies in the same section and is overwritten by the tile's next runs, as in append8);
 * after that, masked, or a short copy for 16-bit coordinates (AVX2 has no 16-bit masked
 * store). `readable` entries from src (and vals) lie inside the arrays. A banded matrix' runs
 * are short (3 to 9 entries at 256 x 256 tiles), so the first 8 entries, where whole vectors
 * may be read and written (nearly always), take plain loads and stores: no mask to build, no
 * masked loads, no branch on the run's length. */
static inline AVX2 void copy_run_avx2(band_tile *bt, int cb, const int32_t *src,
                                      const uint32_t *vals, int64_t n, int64_t base,
                                      int64_t readable)
{
    __m256i b = _mm256_set1_epi32((int32_t)base);
    int64_t j = 0;
    if (readable >= 8 && bt->n + 8 <= bt->room) {
        __m256i v = _mm256_loadu_si256((const __m256i *)vals);
        __m256i c = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)src), b);
        if (cb == 2) {
            __m256i low = _mm256_and_si256(c, _mm256_set1_epi32(0xffff));
            __m128i c16 =
                _mm_packus_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1));
            _mm_storeu_si128((__m128i *)((uint16_t *)bt->crd + bt->n), c16);
        } else {
            _mm256_storeu_si256((__m256i *)((uint32_t *)bt->crd + bt->n), c);
        }
        _mm256_storeu_si256((__m256i *)(bt->vals + bt->n), v);
        j = 8;
    }
    for (; j < n; j += 8) {
        int64_t at = bt->n + j;
        __m256i in = lanes_below(n - j);
        __m256i v = _mm256_maskload_epi32((const int *)(vals + j), in);
        __m256i c = _mm256_sub_epi32(_mm256_maskload_epi32(src + j, in), b);
        int full = at + 8 <= bt->room;
        if (cb == 2) {
            /* Local coordinates are below 65536: their low halves, packed. */
            __m256i low = _mm256_and_si256(c, _mm256_set1_epi32(0xffff));
            __m128i c16 =
                _mm_packus_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1));
            uint16_t *d16 = (uint16_t *)bt->crd + at;
            if (full) {
                _mm_storeu_si128((__m128i *)d16, c16);
            } else {
                uint16_t tmp[8];
                _mm_storeu_si128((__m128i *)tmp, c16);
                for (int64_t k = 0; k < n - j && k < 8; k++)
                    d16[k] = tmp[k];
            }
        } else if (full) {
            _mm256_storeu_si256((__m256i *)((uint32_t *)bt->crd + at), c);
        } else {
            _mm256_maskstore_epi32((int *)((uint32_t *)bt->crd + at), in, c);
        }
        if (full)
            _mm256_storeu_si256((__m256i *)(bt->vals + at), v);
        else
            _mm256_maskstore_epi32((int *)(bt->vals + at), in, v);
    }
}

#define BAND_FN fill_band_runs_avx2
#define TALLY_FN tally_runs_avx2
#define BAND_ATTR AVX2
#define LANES 8
#define STEP_VECS 4
#define RUN_STARTS run_starts_avx2
#define COPY_RUN copy_run_avx2
#include "cpack_band.h"
#undef BAND_FN
#undef TALLY_FN
#undef BAND_ATTR
#undef LANES
#undef STEP_VECS
#undef RUN_STARTS
#undef COPY_RUN

static int have_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("popcnt");
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
           __builtin_cpu_supports("popcnt");
}

/* The compress loops' band: the tiles' room (as open_band set it) in an array for the loops,
 * the loop, then the padding. */
typedef void (*chunks_fn)(band_tile *, const int64_t *, const int64_t *, const int32_t *,
                          const uint32_t *, int64_t, const int32_t *, int, int64_t);

static void fill_band_compress(const walker *w, band_tile *tiles, int64_t rt, int64_t r0,
                               int64_t rows, chunks_fn loop)
{
    const ff_tree *t = w->t;
    int64_t gc = t->grid[1], room[FEW_TILES] = {0};
    int32_t lim[FEW_TILES + 1];
    tile_limits(t->tile[1], gc, lim);
    /* A band whose entries all lie in one tile (most of a banded matrix' bands at wide tiles)
     * is filled as a band of that one tile: no per-tile masks and stores for the others
     * (paired, scripts/pack_ab.py: banded 2048 x 65536 took 0.60x the time at AVX2, 0.89x at
     * AVX-512; random and power-law rows 0.98-1.01x). */
    int64_t only = -1, total = t->pos[1][r0 + rows] - t->pos[1][r0];
    for (int64_t ct = 0; ct < gc; ct++) {
        room[ct] = tiles[ct].room;
        if (tiles[ct].seg)
            only = only == -1 && room[ct] == total ? ct : -2;
    }
    if (only >= 0)
        loop(tiles + only, room + only, t->pos[1] + r0, t->crd[1], t->vals, rows, lim + only,
             t->coord_bytes, 1);
    else
        loop(tiles, room, t->pos[1] + r0, t->crd[1], t->vals, rows, lim, t->coord_bytes, gc);
    for (int64_t ct = 0; ct < gc; ct++)
        if (tiles[ct].seg)
            zero_pads(w, &tiles[ct], w->slot[rt * gc + ct], rows, t->coord_bytes);
}

static void fill_band_chunks(const walker *w, band_tile *tiles, int64_t n_used, int64_t rt,
                             int64_t r0, int64_t rows)
{
    (void)n_used;
    fill_band_compress(w, tiles, rt, r0, rows, chunks);
}

static void fill_band_chunks8(const walker *w, band_tile *tiles, int64_t n_used, int64_t rt,
                              int64_t r0, int64_t rows)
{
    (void)n_used;
    fill_band_compress(w, tiles, rt, r0, rows, chunks8);
}
#endif

int ff_pack_simd(void)
{
#ifdef FF_AVX512
    return have_avx512() ? FF_SIMD_AVX512 : have_avx2() ? FF_SIMD_AVX2 : FF_SIMD_NONE;
#else
    return FF_SIMD_NONE;
#endif
}

/* The vector level a pass runs at: the one asked for, at most what the CPU has. */
static int simd_level(int asked)
{
    int best = ff_pack_simd();
    return asked < FF_SIMD_NONE ? FF_SIMD_NONE : asked < best ? asked : best;
}

/* Work is split into parts along level 0, at tile boundaries: parts own disjoint sets of tiles,
 * so every counter, cursor and section has exactly one writer and the bytes do not depend on
 * the thread count. A part's tiles are consecutive in the image, so it also checksums its own
 * byte range; the ranges' CRCs are combined in order. */
typedef struct part part;
typedef void (*part_fn)(part *p);

struct part {
    walker w;
    part_fn fn;
    int64_t t0, t1;   /* level-0 tiles t0 .. t1 - 1 */
    int64_t lo, hi;   /* their level-0 positions */
    uint32_t crc;     /* filling pass: CRC-32 of the part's bytes */
    int64_t nbytes;
};

/* Write the headers of tiles s0 .. s1 - 1 (layout: docs/dma-image.md), zero-padded to
 * header_bytes, and their directory entries, zero-padded to dir_entry_bytes: from the same
 * offsets the filling uses, the headers just before their tiles are checksummed (numpy's
 * records, gathered into place per tile, took as long as the filling with hundreds of thousands
 * of small tiles; its directory, a sixth of the pack's time). */
static void write_headers(const walker *w, int64_t s0, int64_t s1)
{
    int nd = w->t->ndim;
    for (int64_t i = s0; i < s1; i++) {
        uint8_t *e = w->image + w->dir_offset + i * w->dir_entry_bytes;
        uint64_t offset = (uint64_t)w->tile_off[i];
        memset(e, 0, (size_t)w->dir_entry_bytes);
        memcpy(e, &offset, 8);
        uint32_t *d = (uint32_t *)e;
        d[2] = (uint32_t)(w->tile_off[i + 1] - w->tile_off[i]);
        d[3] = (uint32_t)w->npos[i * nd + nd - 1];
        for (int k = 0; k < nd; k++)
            d[4 + k] = (uint32_t)w->index[i * nd + k];
    }
    for (int64_t i = s0; i < s1; i++) {
        int64_t base = w->tile_off[i];
        uint32_t *h = (uint32_t *)(w->image + base);
        memset(h, 0, (size_t)w->header_bytes);
        h[0] = (uint32_t)w->npos[i * nd + nd - 1];
        h[1] = (uint32_t)(w->vals_off[i] - base);
        for (int k = 0; k < nd; k++) {
            int64_t s = i * nd + k;
            h[2 + 3 * k] = (uint32_t)w->npos[s];
            h[3 + 3 * k] = w->seg_off[s] > 0 ? (uint32_t)(w->seg_off[s] - base) : 0;
            h[4 + 3 * k] = w->crd_off[s] > 0 ? (uint32_t)(w->crd_off[s] - base) : 0;
        }
    }
}

/* The directory index of the first non-empty tile at or after grid tile g. */
static int64_t first_slot(const walker *w, int64_t g)
{
    int64_t n = w->stride[0] * w->t->grid[0];
    for (; g < n; g++)
        if (w->slot[g] >= 0)
            return w->slot[g];
    return w->n_tiles;
}

/* The CRC-32 of bytes a part wrote, by carry-less multiplies as wide as the vector level allows
 * (FIBERFLOW_SIMD caps the checksum too, so that a capped run measures what a CPU without
 * 512-bit vectors would do). */
static uint32_t checksum(const walker *w, uint32_t crc, const uint8_t *p, uint64_t n)
{
    return ff_crc32_with(w->simd == FF_SIMD_AVX512 ? 2 : 1, crc, p, n);
}

/* The walk's per-tile state: `last` of grid tiles g0 .. g1 - 1 (the counting pass) or of
 * directory entries g0 .. g1 - 1 (filling; and `cur`), set to -1 by the part that uses them.
 * The CSR loops need neither: set up front, they were a write of 16 or 32 bytes per tile
 * before the threads started (19 MB for 610k tiles). */
static void reset_walk_state(walker *w, int64_t g0, int64_t g1)
{
    for (int64_t s = g0 * w->t->ndim; s < g1 * w->t->ndim; s++) {
        w->last[s] = -1;
        if (w->fill)
            w->cur[s] = -1;
    }
}

/* Any tree: the part's counts from zero, the walk, then its non-empty tiles listed (from its
 * own stretch of ids, which has room for all its tiles). */
static void count_walk(part *p)
{
    walker *w = &p->w;
    int nd = w->t->ndim;
    int64_t g0 = p->t0 * w->stride[0], g1 = p->t1 * w->stride[0];
    memset(w->ncrd + g0 * nd, 0, sizeof(int64_t) * (size_t)((g1 - g0) * nd));
    reset_walk_state(w, g0, g1);
    walk(w, 0, 0, 0, p->lo, p->hi);
    w->ids += g0;
    w->n_ids = 0;
    for (int64_t g = g0; g < g1; g++)
        if (w->ncrd[g * nd + nd - 1] > 0)
            w->ids[w->n_ids++] = g;
}

/* Any tree: zero the part's tiles (all but their headers), walk, turn the segment counts into
 * offsets, checksum. */
static void fill_walk(part *p)
{
    walker *w = &p->w;
    const ff_tree *t = w->t;
    int nd = t->ndim;
    int64_t s0 = first_slot(w, p->t0 * w->stride[0]), s1 = first_slot(w, p->t1 * w->stride[0]);
    reset_walk_state(w, s0, s1);
    write_headers(w, s0, s1);
    for (int64_t i = s0; i < s1; i++) {
        int64_t body = w->tile_off[i] + w->header_bytes;
        memset(w->image + body, 0, (size_t)(w->tile_off[i + 1] - body));
    }
    walk(w, 0, 0, 0, p->lo, p->hi);
    /* Segment arrays were filled with per-parent counts at [parent + 1]; make them offsets. */
    for (int64_t i = s0; i < s1; i++) {
        int64_t parents = 1;
        for (int k = 0; k < nd; k++) {
            int64_t s = i * nd + k;
            if (!t->dense[k]) {
                uint32_t *seg = (uint32_t *)(w->image + w->seg_off[s]);
                for (int64_t j = 1; j <= parents; j++)
                    seg[j] += seg[j - 1];
            }
            parents = w->npos[s];
        }
    }
    p->nbytes = w->tile_off[s1] - w->tile_off[s0];
    p->crc = checksum(w, 0, w->image + w->tile_off[s0], (uint64_t)p->nbytes);
}

/* Which CSR loops a band runs: the compress loops for few tile columns (any tile width) at a
 * vector level, else the scatter. */
static int few_tiles(const walker *w)
{
#ifdef FF_AVX512
    int64_t gc = w->t->grid[1];
    return w->simd == FF_SIMD_AVX512 ? gc <= FEW_TILES
                                     : w->simd == FF_SIMD_AVX2 && gc <= FEW_TILES_AVX2;
#else
    (void)w;
    return 0;
#endif
}

/* Counting needs only how many of a row band's coordinates fall in each column tile. Every
 * coordinate is checked against the level size first (w->bad), and a part stops at the first
 * band that fails: the filling pass, which indexes by coordinate, runs only after a clean count. */
static void count_csr(part *p)
{
    walker *w = &p->w;
    const ff_tree *t = w->t;
    const int64_t *pos = t->pos[1];
    const int32_t *crd = t->crd[1];
    int64_t tr = t->tile[0], gc = t->grid[1];
    uint32_t size = (uint32_t)t->size[1];
    int fast = few_tiles(w), short_before = 0;
    divider dv = make_divider(t->tile[1]);
    runs_fn by_runs = NULL;
#ifdef FF_AVX512
    by_runs = w->simd == FF_SIMD_AVX512 ? tally_runs_avx512
              : w->simd == FF_SIMD_AVX2 ? tally_runs_avx2
                                        : NULL;
#endif
    int64_t *tally = fast ? NULL : malloc(sizeof(int64_t) * 4 * (size_t)gc);
    int64_t *count = malloc(sizeof(int64_t) * (size_t)gc);
    if ((!fast && !tally) || !count) { /* out of memory: the walk needs no scratch */
        free(tally);
        free(count);
        count_walk(p);
        return;
    }
    w->ids += p->t0 * gc; /* the part's own stretch of ids: room for all its tiles */
    w->n_ids = 0;
#ifdef FF_AVX512
    int32_t lim[FEW_TILES + 1];
    if (fast)
        tile_limits(t->tile[1], gc, lim);
#endif
    for (int64_t r0 = p->lo, rt = p->t0; r0 < p->hi; r0 += tr, rt++) {
        int64_t r1 = r0 + tr < p->hi ? r0 + tr : p->hi;
        int64_t q0 = pos[r0], n = pos[r1] - q0, *ncrd = w->ncrd + rt * gc * 2 + 1;
        int ok = 1;
        if (fast) {
#ifdef FF_AVX512
            uint32_t top = w->simd == FF_SIMD_AVX512
                               ? count_band_chunks(crd + q0, n, lim, gc, count)
                               : count_band_chunks8(crd + q0, n, lim, gc, count);
            ok = n == 0 || top < size;
            for (int64_t ct = 0; ct < gc && ok; ct++) {
                ncrd[ct * 2] = n ? count[ct] : 0;
                if (ncrd[ct * 2])
                    w->ids[w->n_ids++] = rt * gc + ct;
            }
#endif
        } else if ((ok = coords_in(crd + q0, n, size, w->simd))) {
            /* Runs are counted in every 8th band, and in each after one whose runs were not
             * short (2 entries or more): in a random matrix' bands (about 1) they stay short. */
            w->runs[rt] = count_scatter(pos + r0, r1 - r0, crd, dv, gc, tally, ncrd,
                                        rt % 8 == 0 || !short_before, by_runs, w, rt * gc);
            if (w->runs[rt])
                short_before = n < 2 * w->runs[rt];
        }
        if (!ok) {
            w->bad = FF_BAD_COORD;
            break;
        }
    }
    free(tally);
    free(count);
}

/* A band's loop: tiles as open_band left them, n_used of them non-empty (in w->used). */
typedef void (*band_fn)(const walker *, band_tile *, int64_t, int64_t, int64_t, int64_t);

/* Whether row band rt's rows hold long runs: at least 4 entries a run on average, as the
 * counting pass found (a banded matrix's rows each sit in a few tiles), and at least one entry
 * per segment entry of its n_used tiles, which the run loops write one by one where the scatter
 * clears and scans them by the vector. The run loops are the faster there (at 256 x 256 tiles,
 * 5 entries a run: 0.75x the scatter's time); with short runs (entries spread over many
 * tiles) the scatter is, by 2-4x. */
static int long_runs(const walker *w, int64_t n_used, int64_t rt, int64_t r0, int64_t rows)
{
    int64_t n = w->t->pos[1][r0 + rows] - w->t->pos[1][r0];
    return w->runs[rt] > 0 && n >= 4 * w->runs[rt] && n >= rows * n_used;
}

/* A 2-D tree whose level 1 is compressed: directory entry words 6 and 7 (bytes 24..31) of
 * tiles s0 .. s1 - 1 get the lowest level-1 coordinate of the tile and one past its highest,
 * the lane's x window (docs/dma-image.md). Called right after a band is filled, while its
 * coordinates are still in cache, on the filling thread. */
static void record_extents(const walker *w, int64_t s0, int64_t s1)
{
    for (int64_t s = s0; s < s1; s++) {
        const uint8_t *c = w->image + w->crd_off[s * 2 + 1];
        int64_t n = w->npos[s * 2 + 1];
        uint32_t lo = UINT32_MAX, hi = 0;
        if (w->t->coord_bytes == 2) { /* (in 16 bits: the loop vectorises) */
            const uint16_t *c16 = (const uint16_t *)c;
            uint16_t lo16 = UINT16_MAX, hi16 = 0;
            for (int64_t q = 0; q < n; q++) {
                lo16 = c16[q] < lo16 ? c16[q] : lo16;
                hi16 = c16[q] > hi16 ? c16[q] : hi16;
            }
            lo = lo16;
            hi = hi16;
        } else {
            const uint32_t *c32 = (const uint32_t *)c;
            for (int64_t q = 0; q < n; q++) {
                lo = c32[q] < lo ? c32[q] : lo;
                hi = c32[q] > hi ? c32[q] : hi;
            }
        }
        uint32_t *d = (uint32_t *)(w->image + w->dir_offset + s * w->dir_entry_bytes);
        d[6] = lo;
        d[7] = hi + 1;
    }
}

static void fill_csr(part *p)
{
    walker *w = &p->w;
    const ff_tree *t = w->t;
    int64_t tr = t->tile[0], gc = t->grid[1];
    band_tile *tiles = malloc(sizeof(band_tile) * (size_t)gc);
    w->used = malloc(sizeof(int64_t) * (size_t)gc);
    w->scratch = malloc(sizeof(uint32_t) * (size_t)(gc * (chunk_rows(gc) + 1)));
    if (!tiles || !w->used || !w->scratch) { /* out of memory: the walk needs no scratch */
        free(tiles);
        free(w->used);
        free(w->scratch);
        fill_walk(p);
        return;
    }
    /* The run loops only at a vector level: the portable one (a library copy per run, a
     * search for its end) is slower than the scatter even on long runs, up to 4x on a banded
     * matrix. */
    band_fn band = NULL, runs = NULL;
#ifdef FF_AVX512
    if (few_tiles(w))
        band = w->simd == FF_SIMD_AVX512 ? fill_band_chunks : fill_band_chunks8;
    if (w->simd == FF_SIMD_AVX512)
        runs = fill_band_runs_avx512;
    else if (w->simd == FF_SIMD_AVX2)
        runs = fill_band_runs_avx2;
#endif
    uint32_t crc = 0;
    int64_t total = 0;
    for (int64_t r0 = p->lo, rt = p->t0; r0 < p->hi; r0 += tr, rt++) {
        int64_t rows = p->hi - r0 < tr ? p->hi - r0 : tr;
        int64_t n_used = open_band(w, tiles, rt, band != NULL);
        if (n_used == 0) /* no entries in the band (the last level is compressed) */
            continue;
        /* The band's tiles are consecutive. */
        int64_t s0 = w->slot[rt * gc + w->used[0]], s1 = w->slot[rt * gc + w->used[n_used - 1]] + 1;
        int64_t nb = w->tile_off[s1] - w->tile_off[s0];
        write_headers(w, s0, s1);
        band_fn fn = band ? band : runs && long_runs(w, n_used, rt, r0, rows) ? runs : NULL;
        if (fn) { /* checksummed while the band is still in cache */
            fn(w, tiles, n_used, rt, r0, rows);
            crc = checksum(w, crc, w->image + w->tile_off[s0], (uint64_t)nb);
        } else {
            crc = fill_band_scatter(w, tiles, n_used, rt, r0, rows, crc);
        }
        if (w->extents)
            record_extents(w, s0, s1);
        total += nb;
    }
    free(tiles);
    free(w->used);
    free(w->scratch);
    p->crc = crc;
    p->nbytes = total;
}

static int is_csr(const ff_tree *t)
{
    return t->ndim == 2 && t->dense[0] && !t->dense[1];
}

/* The level-0 tile where the i-th of n equal shares of the work begins. */
static int64_t split_tile(const ff_tree *t, int i, int n)
{
    int64_t tk = t->tile[0], at;
    if (is_csr(t)) { /* equal shares of entries: the row where they are reached */
        const int64_t *pos = t->pos[1];
        int64_t rows = t->size[0], goal = pos[rows] / n * i, a = 0, b = rows;
        while (a < b) {
            int64_t mid = (a + b) / 2;
            if (pos[mid] < goal)
                a = mid + 1;
            else
                b = mid;
        }
        at = a;
    } else if (t->dense[0]) {
        at = t->size[0] / n * i;
    } else {
        int64_t m = t->pos[0][1];
        at = m ? t->crd[0][m / n * i < m ? m / n * i : m - 1] : 0;
    }
    return (at + tk / 2) / tk; /* the nearest tile boundary */
}

/* Level-0 positions of level-0 tiles t0 .. t1 - 1. */
static void tile_positions(const ff_tree *t, int64_t t0, int64_t t1, int64_t *lo, int64_t *hi)
{
    int64_t tk = t->tile[0];
    if (t->dense[0]) {
        *lo = t0 * tk < t->size[0] ? t0 * tk : t->size[0];
        *hi = t1 * tk < t->size[0] ? t1 * tk : t->size[0];
    } else {
        int64_t m = t->pos[0][1];
        *lo = lower_bound(t->crd[0], m, t0 * tk);
        *hi = lower_bound(t->crd[0], m, t1 * tk);
    }
}

/* The parts a pass is cut into: a few per thread, which the threads take in turn as they
 * finish, so that a thread the OS sets aside for a while (the other cores busy) holds up one
 * small part, not a whole share. One part for one thread. */
#define PARTS_PER_THREAD 4
#define FF_MAX_PARTS (FF_MAX_THREADS * PARTS_PER_THREAD)

typedef struct {
    part *parts;
    int n;
    int next; /* the next part to take, taken with an atomic add */
} part_queue;

static void *take_parts(void *arg)
{
    part_queue *q = arg;
    for (;;) {
        int i = __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
        if (i >= q->n)
            return NULL;
        q->parts[i].fn(&q->parts[i]);
    }
}

/* Run fn over the parts, on up to `threads` threads; return the parts' combined CRC and, in
 * *bad, the first failure any part reported (FF_OK if none). With n_ids (the counting pass),
 * gather the non-empty tiles the parts listed, each in its own stretch of proto->ids, into
 * one list at its start, and their number into *n_ids. */
static uint32_t run_parts(const walker *proto, part_fn fn, int threads, int *bad, int64_t *n_ids)
{
    const ff_tree *t = proto->t;
    part parts[FF_MAX_PARTS];
    int n = 0;
    if (threads > FF_MAX_THREADS)
        threads = FF_MAX_THREADS;
    if (threads < 1)
        threads = 1;
    int cuts = threads > 1 ? threads * PARTS_PER_THREAD : 1;
    int64_t start = 0, grid0 = t->grid[0];
    for (int i = 1; i <= cuts && start < grid0; i++) {
        int64_t end = i < cuts ? split_tile(t, i, cuts) : grid0;
        if (end > grid0)
            end = grid0;
        if (end <= start)
            continue;
        part *p = &parts[n++];
        p->w = *proto;
        p->fn = fn;
        p->t0 = start;
        p->t1 = end;
        tile_positions(t, start, end, &p->lo, &p->hi);
        p->crc = 0;
        p->nbytes = 0;
        start = end;
    }
    part_queue q = {parts, n, 0};
    ff_on_threads(take_parts, &q, threads < n ? threads : n);
    uint32_t crc = 0;
    *bad = FF_OK;
    for (int i = 0; i < n; i++) {
        crc = ff_crc32_combine(crc, parts[i].crc, (uint64_t)parts[i].nbytes);
        *bad = *bad ? *bad : parts[i].w.bad;
    }
    if (n_ids) { /* the counting pass: the parts' lists, in order, into one */
        *n_ids = 0;
        for (int i = 0; i < n; i++) {
            const walker *w = &parts[i].w;
            memmove(proto->ids + *n_ids, w->ids, sizeof(int64_t) * (size_t)w->n_ids);
            *n_ids += w->n_ids;
        }
    }
    return crc;
}

/* Unsigned, so that overflow wraps (as numpy's int64 does) instead of being undefined. */
static inline uint64_t align16(uint64_t v)
{
    return (v + 15) / 16 * 16;
}

int64_t ff_plan(int ndim, const uint8_t *dense, const int64_t *size, const int64_t *tile,
                const int64_t *grid, int coord_bytes, int64_t header_bytes, int64_t first,
                int64_t n, const int64_t *ids, const int64_t *ncrd, int64_t *index, int64_t *ext,
                int64_t *npos, int64_t *seg_off, int64_t *crd_off, int64_t *vals_off,
                int64_t *tile_off, int64_t *tile_bytes, int64_t *slot, int64_t n_grid)
{
    uint64_t at = (uint64_t)first;
    divider dv[MAXD]; /* a divide per tile and level took half the planning */
    for (int k = 0; k < ndim; k++)
        dv[k] = make_divider(grid[k] > 0 ? grid[k] : 1); /* an empty level: no tiles */
    memset(slot, 0xff, sizeof(int64_t) * (size_t)n_grid); /* -1: empty */
    for (int64_t i = 0; i < n; i++) {
        uint64_t cur = (uint64_t)header_bytes, parents = 1;
        slot[ids[i]] = i;
        for (int64_t k = ndim - 1, id = ids[i]; k >= 0; k--) { /* row-major tile ids */
            /* tile ids are below n_grid, at most 2^22 (an image's limit), so in divide's range */
            int64_t q = divide(dv[k], (uint32_t)id), s = i * ndim + k, c = id - q * grid[k];
            id = q;
            index[s] = c;
            ext[s] = size[k] - c * tile[k] < tile[k] ? size[k] - c * tile[k] : tile[k];
        }
        for (int k = 0; k < ndim; k++) {
            int64_t s = i * ndim + k;
            uint64_t np = dense[k] ? parents * (uint64_t)ext[s] : (uint64_t)ncrd[ids[i] * ndim + k];
            npos[s] = (int64_t)np;
            seg_off[s] = crd_off[s] = 0;
            if (!dense[k]) {
                seg_off[s] = (int64_t)(cur + at);
                cur = align16(cur + 4 * (parents + 1));
                crd_off[s] = (int64_t)(cur + at);
                cur = align16(cur + (uint64_t)coord_bytes * np);
            }
            parents = np;
        }
        vals_off[i] = (int64_t)(cur + at);
        tile_off[i] = (int64_t)at;
        tile_bytes[i] = (int64_t)align16(cur + 4 * parents);
        at += (uint64_t)tile_bytes[i];
    }
    tile_off[n] = (int64_t)at;
    return (int64_t)at;
}

int ff_count(const ff_tree *tree, int64_t *ncrd, int64_t *last, int64_t *runs, int64_t *ids,
             int64_t *n_ids, int threads, int simd)
{
    walker w;
    init(&w, tree);
    w.simd = simd_level(simd);
    int64_t n = 1;
    for (int k = 0; k < tree->ndim; k++)
        n *= tree->grid[k];
    w.ncrd = ncrd;
    w.last = last;
    w.runs = runs;
    w.ids = ids;
    *n_ids = 0;
    int bad = FF_OK;
    if (n > 0)
        run_parts(&w, is_csr(tree) ? count_csr : count_walk, threads, &bad, n_ids);
    return bad;
}

uint32_t ff_fill(const ff_tree *tree, uint8_t *image, const int64_t *slot, int64_t n_tiles,
                 const int64_t *ext, const int64_t *npos, const int64_t *seg_off,
                 const int64_t *crd_off, const int64_t *vals_off, const int64_t *tile_off,
                 int64_t header_bytes, const int64_t *index, int64_t dir_offset,
                 int64_t dir_entry_bytes, int64_t *last, int64_t *cur, const int64_t *runs,
                 int threads, int simd, int extents)
{
    walker w;
    init(&w, tree);
    w.fill = 1;
    w.image = image;
    w.slot = slot;
    w.ext = ext;
    w.npos = npos;
    w.seg_off = seg_off;
    w.crd_off = crd_off;
    w.vals_off = vals_off;
    w.tile_off = tile_off;
    w.n_tiles = n_tiles;
    w.header_bytes = header_bytes;
    w.index = index;
    w.dir_offset = dir_offset;
    w.dir_entry_bytes = dir_entry_bytes;
    w.last = last;
    w.cur = cur;
    w.runs = (int64_t *)runs; /* read only, in the filling pass */
    w.simd = simd_level(simd);
    w.extents = extents;
    if (n_tiles == 0)
        return 0;
    int bad; /* the filling pass sets none */
    uint32_t crc = run_parts(&w, is_csr(tree) ? fill_csr : fill_walk, threads, &bad, NULL);
    if (extents && !is_csr(tree)) /* (CSR: recorded band by band, in fill_csr) */
        record_extents(&w, 0, n_tiles);
    return crc;
}
