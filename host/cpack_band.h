/* One row band of a CSR-like tree (a dense level over a sorted compressed one), run by run: the
 * tiles of row tile `rt` filled in one sweep over rows r0 .. r0 + rows - 1, then their padding
 * zeroed. For bands whose rows hold long runs in few tiles (banded matrices): a run costs a
 * tile lookup, a run-length search and a copy, against the scatter's lookup per entry.
 *
 * cpack.c includes this file with BAND_FN (the function's name), BAND_ATTR (its target
 * attribute), RUN_LEN and COPY_RUN (the per-run primitives) defined, for AVX-512: the
 * primitives must be compiled into the loop for it to run at memory speed. (Its portable
 * counterpart, a library copy and a search per run, was slower than the scatter.)
 *
 * A row's entries for one column tile form a run (its coordinates are sorted), appended to that
 * tile's sections. Segment entries are written as running totals: a tile's entry for a row
 * it has no entries in is filled in when the tile's next run (or the band's end) comes. */
BAND_ATTR static void BAND_FN(const walker *w, band_tile *tiles, int64_t n_used, int64_t rt,
                              int64_t r0, int64_t rows)
{
    const ff_tree *t = w->t;
    const int64_t *pos = t->pos[1];
    const int32_t *crd = t->crd[1];
    const uint32_t *vals = t->vals;
    int64_t tc = t->tile[1], gc = t->grid[1];
    int cb = t->coord_bytes;
    divider dv = make_divider(tc);
    for (int64_t lr = 0; lr < rows; lr++) {
        int64_t q = pos[r0 + lr], end = pos[r0 + lr + 1];
        while (q < end) {
            int64_t ct = divide(dv, (uint32_t)crd[q]), n = RUN_LEN(crd, q, end, (ct + 1) * tc);
            band_tile *bt = &tiles[ct];
            while (bt->done < lr)
                bt->seg[++bt->done] = bt->n;
            COPY_RUN(bt, cb, crd + q, vals + q, n, ct * tc);
            bt->n += (uint32_t)n;
            bt->seg[++bt->done] = bt->n;
            q += n;
        }
    }
    for (int64_t u = 0; u < n_used; u++) {
        band_tile *bt = &tiles[w->used[u]];
        while (bt->done < rows)
            bt->seg[++bt->done] = bt->n;
        zero_pads(w, bt, w->slot[rt * gc + w->used[u]], rows, cb);
    }
}
