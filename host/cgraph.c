/* Fast paths of the compiler's named kernels: see cgraph.h. Plain loops: each kernel is one
 * pass (or two: count, then fill) over the operands, with the ALU's operations as the token
 * models define them, so the results are the graphs' bits. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cgraph.h"

#define QNAN 0x7FC00000u

static inline uint32_t daz(uint32_t b) { return (b & 0x7F800000u) ? b : (b & 0x80000000u); }

static inline int is_nan(uint32_t b) { return (b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFFu); }

static inline uint32_t ftz_canon(uint32_t b)
{
    b = daz(b);
    return is_nan(b) ? QNAN : b;
}

static inline float as_float(uint32_t b)
{
    float v;
    b = daz(b);
    memcpy(&v, &b, 4);
    return v;
}

static inline uint32_t bits(float v)
{
    uint32_t b;
    memcpy(&b, &v, 4);
    return b;
}

/* Total order of fp32 bit patterns (after DAZ), as overlay/lanes/fp32.py's min and max compare. */
static inline uint32_t key(uint32_t b)
{
    uint32_t z = daz(b);
    return (z >> 31) ? ~z : (z | 0x80000000u);
}

static inline uint32_t alu(int op, uint32_t a, uint32_t b)
{
    switch (op) {
    case 0: return a + b;                                    /* ADD (wraps) */
    case 1: return a - b;                                    /* SUB */
    case 2: return (uint32_t)((uint64_t)a * b);              /* MUL (low 32 bits) */
    case 3: return (int32_t)a < (int32_t)b ? a : b;          /* MIN */
    case 4: return (int32_t)a > (int32_t)b ? a : b;          /* MAX */
    case 8: return ftz_canon(bits(as_float(a) + as_float(b)));   /* FADD */
    case 9: return ftz_canon(bits(as_float(a) - as_float(b)));   /* FSUB */
    case 10: return ftz_canon(bits(as_float(a) * as_float(b)));  /* FMUL */
    case 11: return (is_nan(a) || is_nan(b)) ? QNAN : (key(a) <= key(b) ? daz(a) : daz(b));
    case 12: return (is_nan(a) || is_nan(b)) ? QNAN : (key(a) > key(b) ? daz(a) : daz(b));
    default: return 0;
    }
}

uint32_t ff_alu(int op, uint32_t a, uint32_t b) { return alu(op, a, b); }

/* Sorts a row's columns: insertion sort for the few of a mesh's rows, an inline quicksort
 * (median of three, the smaller side first, no calls through a pointer) above 16, as the rows
 * of a random or power-law product hold hundreds. */
static void sort_row(int32_t *c, int64_t n)
{
    while (n > 16) {
        int32_t a = c[0], b = c[n / 2], z = c[n - 1];
        int32_t pivot = a < b ? (b < z ? b : (a < z ? z : a)) : (a < z ? a : (b < z ? z : b));
        int64_t i = 0, j = n - 1;
        while (i <= j) {
            while (c[i] < pivot)
                i++;
            while (c[j] > pivot)
                j--;
            if (i <= j) {
                int32_t t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (j + 1 < n - i) { /* recurse on the smaller side, loop on the larger */
            sort_row(c, j + 1);
            c += i;
            n -= i;
        } else {
            sort_row(c + i, n - i);
            n = j + 1;
        }
    }
    for (int64_t i = 1; i < n; i++) {
        int32_t v = c[i];
        int64_t j = i;
        for (; j > 0 && c[j - 1] > v; j--)
            c[j] = c[j - 1];
        c[j] = v;
    }
}

int64_t ff_spgemm_rows(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci,
                       const int64_t *brp, const int32_t *bci, int64_t *crp, int64_t *work)
{
    for (int64_t j = 0; j < n; j++)
        work[j] = -1;
    crp[0] = 0;
    for (int64_t i = 0; i < m; i++) {
        int64_t count = 0;
        for (int64_t p = arp[i]; p < arp[i + 1]; p++) {
            int32_t k = aci[p];
            for (int64_t q = brp[k]; q < brp[k + 1]; q++) {
                int32_t j = bci[q];
                if (work[j] != i) {
                    work[j] = i;
                    count++;
                }
            }
        }
        crp[i + 1] = crp[i] + count;
    }
    return crp[m];
}

/* The value of one product or sum: the ALU's operation, or (plain) the processor's float
 * arithmetic, which gives the same bits wherever no subnormal appears (see run_plain). */
static inline __attribute__((always_inline)) uint32_t op2(int plain, int op, uint32_t a, uint32_t b)
{
    if (!plain)
        return alu(op, a, b);
    float x, y, r;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    r = op == 8 ? x + y : x * y;
    return bits(r);
}

static inline __attribute__((always_inline)) void spgemm(
    int plain, int64_t m, int64_t n, const int64_t *arp, const int32_t *aci, const uint32_t *av,
    const int64_t *brp, const int32_t *bci, const uint32_t *bv, int add, int mul,
    const int64_t *crp, int32_t *cci, uint32_t *cv, int64_t *work, uint32_t *acc)
{
    for (int64_t j = 0; j < n; j++)
        work[j] = -1;
    for (int64_t i = 0; i < m; i++) {
        int64_t at = crp[i];
        for (int64_t p = arp[i]; p < arp[i + 1]; p++) {
            int32_t k = aci[p];
            uint32_t a = av[p];
            for (int64_t q = brp[k]; q < brp[k + 1]; q++) {
                int32_t j = bci[q];
                uint32_t v = op2(plain, mul, a, bv[q]);
                if (work[j] != i) {  /* first arrival: kept as it is */
                    work[j] = i;
                    acc[j] = v;
                    cci[at++] = j;
                } else {
                    acc[j] = op2(plain, add, acc[j], v);
                }
            }
        }
        int64_t count = at - crp[i];
        if (count > 16 && n <= count * (64 - __builtin_clzll((uint64_t)count))) {
            /* a row that fills a good part of n (a power-law graph's hubs): reading its
             * columns off the marks, in order, costs less than sorting them */
            for (int64_t j = 0, q = crp[i]; q < at; j++)
                if (work[j] == i)
                    cci[q++] = (int32_t)j;
        } else {
            sort_row(cci + crp[i], count);
        }
        for (int64_t q = crp[i]; q < at; q++)
            cv[q] = acc[cci[q]];
    }
}

/* Plain float arithmetic for fp32's plus_times, checked: with the x86 exception flags
 * cleared, a subnormal operand raises DE and an inexact subnormal result UE; an exact
 * subnormal result is an operand later (DE) or a stored value (tested). If none of these
 * happened the ALU's flushing changed nothing, and only NaNs need making canonical;
 * otherwise (and off x86) the caller runs the ALU's operations. Returns 1 if the plain run
 * stands. */
static int plain_ok(uint32_t *out, int64_t n, unsigned int flags)
{
    if (flags)
        return 0;
    for (int64_t q = 0; q < n; q++) {
        uint32_t b = out[q];
        if (!(b & 0x7F800000u) && (b & 0x7FFFFFu))
            return 0;
        if (is_nan(b))
            out[q] = QNAN;
    }
    return 1;
}

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define PLAIN_BEGIN unsigned int saved_csr_ = _mm_getcsr(); _mm_setcsr(0x1f80u)
#define PLAIN_FLAGS (_mm_getcsr() & 0x12u)
#define PLAIN_END _mm_setcsr(saved_csr_)
#define HAVE_PLAIN 1
#else
#define PLAIN_BEGIN
#define PLAIN_FLAGS 1u
#define PLAIN_END
#define HAVE_PLAIN 0
#endif

void ff_spgemm(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci, const uint32_t *av,
               const int64_t *brp, const int32_t *bci, const uint32_t *bv, int add, int mul,
               const int64_t *crp, int32_t *cci, uint32_t *cv, int64_t *work, uint32_t *acc)
{
    if (HAVE_PLAIN && add == 8 && mul == 10) {
        PLAIN_BEGIN;
        spgemm(1, m, n, arp, aci, av, brp, bci, bv, add, mul, crp, cci, cv, work, acc);
        unsigned int flags = PLAIN_FLAGS;
        PLAIN_END;
        if (plain_ok(cv, crp[m], flags))
            return;
    }
    spgemm(0, m, n, arp, aci, av, brp, bci, bv, add, mul, crp, cci, cv, work, acc);
}

static inline __attribute__((always_inline)) int64_t ewise(
    int plain, int64_t m, const int64_t *arp, const int32_t *aci, const uint32_t *av,
    const int64_t *brp, const int32_t *bci, const uint32_t *bv, int both, int op,
    uint32_t ident, int64_t *crp, int32_t *cci, uint32_t *cv)
{
    int64_t at = 0;
    crp[0] = 0;
    for (int64_t i = 0; i < m; i++) {
        int64_t p = arp[i], q = brp[i], pe = arp[i + 1], qe = brp[i + 1];
        while (p < pe && q < qe) {
            int32_t ja = aci[p], jb = bci[q];
            if (ja == jb) {
                cci[at] = ja;
                cv[at++] = op2(plain, op, av[p++], bv[q++]);
            } else if (ja < jb) {
                if (!both) {
                    cci[at] = ja;
                    cv[at++] = op2(plain, op, av[p], ident);
                }
                p++;
            } else {
                if (!both) {
                    cci[at] = jb;
                    cv[at++] = op2(plain, op, ident, bv[q]);
                }
                q++;
            }
        }
        if (!both) {
            for (; p < pe; p++) {
                cci[at] = aci[p];
                cv[at++] = op2(plain, op, av[p], ident);
            }
            for (; q < qe; q++) {
                cci[at] = bci[q];
                cv[at++] = op2(plain, op, ident, bv[q]);
            }
        }
        crp[i + 1] = at;
    }
    return at;
}

int64_t ff_ewise(int64_t m, const int64_t *arp, const int32_t *aci, const uint32_t *av,
                 const int64_t *brp, const int32_t *bci, const uint32_t *bv, int both, int op,
                 uint32_t ident, int64_t *crp, int32_t *cci, uint32_t *cv)
{
    if (HAVE_PLAIN && (op == 8 || op == 10)) {
        PLAIN_BEGIN;
        int64_t nnz = ewise(1, m, arp, aci, av, brp, bci, bv, both, op, ident, crp, cci, cv);
        unsigned int flags = PLAIN_FLAGS;
        PLAIN_END;
        if (plain_ok(cv, nnz, flags))
            return nnz;
    }
    return ewise(0, m, arp, aci, av, brp, bci, bv, both, op, ident, crp, cci, cv);
}

static inline __attribute__((always_inline)) void sddmm(
    int plain, int64_t m, const int64_t *srp, const int32_t *sci, const uint32_t *sv,
    const uint32_t *u, const uint32_t *vt, int64_t r, int add, int mul, uint32_t ident,
    uint32_t *out)
{
    for (int64_t i = 0; i < m; i++) {
        const uint32_t *ui = u + i * r;
        int64_t p = srp[i];
        /* Four entries at a time, each its own chain of adds in k order (the same bits): the
         * chains overlap, where one waits for its add's latency at every k. */
        for (; p + 4 <= srp[i + 1]; p += 4) {
            const uint32_t *v0 = vt + (int64_t)sci[p] * r, *v1 = vt + (int64_t)sci[p + 1] * r;
            const uint32_t *v2 = vt + (int64_t)sci[p + 2] * r, *v3 = vt + (int64_t)sci[p + 3] * r;
            uint32_t a0 = ident, a1 = ident, a2 = ident, a3 = ident;
            for (int64_t k = 0; k < r; k++) {
                a0 = op2(plain, add, a0, op2(plain, mul, op2(plain, mul, sv[p], ui[k]), v0[k]));
                a1 = op2(plain, add, a1, op2(plain, mul, op2(plain, mul, sv[p + 1], ui[k]), v1[k]));
                a2 = op2(plain, add, a2, op2(plain, mul, op2(plain, mul, sv[p + 2], ui[k]), v2[k]));
                a3 = op2(plain, add, a3, op2(plain, mul, op2(plain, mul, sv[p + 3], ui[k]), v3[k]));
            }
            out[p] = a0;
            out[p + 1] = a1;
            out[p + 2] = a2;
            out[p + 3] = a3;
        }
        for (; p < srp[i + 1]; p++) {
            const uint32_t *vj = vt + (int64_t)sci[p] * r;
            uint32_t s = sv[p], acc = ident;
            for (int64_t k = 0; k < r; k++)
                acc = op2(plain, add, acc, op2(plain, mul, op2(plain, mul, s, ui[k]), vj[k]));
            out[p] = acc;
        }
    }
}

void ff_sddmm(int64_t m, const int64_t *srp, const int32_t *sci, const uint32_t *sv,
              const uint32_t *u, const uint32_t *vt, int64_t r, int add, int mul,
              uint32_t ident, uint32_t *out)
{
    if (HAVE_PLAIN && add == 8 && mul == 10) {
        PLAIN_BEGIN;
        sddmm(1, m, srp, sci, sv, u, vt, r, add, mul, ident, out);
        unsigned int flags = PLAIN_FLAGS;
        PLAIN_END;
        if (plain_ok(out, srp[m], flags))
            return;
    }
    sddmm(0, m, srp, sci, sv, u, vt, r, add, mul, ident, out);
}

int64_t ff_spmspv(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci,
                  const uint32_t *av, int64_t nx, const int64_t *xc, const uint32_t *xv,
                  int add, int mul, uint32_t ident, int64_t *yi, uint32_t *yv, uint32_t *xw,
                  uint8_t *has)
{
    memset(has, 0, (size_t)n);
    for (int64_t q = 0; q < nx; q++) {
        has[xc[q]] = 1;
        xw[xc[q]] = xv[q];
    }
    int64_t out = 0;
    for (int64_t i = 0; i < m; i++) {
        uint32_t acc = ident;
        int any = 0;
        for (int64_t p = arp[i]; p < arp[i + 1]; p++) {
            int32_t j = aci[p];
            if (has[j]) {
                acc = alu(add, acc, alu(mul, av[p], xw[j]));
                any = 1;
            }
        }
        if (any) {
            yi[out] = i;
            yv[out++] = acc;
        }
    }
    return out;
}

void ff_spmm_dense(int64_t m, const int64_t *arp, const int32_t *aci, const uint32_t *av,
                   const uint32_t *b, int64_t k, int add, int mul, uint32_t ident,
                   int keep_first, uint32_t *out)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < k; c++) {
            uint32_t acc = ident;
            for (int64_t p = arp[i]; p < arp[i + 1]; p++) {
                uint32_t v = alu(mul, av[p], b[(int64_t)aci[p] * k + c]);
                acc = keep_first && p == arp[i] ? v : alu(add, acc, v);
            }
            out[i * k + c] = acc;
        }
}
