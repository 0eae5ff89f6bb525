/* The run loops of a vector level: a row band of a CSR-like tree (a dense level over a sorted
 * compressed one) counted (TALLY_FN) and filled (BAND_FN) run by run. A row's entries for one
 * column tile form a run (its coordinates are sorted). For bands whose rows hold long runs in
 * few tiles (banded matrices): a run costs a tile lookup and a copy, against the scatter's
 * lookup per entry.
 *
 * cpack.c includes this file with BAND_FN and TALLY_FN (the functions' names), BAND_ATTR (their
 * target attribute), LANES (entries per vector), STEP_VECS (vectors whose run starts the fill
 * finds before taking the runs), RUN_STARTS and COPY_RUN (the primitives) defined, once per
 * vector level: the primitives must be compiled into the loops for them to run at memory
 * speed. (A portable counterpart, a library copy and a search per run, was slower than the
 * scatter.) RUN_STARTS(crd, i, end, first, total, dv, prev, lane) gives a vector of the tile
 * columns of entries i .. of a fiber first .. end - 1 (in lane[]) and where runs start in it
 * (a mask), reading no entry at or past `total`; prev is the column of entry i - 1 (when i >
 * first), from the vector before's lanes, not from the runs taken since (which would chain
 * each vector to the last one's runs). The loops then take the runs one by one from the
 * mask. COPY_RUN(bt, cb, src, vals, n, base, readable) appends n entries to a tile, `readable`
 * being how many entries from src lie in the arrays. */

/* The counting pass's tally: entries q .. end - 1 (q < end) into t[tile], a run at a time, and
 * the number of runs. A banded matrix' band (5 entries a run at 256 x 256) costs a few scalar
 * steps per vector, not a load, divide and increment per entry. The runs are the band's (two
 * rows' stretches in one tile column that meet count once): the same for long_runs' purpose. */
BAND_ATTR static int64_t TALLY_FN(const int32_t *crd, int64_t q, int64_t end, divider dv,
                                  int64_t *t)
{
    uint32_t cur = divide(dv, (uint32_t)crd[q]), prev = cur, lane[LANES];
    int64_t start = q, runs = 1;
    for (int64_t i = q; i < end; i += LANES) {
        unsigned starts = RUN_STARTS(crd, i, end, q, end, dv, prev, lane);
        prev = lane[LANES - 1];
        runs += __builtin_popcount(starts);
        for (; starts; starts &= starts - 1) {
            int j = __builtin_ctz(starts);
            t[cur] += i + j - start;
            cur = lane[j];
            start = i + j;
        }
    }
    t[cur] += end - start;
    return runs;
}

/* The tiles of row tile `rt` filled in one sweep over rows r0 .. r0 + rows - 1, then their
 * padding zeroed. Segment entries are written as running totals: a tile's entry for a row it
 * has no entries in is filled in when the tile's next run (or the band's end) comes. */
BAND_ATTR static void BAND_FN(const walker *w, band_tile *tiles, int64_t n_used, int64_t rt,
                              int64_t r0, int64_t rows)
{
    const ff_tree *t = w->t;
    const int64_t *pos = t->pos[1];
    const int32_t *crd = t->crd[1];
    const uint32_t *vals = t->vals;
    int64_t tc = t->tile[1], gc = t->grid[1];
    int cb = t->coord_bytes;
    int64_t total = pos[t->size[0]]; /* entries in crd and vals */
    divider dv = make_divider(tc);
    uint32_t lane[STEP_VECS * LANES];
/* Entries a .. b - 1 of the current row, a run in tile column col, appended to that tile. The
 * band's tiles' sections are written a few entries at a time, by turns: too many streams for
 * the hardware prefetchers (a band of a banded matrix at 256 x 256 fills 9 tiles, 27 streams
 * with the segment arrays), so each run asks for the lines RUN_AHEAD entries on (past a
 * section's end, of the image's next bytes: harmless), as the scatter does. */
#define APPEND_RUN(col, a, b)                                                                      \
    do {                                                                                           \
        band_tile *bt = &tiles[col];                                                               \
        while (bt->done < lr)                                                                      \
            bt->seg[++bt->done] = (uint32_t)bt->n;                                                 \
        __builtin_prefetch(bt->vals + bt->n + RUN_AHEAD, 1, 3);                                    \
        __builtin_prefetch(bt->crd + cb * (bt->n + RUN_AHEAD), 1, 3);                              \
        COPY_RUN(bt, cb, crd + (a), vals + (a), (b) - (a), (int64_t)(col) * tc, total - (a));     \
        bt->n += (b) - (a);                                                                        \
        bt->seg[++bt->done] = (uint32_t)bt->n;                                                     \
    } while (0)
    for (int64_t lr = 0; lr < rows; lr++) {
        int64_t q = pos[r0 + lr], end = pos[r0 + lr + 1];
        if (q == end)
            continue;
        uint32_t cur = divide(dv, (uint32_t)crd[q]); /* the column of the run being read */
        int64_t first = q;
        uint32_t prev = cur;
        for (int64_t i = q; i < end; i += STEP_VECS * LANES) {
            /* The run starts of up to STEP_VECS vectors, then the runs: with short runs (a few
             * to a vector) the loop over them is then left once a row, not once a vector. */
            uint64_t s = RUN_STARTS(crd, i, end, first, total, dv, prev, lane);
            for (int k = 1; k < STEP_VECS && i + k * LANES < end; k++)
                s |= (uint64_t)RUN_STARTS(crd, i + k * LANES, end, first, total, dv,
                                          lane[k * LANES - 1], lane + k * LANES)
                     << (k * LANES);
            prev = lane[STEP_VECS * LANES - 1];
            for (; s; s &= s - 1) {
                int64_t next = i + __builtin_ctzll(s);
                APPEND_RUN(cur, q, next);
                q = next;
                cur = lane[next - i];
            }
        }
        APPEND_RUN(cur, q, end);
    }
#undef APPEND_RUN
    for (int64_t u = 0; u < n_used; u++) {
        band_tile *bt = &tiles[w->used[u]];
        while (bt->done < rows)
            bt->seg[++bt->done] = (uint32_t)bt->n;
        zero_pads(w, bt, w->slot[rt * gc + w->used[u]], rows, cb);
    }
}
