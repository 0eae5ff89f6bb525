/* Fast paths of the compiler's named kernels (host/compiler/fast.py), bit-exact with the
 * token-level run of their graphs: the same ALU operations (overlay/primitives/alu.py, overlay/lanes/fp32.py)
 * in the same order. Declarations only: also read as the cffi cdef.
 *
 * Matrices are CSR with sorted, unique column indices: rp (m + 1 row pointers), ci (column
 * indices), v (values as 32-bit words). op codes are overlay/primitives/alu.py's Op values. */

/* One ALU operation on two words. */
uint32_t ff_alu(int op, uint32_t a, uint32_t b);

/* SpGEMM, Gustavson's order: the entries of each row of C = A @ B, into crp (m + 1). work: n
 * int64. Returns nnz(C). */
int64_t ff_spgemm_rows(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci,
                       const int64_t *brp, const int32_t *bci, int64_t *crp, int64_t *work);

/* SpGEMM values: row by row, each product mul(a_ik, b_kj) in order of k then j, the first of
 * a column kept, each later one combined with add in arrival order; columns sorted. crp from
 * ff_spgemm_rows; work: n int64 and n uint32. */
void ff_spgemm(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci, const uint32_t *av,
               const int64_t *brp, const int32_t *bci, const uint32_t *bv, int add, int mul,
               const int64_t *crp, int32_t *cci, uint32_t *cv, int64_t *work, uint32_t *acc);

/* Element-wise, per row: op(a, b) over the union (both = 0; a missing side read as ident)
 * or the intersection (both = 1) of A's and B's columns. crp: m + 1; cci, cv: room for
 * nnz(A) + nnz(B) (union) or the smaller of the two (intersection). Returns nnz(C). */
int64_t ff_ewise(int64_t m, const int64_t *arp, const int32_t *aci, const uint32_t *av,
                 const int64_t *brp, const int32_t *bci, const uint32_t *bv, int both, int op,
                 uint32_t ident, int64_t *crp, int32_t *cci, uint32_t *cv);

/* SDDMM: for each entry s of S at (i, j), acc = ident, then for k = 0 .. r-1:
 * acc = add(acc, mul(mul(s, u[i*r + k]), vt[j*r + k])) (vt: V transposed, n x r). */
void ff_sddmm(int64_t m, const int64_t *srp, const int32_t *sci, const uint32_t *sv,
              const uint32_t *u, const uint32_t *vt, int64_t r, int add, int mul,
              uint32_t ident, uint32_t *out);

/* SpMSpV: y = A @ x with x sparse (nx coordinates xc, values xv, sorted), row by row: acc =
 * ident, then acc = add(acc, mul(a_ij, x_j)) for the row's columns j that x has, in increasing
 * j. Rows where x has none of the columns are left out. work: n uint32 and n uint8. Writes the
 * rows kept to yi and their sums to yv (room for m); returns how many. */
int64_t ff_spmspv(int64_t m, int64_t n, const int64_t *arp, const int32_t *aci,
                  const uint32_t *av, int64_t nx, const int64_t *xc, const uint32_t *xv,
                  int add, int mul, uint32_t ident, int64_t *yi, uint32_t *yv, uint32_t *xw,
                  uint8_t *has);

/* SpMV and SpMM with a dense x / B in any semiring: for each row i and column c of B (k
 * columns, row-major, n x k), acc = ident, then acc = add(acc, mul(a_ij, b_jc)) over the row's
 * entries in increasing j (the reducer's order); with keep_first, the first product as it is
 * and the later ones added to it (the sparse accumulator's, Gustavson's order), an empty row
 * ident. out is m x k, row-major. */
void ff_spmm_dense(int64_t m, const int64_t *arp, const int32_t *aci, const uint32_t *av,
                   const uint32_t *b, int64_t k, int add, int mul, uint32_t ident,
                   int keep_first, uint32_t *out);
