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

/* Total order of fp32 bit patterns (after DAZ), as overlay/fp32.py's min and max compare. */
static inline uint32_t key(uint32_t b)
{
    uint32_t z = daz(b);
    return (z >> 31) ? ~z : (z | 0x80000000u);
}

uint32_t ff_alu(int op, uint32_t a, uint32_t b)
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

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void ff_spgemm(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci, const uint32_t *av,
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
                uint32_t v = ff_alu(mul, a, bv[q]);
                if (work[j] != i) {  /* first arrival: kept as it is */
                    work[j] = i;
                    acc[j] = v;
                    cci[at++] = j;
                } else {
                    acc[j] = ff_alu(add, acc[j], v);
                }
            }
        }
        qsort(cci + crp[i], (size_t)(at - crp[i]), sizeof(int32_t), cmp_i32);
        for (int64_t q = crp[i]; q < at; q++)
            cv[q] = acc[cci[q]];
    }
}

int64_t ff_ewise_rows(int64_t m, const int64_t *arp, const int32_t *aci, const int64_t *brp,
                      const int32_t *bci, int both, int64_t *crp)
{
    crp[0] = 0;
    for (int64_t i = 0; i < m; i++) {
        int64_t p = arp[i], q = brp[i], count = 0;
        while (p < arp[i + 1] || q < brp[i + 1]) {
            int64_t ja = p < arp[i + 1] ? aci[p] : INT64_MAX, jb = q < brp[i + 1] ? bci[q] : INT64_MAX;
            int equal = ja == jb;
            if (equal || !both)
                count++;
            p += ja <= jb;
            q += jb <= ja;
        }
        crp[i + 1] = crp[i] + count;
    }
    return crp[m];
}

void ff_ewise(int64_t m, const int64_t *arp, const int32_t *aci, const uint32_t *av,
              const int64_t *brp, const int32_t *bci, const uint32_t *bv, int both, int op,
              uint32_t ident, const int64_t *crp, int32_t *cci, uint32_t *cv)
{
    for (int64_t i = 0; i < m; i++) {
        int64_t p = arp[i], q = brp[i], at = crp[i];
        while (p < arp[i + 1] || q < brp[i + 1]) {
            int64_t ja = p < arp[i + 1] ? aci[p] : INT64_MAX, jb = q < brp[i + 1] ? bci[q] : INT64_MAX;
            if (ja == jb) {
                cci[at] = (int32_t)ja;
                cv[at++] = ff_alu(op, av[p], bv[q]);
            } else if (!both) {
                cci[at] = (int32_t)(ja < jb ? ja : jb);
                cv[at++] = ja < jb ? ff_alu(op, av[p], ident) : ff_alu(op, ident, bv[q]);
            }
            p += ja <= jb;
            q += jb <= ja;
        }
    }
}

void ff_sddmm(int64_t m, const int64_t *srp, const int32_t *sci, const uint32_t *sv,
              const uint32_t *u, const uint32_t *vt, int64_t r, int add, int mul,
              uint32_t ident, uint32_t *out)
{
    for (int64_t i = 0; i < m; i++) {
        const uint32_t *ui = u + i * r;
        for (int64_t p = srp[i]; p < srp[i + 1]; p++) {
            const uint32_t *vj = vt + (int64_t)sci[p] * r;
            uint32_t s = sv[p], acc = ident;
            for (int64_t k = 0; k < r; k++)
                acc = ff_alu(add, acc, ff_alu(mul, ff_alu(mul, s, ui[k]), vj[k]));
            out[p] = acc;
        }
    }
}
