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

#define MAXD 8

typedef struct {
    const ff_tree *t;
    int fill;                 /* 0: counting pass, 1: filling pass */
    int64_t coord[MAXD];      /* coordinates of the current path */
    int64_t path[MAXD];       /* source positions of the current path */
    int64_t stride[MAXD];     /* row-major strides of the tile grid */
    /* counting pass */
    int64_t *ncrd;
    /* filling pass */
    uint8_t *image;
    const int64_t *slot, *ext, *seg_off, *crd_off, *vals_off;
    int64_t *last, *cur;
} walker;

static void count_leaf(walker *w, int64_t tile)
{
    const ff_tree *t = w->t;
    for (int k = 0; k < t->ndim; k++) {
        if (t->dense[k])
            continue;
        int64_t s = tile * t->ndim + k;
        if (w->last[s] != w->path[k]) {     /* first entry of this source node in this tile */
            w->last[s] = w->path[k];
            w->ncrd[s]++;
        }
    }
}

static void fill_leaf(walker *w, int64_t tile, int64_t leaf)
{
    const ff_tree *t = w->t;
    int64_t i = w->slot[tile];
    int64_t local = 0;                      /* position within the tile, level by level */
    for (int k = 0; k < t->ndim; k++) {
        int64_t s = i * t->ndim + k;
        int64_t lc = w->coord[k] % t->tile[k];
        if (t->dense[k]) {
            local = local * w->ext[s] + lc;
            continue;
        }
        if (w->last[s] != w->path[k]) {
            int64_t at = w->cur[s] + 1;     /* cur holds the last index written, from -1 */
            w->last[s] = w->path[k];
            w->cur[s] = at;
            uint8_t *crd = w->image + w->crd_off[s];
            if (t->coord_bytes == 2)
                ((uint16_t *)crd)[at] = (uint16_t)lc;
            else
                ((uint32_t *)crd)[at] = (uint32_t)lc;
            ((uint32_t *)(w->image + w->seg_off[s]))[local + 1]++;
        }
        local = w->cur[s];
    }
    ((uint32_t *)(w->image + w->vals_off[i]))[local] = t->vals[leaf];
}

static void walk(walker *w, int k, int64_t parent, int64_t tile)
{
    const ff_tree *t = w->t;
    if (k == t->ndim) {
        if (w->fill)
            fill_leaf(w, tile, parent);
        else
            count_leaf(w, tile);
        return;
    }
    if (t->dense[k]) {
        int64_t n = t->size[k];
        for (int64_t c = 0; c < n; c++) {
            w->coord[k] = c;
            w->path[k] = parent * n + c;
            walk(w, k + 1, parent * n + c, tile + (c / t->tile[k]) * w->stride[k]);
        }
    } else {
        const int64_t *pos = t->pos[k];
        const int32_t *crd = t->crd[k];
        for (int64_t q = pos[parent]; q < pos[parent + 1]; q++) {
            int64_t c = crd[q];
            w->coord[k] = c;
            w->path[k] = q;
            walk(w, k + 1, q, tile + (c / t->tile[k]) * w->stride[k]);
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

void ff_count(const ff_tree *tree, int64_t *ncrd, int64_t *last)
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
        walk(&w, 0, 0, 0);
}

void ff_fill(const ff_tree *tree, uint8_t *image, const int64_t *slot, int64_t n_tiles,
             const int64_t *ext, const int64_t *npos, const int64_t *seg_off,
             const int64_t *crd_off, const int64_t *vals_off, int64_t *last, int64_t *cur)
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
        walk(&w, 0, 0, 0);
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
