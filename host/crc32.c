/* CRC-32 (zlib's: reflected polynomial 0xEDB88320, inverted in and out), fast enough to run
 * inside the packer.
 *
 * Why our own: zlib's crc32 (the one Python links) runs at about 4 GB/s per core, which alone
 * would cost the packer most of its time budget. On x86-64 with PCLMULQDQ the buffer is folded
 * 64 bytes at a time with carry-less multiplies (about 4x faster); elsewhere (the boards' ARM
 * cores, old x86) slicing-by-8 tables are used. Both give exactly zlib.crc32's value.
 *
 * Folding, in the reflected bit order the CRC uses: a 16-byte block X, read as a polynomial
 * whose low 64 bits hold the higher degrees, X = a(x) x^64 + b(x). Moving X forward by D bits
 * (so it can be XORed into the block D bits later) is X x^D mod P = a x^(D+64) + b x^D. With a
 * 64 x 64 carry-less multiply of reflected operands the product lands shifted by x^32, so the
 * two constants are x^(D+32) mod P (for a) and x^(D-32) mod P (for b), stored as 33-bit
 * reflected values (bit l is the coefficient of x^(32-l)). tests/test_crc32.py recomputes
 * them from P. When the whole buffer is folded into one block, its CRC is the CRC of the
 * 16 bytes left, which the table finishes.
 *
 * What the entry points trust: that len bytes are readable at buf. They are reachable from
 * Python only through dma_image.crc32 / checksum, which pass a numpy buffer and its own length
 * (cffi's from_buffer), and from the packer's threads, each over the bytes it just wrote.
 * Any byte values are valid input; ff_crc32_combine takes any lengths (it only multiplies
 * polynomials), and ff_crc32_with never goes past what the CPU has (any other way: tables).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crc32.h"
#include "cthreads.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FF_CRC_PCLMUL 1
#include <immintrin.h>
#endif

static uint32_t table[8][256]; /* slicing-by-8: table[k][b] is byte b followed by k zero bytes */

__attribute__((constructor)) static void init_table(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xFF];
}

/* The raw register update (no inversion) over len bytes. */
static uint32_t crc_bytes(uint32_t c, const uint8_t *p, size_t len)
{
    for (; len >= 8; p += 8, len -= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
            table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
            table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
    }
    while (len--)
        c = table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#ifdef FF_CRC_PCLMUL
#define PCLMUL __attribute__((target("pclmul,sse4.1")))

PCLMUL static inline __m128i fold(__m128i x, __m128i k, __m128i next)
{
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x00), hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

/* The raw register update over len bytes (len >= 64). */
PCLMUL static uint32_t crc_pclmul(uint32_t c, const uint8_t *p, size_t len)
{
    const __m128i k512 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4); /* D = 512: (x^480, x^544) */
    const __m128i k128 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0); /* D = 128: (x^96, x^160) */
    __m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)p + 1);
    __m128i x2 = _mm_loadu_si128((const __m128i *)p + 2), x3 = _mm_loadu_si128((const __m128i *)p + 3);
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)c)); /* the register enters as the first bytes */
    p += 64;
    len -= 64;
    for (; len >= 64; p += 64, len -= 64) {
        const __m128i *q = (const __m128i *)p;
        x0 = fold(x0, k512, _mm_loadu_si128(q));
        x1 = fold(x1, k512, _mm_loadu_si128(q + 1));
        x2 = fold(x2, k512, _mm_loadu_si128(q + 2));
        x3 = fold(x3, k512, _mm_loadu_si128(q + 3));
    }
    x0 = fold(x0, k128, x1);
    x0 = fold(x0, k128, x2);
    x0 = fold(x0, k128, x3);
    for (; len >= 16; p += 16, len -= 16)
        x0 = fold(x0, k128, _mm_loadu_si128((const __m128i *)p));
    uint8_t last[16];
    _mm_storeu_si128((__m128i *)last, x0);
    return crc_bytes(crc_bytes(0, last, 16), p, len);
}

/* The same with 512-bit carry-less multiplies (VPCLMULQDQ): four 128-bit lanes per register
 * and four registers, so 256 bytes per step; then the registers, and the lanes of the last
 * one, are folded into one block. */
#define VPCLMUL __attribute__((target("vpclmulqdq,avx512f,pclmul,sse4.1")))

VPCLMUL static inline __m512i fold4(__m512i x, __m512i k, __m512i next)
{
    __m512i lo = _mm512_clmulepi64_epi128(x, k, 0x00), hi = _mm512_clmulepi64_epi128(x, k, 0x11);
    return _mm512_ternarylogic_epi64(lo, hi, next, 0x96); /* lo ^ hi ^ next */
}

/* The raw register update over len bytes (len >= 256). */
VPCLMUL static uint32_t crc_vpclmul(uint32_t c, const uint8_t *p, size_t len)
{
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x1322d1430, 0x11542778a)); /* D = 2048 */
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x1c6e41596, 0x154442bd4)); /* D = 512 */
    const __m128i k384 = _mm_set_epi64x(0x174359406, 0x03db1ecdc); /* D = 384 */
    const __m128i k256 = _mm_set_epi64x(0x15a546366, 0x0f1da05aa); /* D = 256 */
    const __m128i k128 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0); /* D = 128 */
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64);
    __m512i x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
    x0 = _mm512_xor_si512(x0, _mm512_castsi128_si512(_mm_cvtsi32_si128((int)c)));
    p += 256;
    len -= 256;
    for (; len >= 256; p += 256, len -= 256) {
        x0 = fold4(x0, k2048, _mm512_loadu_si512(p));
        x1 = fold4(x1, k2048, _mm512_loadu_si512(p + 64));
        x2 = fold4(x2, k2048, _mm512_loadu_si512(p + 128));
        x3 = fold4(x3, k2048, _mm512_loadu_si512(p + 192));
    }
    x0 = fold4(x0, k512, x1);
    x0 = fold4(x0, k512, x2);
    x0 = fold4(x0, k512, x3);
    for (; len >= 64; p += 64, len -= 64)
        x0 = fold4(x0, k512, _mm512_loadu_si512(p));
    __m128i y = _mm512_extracti32x4_epi32(x0, 3);
    y = fold(_mm512_extracti32x4_epi32(x0, 2), k128, y);
    y = fold(_mm512_extracti32x4_epi32(x0, 1), k256, y);
    y = fold(_mm512_castsi512_si128(x0), k384, y);
    for (; len >= 16; p += 16, len -= 16)
        y = fold(y, k128, _mm_loadu_si128((const __m128i *)p));
    uint8_t last[16];
    _mm_storeu_si128((__m128i *)last, y);
    return crc_bytes(crc_bytes(0, last, 16), p, len);
}

/* 0: tables only, 1: PCLMULQDQ, 2: VPCLMULQDQ on 512-bit registers. */
static int level(void)
{
    /* Atomic, relaxed: threads that find it unset all store the same value. */
    static int known = -1;
    int level = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (level < 0) {
        __builtin_cpu_init();
        int base = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
        level = base && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx512f")
                    ? 2
                    : base;
        __atomic_store_n(&known, level, __ATOMIC_RELAXED);
    }
    return level;
}
#endif

int ff_crc32_accelerated(void)
{
#ifdef FF_CRC_PCLMUL
    return level();
#else
    return 0;
#endif
}

uint32_t ff_crc32_with(int how, uint32_t crc, const uint8_t *buf, uint64_t len)
{
#ifdef FF_CRC_PCLMUL
    if (how > level())
        how = level();
    if (how == 2 && len >= 256)
        return ~crc_vpclmul(~crc, buf, (size_t)len);
    if (how >= 1 && len >= 64)
        return ~crc_pclmul(~crc, buf, (size_t)len);
#else
    (void)how;
#endif
    return ~crc_bytes(~crc, buf, (size_t)len);
}

uint32_t ff_crc32(uint32_t crc, const uint8_t *buf, uint64_t len)
{
    return ff_crc32_with(2, crc, buf, len);
}

/* CRC-32 of A followed by B, from crc(A), crc(B) and len(B): appending len(B) zero bytes to A
 * multiplies its register by x^(8 len(B)) mod P, and B's CRC is added (the inversions in and
 * out cancel). This lets threads, and the packer's tiles, be checksummed apart. Registers are
 * reflected: bit 31 holds the coefficient of x^0, bit 0 that of x^31. The power comes from
 * x^(2^k) mod P by square-and-multiply: a few hundred nanoseconds, where a 32 x 32 bit matrix
 * squared per bit of the length took tens of microseconds, too slow to combine per tile. */
static uint32_t mulmod(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (uint32_t bit = 1u << 31; bit; bit >>= 1) { /* a's coefficients from x^0 up */
        if (a & bit) {
            product ^= b;
            if (!(a & (bit - 1)))
                break;
        }
        b = b & 1 ? (b >> 1) ^ 0xEDB88320u : b >> 1; /* b * x, reduced */
    }
    return product;
}

static uint32_t x_pow2k[64]; /* x^(2^k) mod P */

__attribute__((constructor)) static void init_powers(void)
{
    x_pow2k[0] = 1u << 30; /* x^1 */
    for (int k = 1; k < 64; k++)
        x_pow2k[k] = mulmod(x_pow2k[k - 1], x_pow2k[k - 1]);
}

uint32_t ff_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    /* x^(8 len_b): bit j of len_b contributes x^(2^(j + 3)); len_b < 2^61 keeps k < 64 */
    for (int k = 3; len_b && k < 64; len_b >>= 1, k++)
        if (len_b & 1)
            crc_a = mulmod(x_pow2k[k], crc_a);
    return crc_a ^ crc_b;
}

/* Stretches of one buffer, checksummed apart (ff_crc32_threads). */
typedef struct {
    const uint8_t *buf;
    uint64_t len, step;
    int n, next;                /* stretches, and the next to take (atomic) */
    uint32_t crc[FF_MAX_THREADS];
} crc_stretches;

static uint64_t stretch_len(const crc_stretches *c, int i)
{
    uint64_t at = c->step * (uint64_t)i;
    return i == c->n - 1 ? c->len - at : c->step;
}

static void *crc_stretches_run(void *arg)
{
    crc_stretches *c = arg;
    for (int i; (i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->n;)
        c->crc[i] = ff_crc32(0, c->buf + c->step * (uint64_t)i, stretch_len(c, i));
    return NULL;
}

/* zlib.crc32(buf[:len], crc) on up to `threads` threads, each over its own stretch, the
 * stretches' CRCs combined: a resident image is checked before every emulated job, and one
 * core took a fifth of an SpMV's time on it. */
uint32_t ff_crc32_threads(uint32_t crc, const uint8_t *buf, uint64_t len, int threads)
{
    if (threads > FF_MAX_THREADS)
        threads = FF_MAX_THREADS;
    if (threads < 2 || len < 1u << 16)
        return ff_crc32(crc, buf, len);
    /* stretches of whole 64-byte blocks, the last one taking the rest */
    crc_stretches c = {buf, len, len / (uint64_t)threads & ~(uint64_t)63, threads, 0, {0}};
    ff_on_threads(crc_stretches_run, &c, threads);
    for (int i = 0; i < c.n; i++)
        crc = ff_crc32_combine(crc, c.crc[i], stretch_len(&c, i));
    return crc;
}
