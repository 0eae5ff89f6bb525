/* The lane's cycles per tile for the emulator's cycle model, in C: the numpy version
 * (perf_model.tiles_cycles, the model's reference) went over every row of every tile in
 * Python-sized steps, 0.2 s for a 4M-nonzero matrix, many times the job itself; a resident
 * matrix pays it once per schedule, a one-off ff.spmv on every call. Same formula:
 *
 *   a row of n entries costs 1 cycle (n = 0), 2k (n = 1), else max(n k, turn (n - queue));
 *   the tile costs tile_base + its rows' costs + its tail, the most by which any row's last
 *   add (turn n after the row started) runs past the tile's last item. */
#include <stdint.h>
#include <string.h>

#include "cmodel.h"

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

void ff_tile_cycles(const uint8_t *image, uint64_t image_bytes, const int64_t *offsets,
                    int64_t n, int64_t k, int64_t tile_base, int64_t turn, int64_t queue,
                    int64_t *out)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = tile_base;
        int64_t off = offsets[i];
        /* the 2-D tile header: rows (level 0's npos) at byte 8, the segment array's offset
         * (level 1's) at byte 24 (docs/dma-image.md) */
        if (off < 0 || (uint64_t)off + 32 > image_bytes)
            continue;
        uint64_t rows = rd32(image + off + 8), seg = (uint64_t)off + rd32(image + off + 24);
        if (rows == 0 || seg % 4 || seg + 4 * (rows + 1) > image_bytes)
            continue;
        const uint8_t *s = image + seg;
        int64_t suffix = 0, tail = 0; /* items from row r to the tile's end; the latest overrun */
        int64_t next = rd32(s + 4 * rows);
        /* Without branches on the row's length: rows of 0, 1 and 2 entries come in random
         * order in a sparse matrix, and mispredicted branches took 3x the time. For n <= 1
         * the max is n k (turn (n - queue) < 0), so 1 and k more make 1 and 2k. */
        for (int64_t r = (int64_t)rows - 1; r >= 0; r--) {
            int64_t here = rd32(s + 4 * r), len = next - here;
            len = len > 0 ? len : 0; /* a decreasing entry: no row (the job is refused) */
            next = here;
            int64_t items = len * k, chained = turn * (len - queue);
            int64_t cost = (items > chained ? items : chained) + (len == 0) + (len == 1) * k;
            suffix += cost;
            int64_t over = turn * len - suffix;
            tail = over > tail ? over : tail;
        }
        out[i] += suffix + tail;
    }
}
