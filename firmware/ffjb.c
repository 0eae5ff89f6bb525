/* The SpMV/SpMM job walker: runs the FFJB descriptor of docs/jobs.md on the shell's lanes.
 *
 * 1. Read the descriptor's header and lane table, and A's image header and mode table, and
 *    check them (BAD_JOB with the field's byte offset, BAD_LANES, BAD_ALIGN, BAD_IMAGE,
 *    BAD_SCHEDULE; an output range over A, x or the descriptor is BAD_JOB at y_addr's, 56).
 * 2. Without ACCUMULATE, write zeros over all of y / C (rows that no tile touches must read 0),
 *    unless the job is COVERED: every row tile has a tile, so every row is written whole (the
 *    count of row tiles opened is checked at the end: BAD_SCHEDULE).
 * 3. Walk every lane's tile list at once, in rounds. The lanes start themselves (LANE_CTRL.ARM:
 *    a lane starts once its tile's transfer has finished) and their transfers wait for them
 *    (DMA_CTRL.AFTER_LANE), so the CPU is in no tile's chain of events and only has to keep
 *    ahead: once a lane's last queued tile has started, the walker queues the transfers of its
 *    next one (the previous row tile's y block out when the row tile changes, the new block
 *    loaded with ACCUMULATE, the x / B slice unless the lane holds it, the tile itself), writes
 *    the lane's configuration words (latched at its start) and arms it, then reads and checks
 *    the tile after (its tile-list and directory entries). Idle lanes first, then the one that
 *    started its tile longest ago; at most LOOKAHEAD tiles queued and not started per engine.
 *    A lane's last y block is written out once every tile is queued; the job ends when every
 *    transfer has finished.
 *
 * y blocks are written out with DMA_CTRL.ZERO, which leaves zeros behind: the next row tile's
 * block (no ACCUMULATE) then starts from zeros without a zero fill, which would hold the
 * engine without moving a byte. Only a lane's first block (or a larger one) is cleared, by the
 * CPU while the transfers run when that is sure to be quick enough and the lane has not run
 * yet (a running lane holds its buffers' port), else by a DMA zero fill.
 *
 * Scratch: tile buffer 0 of engine 0 (region 0), which no lane uses: the first MISC_BYTES hold
 * the descriptor's header and lane table (from 0) and A's image header (IMAGE_HEAD) while the
 * job is checked, then single beats for the read-modify-write of y blocks that do not start
 * or end on a bus beat; after that, each lane has a window of its tile-list entries and one of
 * directory entries, refilled by DMA when the lane walks past it (one window of each for all
 * lanes when the whole tile list and directory fit: nothing is then refilled).
 *
 * y blocks and x slices need not be bus-aligned (any tile shape): the aligned range around
 * them is moved and the lane's x_base / y_base point inside it. A y block is written out
 * whole beats at a time, so the words of a partial first or last beat that belong to the
 * neighbouring rows are first copied in from DDR, after every queued transfer has finished
 * (the firmware is the only writer of y, so this read-modify-write is atomic) and the lane
 * is done.
 */
#include "fw.h"

#define NONE 0xFFFFFFFFu
#define MAX_LANES 8u /* the walker's per-lane arrays are sized for 8 */
#define MISC_BYTES 256u
#define IMAGE_HEAD (MISC_BYTES - 96u) /* scratch offset of A's image header: after the
                                       * descriptor's header and a lane table of 8 lanes */
#define IMAGE_MAGIC 0x49444646u /* "FFDI" */
#define HEAD_WORDS 24u          /* the FFJB header: 96 bytes */
#define DIR_ENTRY 32u           /* a 2-D image's directory entry */
#define TILE_HEAD 32u           /* a 2-D tile's header; its segment array follows */
#define TILE_XFERS 4u           /* transfers a tile queues at most: y out, y in, x, tile */
#define LOOKAHEAD 2u            /* tiles queued per engine, ahead of the lanes */

#define LOCAL(region, offset) (((region) << FF_LOCAL_REGION_SHIFT) | (offset))
#define LANE0_Y 3u /* lane 0's y buffer: engine 0's region 1 + 2 (ShellConfig.lane_regions) */

static inline volatile u32 *cpu_local(u32 e, u32 region)
{
    return (volatile u32 *)(FF_CPU_LOCAL_BASE + e * FF_CPU_LOCAL_STRIDE +
                            (region << FF_LOCAL_REGION_SHIFT));
}

/* The job, as checked. */
static u32 kernel, dtype, flags, m, n, k, n_tiles, job_addr, job_end;
static u32 a_addr, a_bytes, x_addr, y_addr, row_bytes; /* row_bytes = 4k */
static u32 tile_rows, tile_cols, coord_bytes, dir_base;
static u32 x_bytes, y_bytes;
static u32 tl_base;

/* Per lane; set at the start of every job, so kept out of .bss (start.S would spend thousands
 * of cycles clearing them before the first heartbeat). */
#define NOINIT __attribute__((section(".noinit")))
static u32 l_pos[MAX_LANES] NOINIT;
static u32 l_end[MAX_LANES] NOINIT;
/* The walk's lanes, as bit masks (bit l: lane l), so that a round of the walk tests every
 * lane at once: a tile queued (the lane armed for it) and not yet seen started (LANE_ARMED
 * clear); a tile started and not yet counted finished (a lane has at most one of each: a
 * tile has finished once the lane's next one has started, as its transfers wait for the lane,
 * AFTER_LANE, or once the lane is idle); tiles left to queue; the next one prepared; a y
 * block open (not yet written out at the job's end). */
static u32 q_mask, r_mask, todo_mask, prep_mask, open_mask;
static u32 l_yseq[MAX_LANES] NOINIT; /* the last transfer that touches the y buffer */
static u32 l_t0[MAX_LANES] NOINIT;   /* when its last tile was seen started */
static u32 l_prev[MAX_LANES] NOINIT;
static u32 l_xj[MAX_LANES] NOINIT;  /* the x slice the lane holds: its column tile, */
static u32 l_xlo[MAX_LANES] NOINIT; /* its columns [l_xlo, l_xhi) */
static u32 l_xhi[MAX_LANES] NOINIT;
static u32 l_xend[MAX_LANES] NOINIT; /* where its last tile's columns end, in x */
static u32 l_i[MAX_LANES] NOINIT;
static u32 l_ya[MAX_LANES] NOINIT;
static u32 l_yoff[MAX_LANES] NOINIT;
static u32 l_ybytes[MAX_LANES] NOINIT;
static u32 l_clean[MAX_LANES] NOINIT; /* bytes at the start of the y buffer known to be 0 */
static u32 tw_a0[MAX_LANES] NOINIT;
static u32 tw_a1[MAX_LANES] NOINIT;
static u32 dw_a0[MAX_LANES] NOINIT;
static u32 dw_a1[MAX_LANES] NOINIT;
/* The lane's next tile, prepared: */
static u32 n_off[MAX_LANES] NOINIT;  /* its directory entry */
static u32 n_bytes[MAX_LANES] NOINIT;
static u32 n_i[MAX_LANES] NOINIT;
static u32 n_j[MAX_LANES] NOINIT;
static u32 n_crd[MAX_LANES] NOINIT;  /* its coordinates' and values' offsets in the tile */
static u32 n_vals[MAX_LANES] NOINIT;
static u32 n_xlo[MAX_LANES] NOINIT;  /* the columns of its slice it reads: [n_xlo, n_xhi) */
static u32 n_xhi[MAX_LANES] NOINIT;
static u32 l_e[MAX_LANES] NOINIT;    /* the lane's DMA engine */
static u32 l_r[MAX_LANES] NOINIT;    /* its tile buffer's region; x: +1, y: +2 */
/* Where the lane's last queued tile lies in its tile buffer: 0 or half the buffer when it
 * fits a half, NONE when it needs more (load(): the next one may then land in the other
 * half while the lane computes). */
static u32 l_tb[MAX_LANES] NOINIT;
/* Half the tile buffer when the lanes' tiles take its halves (load_halves()), else 0. Only
 * SpMM's (k > 1) do: its lanes compute k products a nonzero, long enough for a tile that
 * lands while they compute to save them its transfer. SpMV's jobs are limited by the CPU's
 * work per tile (docs/firmware.md), which the halves' bookkeeping only adds to (1-5% slower
 * on the rtl bench's matrices when SpMV had them too). */
static u32 half;
static u32 l_slot[MAX_LANES] NOINIT; /* its windows' scratch offset */
static u32 win_cap;                  /* bytes of each window */
static u32 win_seq;                  /* the last window refill (engine 0) */
static u32 e_loading[FF_MAX_DMA];    /* tiles queued and not yet started, per engine */
/* Per job, so the per-tile path needs no division (about 40 cycles each on picorv32) and at
 * most two multiplications. */
static u32 grid_r, grid_c, last_rows, last_cols, y_stride, x_stride;
static u32 row_tiles; /* row tiles opened: each lane owns whole row tiles (rule 3) */

static inline u32 up(u32 v) { return (v + bus_bytes - 1u) & ~(bus_bytes - 1u); }
static inline u32 down(u32 v) { return v & ~(bus_bytes - 1u); }
/* Whether [a, a + an) and [b, b + bn) share a byte (neither range wraps past 4 GiB). */
static inline int overlap(u32 a, u32 an, u32 b, u32 bn) { return a - b < bn || b - a < an; }

static u32 bad(u32 code, u32 detail)
{
    info = detail;
    return code;
}

/* Queue a refill of a lane's window [*a0, *a1) (at scratch offset off, win_cap bytes) from
 * DDR: from addr's beat up to at most end. */
static u32 refill(u32 *a0, u32 *a1, u32 off, u32 addr, u32 end)
{
    u32 start = down(addr);
    u32 stop = start + win_cap < end ? start + win_cap : end;
    *a0 = start;
    *a1 = stop;
    u32 err = dma_push(0, start, LOCAL(0u, off), up(stop) - start, 0);
    win_seq = dma_seq[0];
    return err;
}

/* Queue the write-out of a y block: DDR [ya, ya + nbytes) from lane buffer (e, region) at byte
 * yoff (the block's offset within its first beat), leaving zeros behind; ctrl: more DMA_CTRL
 * bits (AFTER_LANE). */
static u32 store_y(u32 e, u32 region, u32 yoff, u32 ya, u32 nbytes, u32 ctrl)
{
    volatile u32 *yb = cpu_local(e, region + 2u);
    volatile u32 *misc = cpu_local(0, 0);
    u32 a0 = ya - yoff, end = ya + nbytes, a1 = up(end), err;
    u32 tail = end & (bus_bytes - 1u);
    if (yoff | tail) {
        /* Beats shared with another row tile's block: its words come from DDR once every
         * queued write-out (maybe its own, on another engine) has landed. */
        if ((err = dma_drain()) != FF_ERR_NONE)
            return err;
        if (yoff) {
            if ((err = dma(0, a0, LOCAL(0u, 0u), bus_bytes, 0)) != FF_ERR_NONE)
                return err;
            for (u32 w = 0; w < yoff / 4u; w++)
                yb[w] = misc[w];
        }
        if (tail) {
            if ((err = dma(0, a1 - bus_bytes, LOCAL(0u, 0u), bus_bytes, 0)) != FF_ERR_NONE)
                return err;
            u32 base = (a1 - bus_bytes - a0) / 4u;
            for (u32 w = tail / 4u; w < bus_bytes / 4u; w++)
                yb[base + w] = misc[w];
        }
    }
    return dma_push(e, a0, LOCAL(region + 2u, 0u), a1 - a0,
                    FF_DMA_CTRL_TO_DDR_MASK | FF_DMA_CTRL_ZERO_MASK | ctrl);
}

/* Queue lane l's open y block's write-out, to run once the lane is done (AFTER_LANE). A block
 * that shares beats with another is completed from DDR by the CPU (store_y), through the
 * buffer's port that the lane holds while it runs: the CPU waits for the lane first. */
static inline __attribute__((always_inline)) u32 flush_y(u32 l)
{
    u32 e = l_e[l], yoff = l_yoff[l], ya = l_ya[l], end = ya + l_ybytes[l], err, st;
    u32 ctrl = FF_DMA_CTRL_AFTER_LANE_MASK | l << FF_DMA_CTRL_LANE_SHIFT;
    if ((yoff | end) & (bus_bytes - 1u)) {
        /* (The lane has no tile queued and not started, so done means done with them all.) */
        if ((err = lane_wait(l, &st)) != FF_ERR_NONE ||
            (err = store_y(e, l_r[l], yoff, ya, l_ybytes[l], ctrl)) != FF_ERR_NONE)
            return err;
    } else if ((err = dma_push(e, ya, LOCAL(l_r[l] + 2u, 0u), end - ya,
                               FF_DMA_CTRL_TO_DDR_MASK | FF_DMA_CTRL_ZERO_MASK | ctrl)) !=
               FF_ERR_NONE) {
        return err; /* (whole beats: store_y's transfer, without its calls) */
    }
    l_yseq[l] = dma_seq[e];
    return FF_ERR_NONE;
}

/* Queue the zeros for y / C (no ACCUMULATE), at most `pieces` more pieces of a y buffer's size
 * from zy_off on, from lane 0's y buffer, which the job's start has filled with zeros. */
static u32 zy_off;
static u32 zero_y(u32 pieces)
{
    u32 total = m * row_bytes, err;
    for (; zy_off < total && pieces; zy_off += y_bytes, pieces--) {
        u32 nb = total - zy_off < y_bytes ? total - zy_off : y_bytes;
        if ((err = store_y(0, LANE0_Y - 2u, 0, y_addr + zy_off, nb, 0)) != FF_ERR_NONE)
            return err;
    }
    return FF_ERR_NONE;
}

/* Lane l's next tile: its tile-list entry read, its directory entry read and checked. Needs no
 * DMA unless a window has to be refilled (then waits for it, and with it for everything
 * queued before it). */
static inline __attribute__((always_inline)) u32 prepare(u32 l)
{
    FF_PHASE(PH_PREPARE);
    u32 p = l_pos[l], err;
    u32 slot = l_slot[l];
    u32 ta = tl_base + 4u * p;
    if ((ta < tw_a0[l] || ta + 4u > tw_a1[l]) &&
        (err = refill(&tw_a0[l], &tw_a1[l], slot, ta, job_end)) != FF_ERR_NONE)
        return err;
    if (!dma_finished(0, win_seq) && (err = dma_wait(0, win_seq)) != FF_ERR_NONE)
        return err;
    u32 d = cpu_local(0, 0)[(slot + ta - tw_a0[l]) / 4u];
    if (d >= n_tiles)
        return bad(FF_ERR_BAD_IMAGE, p);
    if (l_prev[l] != NONE && d <= l_prev[l])
        return bad(FF_ERR_BAD_SCHEDULE, p);
    l_prev[l] = d;
    u32 da = dir_base + DIR_ENTRY * d;
    if (da < dw_a0[l] || da + DIR_ENTRY > dw_a1[l]) {
        if ((err = refill(&dw_a0[l], &dw_a1[l], slot + win_cap, da,
                          dir_base + DIR_ENTRY * n_tiles)) != FF_ERR_NONE ||
            (err = dma_wait(0, win_seq)) != FF_ERR_NONE)
            return err;
    }
    volatile u32 *de = cpu_local(0, 0) + (slot + win_cap + da - dw_a0[l]) / 4u;
    u32 off = de[0], off_hi = de[1], nbytes = de[2], i = de[4], j = de[5];
    if (off_hi || off & 15u || nbytes < 32u || nbytes & 15u || off > a_bytes ||
        nbytes > a_bytes - off || i >= grid_r || j >= grid_c)
        return bad(FF_ERR_BAD_IMAGE, p);
    if (l_i[l] != NONE && i < l_i[l])
        return bad(FF_ERR_BAD_SCHEDULE, p);
    if (nbytes > tile_bytes)
        return bad(FF_ERR_TOO_BIG, p);
    /* The tile's sections, where docs/dma-image.md puts them for its rows and nvals (the lane
     * is configured from them before its header has landed): it must end where they do. */
    u32 nvals = de[3], rows = i == grid_r - 1u ? last_rows : tile_rows;
    u32 crd = (TILE_HEAD + 4u * (rows + 1u) + 15u) & ~15u;
    u32 vals = (crd + coord_bytes * nvals + 15u) & ~15u;
    if (nvals > nbytes / 4u || ((vals + 4u * nvals + 15u) & ~15u) != nbytes)
        return bad(FF_ERR_BAD_IMAGE, p);
    /* The columns the tile reads, when x is in several slices (with one, x is loaded once
     * per lane, whole): directory words 6 and 7, the first rounded down to FF_X_GRAIN columns
     * (both 0 in images that do not record them: the whole slice). */
    if (grid_c > 1u) {
        u32 cols = j == grid_c - 1u ? last_cols : tile_cols, xlo = 0, xhi = cols;
        if (de[7]) {
            xlo = de[6];
            xhi = de[7];
            if (xlo >= xhi || xhi > cols)
                return bad(FF_ERR_BAD_IMAGE, p);
            xlo &= ~(FF_X_GRAIN - 1u);
        }
        n_xlo[l] = xlo;
        n_xhi[l] = xhi;
    }
    n_off[l] = off;
    n_bytes[l] = nbytes;
    n_crd[l] = crd;
    n_vals[l] = vals;
    n_i[l] = i;
    n_j[l] = j;
    prep_mask |= 1u << l;
    return FF_ERR_NONE;
}

/* Queue the transfers of lane l's prepared tile. With halves (a constant: load_halves() is
 * the copy with them, the walk inlines the one without), the tile first, into the free half
 * of the tile buffer, when it and the lane's last tile each fit a half. Then, each to run
 * once the lane is done with the tile it may be computing (AFTER_LANE): when the row tile
 * changes, the previous y block out and the new one in (ACCUMULATE) or cleared; the x slice
 * unless the lane holds it; the tile, when not queued first. The engine runs them in this
 * order, so each finds its buffer free. Then write the lane's configuration (latched at its
 * start: a running lane keeps its own) and arm it: the lane starts itself once the tile has
 * landed. The lane has no tile queued and not started. */
static inline __attribute__((always_inline)) u32 load(u32 l, const u32 halves)
{
    FF_PHASE(PH_LOAD);
    u32 p = l_pos[l], err, i = n_i[l], j = n_j[l], zero_from = 0, zero_to = 0;
    u32 e = l_e[l], rt = l_r[l];
    u32 after = FF_DMA_CTRL_AFTER_LANE_MASK | l << FF_DMA_CTRL_LANE_SHIFT;
    /* With halves, two tiles that each fit half the tile buffer take its halves in turn: the
     * lane's last tile has started (or the lane is idle), so the half of the one before it
     * is free and this tile's transfer runs at once, ahead of those that wait for the lane,
     * landing while the lane computes. A larger tile, or one after a larger one, waits for
     * the lane and starts at the buffer's start (tb: its offset there). */
    u32 tb = 0, ahead = 0;
    if (halves) {
        u32 fits = n_bytes[l] <= half;
        ahead = fits && l_tb[l] != NONE;
        tb = ahead ? l_tb[l] ^ half : 0u;
        l_tb[l] = fits ? tb : NONE;
        if (ahead && (err = dma_push(e, a_addr + n_off[l], LOCAL(rt, tb), n_bytes[l], 0)) !=
                         FF_ERR_NONE)
            return err;
        FF_LANE_CFG0(l) = tb + TILE_HEAD;
    }
    if (i != l_i[l]) {
        u32 rows = i == grid_r - 1u ? last_rows : tile_rows;
        u32 ya = y_addr + y_stride * i, yoff = ya & (bus_bytes - 1u);
        u32 ylen = up(yoff + row_bytes * rows), clean = l_clean[l];
        if (ylen > y_bytes)
            return bad(FF_ERR_TOO_BIG, p);
        if (l_i[l] != NONE && (err = flush_y(l)) != FF_ERR_NONE)
            return err;
        if (flags & 1u) {
            if ((err = dma_push(e, ya - yoff, LOCAL(rt + 2u, 0u), ylen, after)) != FF_ERR_NONE)
                return err;
            l_yseq[l] = dma_seq[e];
        } else if (ylen > clean) {
            /* By the CPU below when the lane has never run in this job (its first y block: the
             * CPU cannot reach a running lane's buffers), no transfer touches the buffer and
             * the tile's transfer outlasts it (about 2 cycles per byte against 1/8 cycle per
             * tile byte, with room for the rest of the firmware's work); else by DMA. */
            if (l_i[l] == NONE && dma_finished(e, l_yseq[l]) &&
                2u * (ylen - clean) + 1536u < n_bytes[l] / 8u) {
                zero_from = clean / 4u;
                zero_to = ylen / 4u;
            } else {
                if ((err = dma_push(e, 0, LOCAL(rt + 2u, clean), ylen - clean,
                                    FF_DMA_CTRL_ZERO_MASK | after)) != FF_ERR_NONE)
                    return err;
                l_yseq[l] = dma_seq[e];
            }
            l_clean[l] = ylen;
        }
        l_i[l] = i;
        row_tiles++;
        l_ya[l] = ya;
        l_yoff[l] = yoff;
        l_ybytes[l] = row_bytes * rows;
        FF_LANE_CFG3(l) = rows;
        FF_LANE_CFG7(l) = yoff;
    }
    /* The x window: the slice from the tile's first column, to its last if the tile's
     * columns start past the end of the lane's previous tile's, else to the slice's end.
     * Overlapping windows (a band wider than it moves from one of the lane's tiles to the
     * next: its tiles move right as their rows go down) mean that the lane's next tiles in
     * the slice read what lies right of this one: loaded now, it costs no more transfers
     * than whole slices (each about 350 cycles of the CPU). Windows apart mean the next tile
     * needs a transfer anyway, and only its own window. */
    u32 xlo = 0, xhi = NONE, fresh = l_xj[l] != j; /* xhi NONE: to the slice's end */
    if (grid_c > 1u) {
        u32 x0 = tile_cols * j, apart;
        xlo = n_xlo[l];
        xhi = n_xhi[l];
        apart = l_xend[l] != NONE && x0 + xlo >= l_xend[l];
        l_xend[l] = x0 + xhi;
        fresh |= xlo < l_xlo[l] || xhi > l_xhi[l];
        if (!apart)
            xhi = NONE;
    }
    if (fresh) {
        u32 cols = j == grid_c - 1u ? last_cols : tile_cols;
        if (xhi > cols)
            xhi = cols;
        /* Column xlo lands at byte xoff of the buffer; the lane adds its columns to x_base
         * modulo the buffer's size, so x_base is xoff less xlo's row offset, wrapped. */
        u32 xa = x_addr + x_stride * j + row_bytes * xlo, xoff = xa & (bus_bytes - 1u);
        u32 xlen = up(xoff + row_bytes * (xhi - xlo));
        if (xlen > x_bytes)
            return bad(FF_ERR_TOO_BIG, p);
        if ((err = dma_push(e, xa - xoff, LOCAL(rt + 1u, 0u), xlen, after)) != FF_ERR_NONE)
            return err;
        l_xj[l] = j;
        l_xlo[l] = xlo;
        l_xhi[l] = xhi;
        FF_LANE_CFG6(l) = (xoff - row_bytes * xlo) & (x_bytes - 1u);
    }
    if (!ahead &&
        (err = dma_push(e, a_addr + n_off[l], LOCAL(rt, 0u), n_bytes[l], after)) != FF_ERR_NONE)
        return err;
    e_loading[e]++;
    if (zero_to) {
        volatile u32 *yb = cpu_local(e, rt + 2u);
        u32 w = zero_from;
        for (; w + 4u <= zero_to; w += 4u) {
            yb[w] = 0;
            yb[w + 1u] = 0;
            yb[w + 2u] = 0;
            yb[w + 3u] = 0;
        }
        for (; w < zero_to; w++)
            yb[w] = 0;
    }
    /* Armed last: the CPU's zeros above go through the buffer's port that the lane takes
     * when it starts. */
    /* (The words the job fixes, 4 and 5, were written at its start, 0 too without halves,
     * and the row and x slice words when they changed.) */
    FF_LANE_CFG1(l) = tb + n_crd[l];
    FF_LANE_CFG2(l) = tb + n_vals[l];
    FF_LANE_CTRL(l) = FF_LANE_CTRL_ARM_MASK | dma_seq[e] << FF_LANE_CTRL_SEQ_SHIFT;
    u32 bit = 1u << l;
    q_mask |= bit;
    open_mask |= bit;
    prep_mask &= ~bit;
    if (++l_pos[l] == l_end[l])
        todo_mask &= ~bit;
    return FF_ERR_NONE;
}

/* load() with halves, out of line: the walk inlines the copy without them, SpMV's, as it was
 * before the halves (with both copies inlined the walk's registers were allocated anew and
 * SpMV's jobs took up to 3.5% longer). */
static __attribute__((noinline)) u32 load_halves(u32 l) { return load(l, 1u); }

static u32 check_job(const volatile u32 *h, const u32 *lt)
{
    u32 version = h[1] & 0xFFFFu, lanes = h[2] >> 16;
    kernel = (h[1] >> 16) & 0xFFu;
    dtype = h[1] >> 24;
    flags = (h[2] >> 8) & 0xFFu;
    m = h[3];
    n = h[4];
    k = h[5];
    n_tiles = h[6];
    a_addr = h[8];
    a_bytes = h[10];
    x_addr = h[12];
    y_addr = h[14];
    u32 c3 = FF_CONFIG3;
    u32 max_k = field(c3, FF_CONFIG3_MAX_K_MASK, FF_CONFIG3_MAX_K_SHIFT);
    u32 kernels = field(c3, FF_CONFIG3_KERNELS_MASK, FF_CONFIG3_KERNELS_SHIFT);
    u32 vtype = field(FF_CONFIG0, FF_CONFIG0_VTYPE_MASK, FF_CONFIG0_VTYPE_SHIFT);
    x_bytes = 1u << field(c3, FF_CONFIG3_X_LOG2_MASK, FF_CONFIG3_X_LOG2_SHIFT);
    if (version != 1u)
        return bad(FF_ERR_BAD_JOB, 4);
    if ((kernel != 1u && kernel != 2u) || !(kernels & (1u << (kernel - 1u))))
        return bad(FF_ERR_BAD_JOB, 6);
    if ((dtype != 1u && dtype != 2u) || !(dtype & vtype)) /* VTYPE: mask of the codes */
        return bad(FF_ERR_BAD_JOB, 7);
    if (h[2] & 0xFFu)
        return bad(FF_ERR_BAD_JOB, 8);
    if (flags & ~3u || flags == 3u) /* ACCUMULATE, or COVERED: not both */
        return bad(FF_ERR_BAD_JOB, 9);
    if (lanes != n_lanes)
        return bad(FF_ERR_BAD_LANES, lanes);
    if (k == 0u || (kernel == 1u && k != 1u) || k > max_k)
        return bad(FF_ERR_BAD_JOB, 20);
    row_bytes = 4u * k;
    if (m > 0x3FFFFFFFu / k)
        return bad(FF_ERR_BAD_JOB, 12);
    if (n > 0x3FFFFFFFu / k)
        return bad(FF_ERR_BAD_JOB, 16);
    if (n_tiles > 0x0FFFFFFFu || h[7] != ((96u + 8u * lanes + 4u * n_tiles + 15u) & ~15u))
        return bad(FF_ERR_BAD_JOB, 28);
    for (u32 w = 9; w < 16u; w += 2u)
        if (h[w])
            return bad(FF_ERR_BAD_JOB, 4u * w);
    if (h[16] != row_bytes)
        return bad(FF_ERR_BAD_JOB, 64);
    if (h[17] != row_bytes)
        return bad(FF_ERR_BAD_JOB, 68);
    if (h[18] != 96u)
        return bad(FF_ERR_BAD_JOB, 72);
    if (h[19] != 96u + 8u * lanes)
        return bad(FF_ERR_BAD_JOB, 76);
    for (u32 w = 20; w < HEAD_WORDS; w++)
        if (h[w])
            return bad(FF_ERR_BAD_JOB, 80);
    if (down(a_addr) != a_addr)
        return bad(FF_ERR_BAD_ALIGN, a_addr);
    if (down(x_addr) != x_addr)
        return bad(FF_ERR_BAD_ALIGN, x_addr);
    if (down(y_addr) != y_addr)
        return bad(FF_ERR_BAD_ALIGN, y_addr);
    /* y / C is written while A, x / B and the descriptor are read: an output over any of them
     * would corrupt the job's own inputs (and the walk of its tile list). */
    u32 y_len = m * row_bytes;
    if (y_len && (overlap(y_addr, y_len, a_addr, a_bytes) ||
                  overlap(y_addr, y_len, x_addr, n * row_bytes) ||
                  overlap(y_addr, y_len, job_addr, h[7])))
        return bad(FF_ERR_BAD_JOB, 56);
    job_end = job_addr + h[7];
    tl_base = job_addr + h[19];
    /* Rule 2 of the schedule: the lane table covers the tile list in order. */
    u32 next = 0;
    for (u32 l = 0; l < lanes; l++) {
        if (lt[2u * l] != next || lt[2u * l + 1u] > n_tiles - next)
            return bad(FF_ERR_BAD_SCHEDULE, next);
        next += lt[2u * l + 1u];
    }
    if (next != n_tiles)
        return bad(FF_ERR_BAD_SCHEDULE, next);
    return FF_ERR_NONE;
}

/* A's image header, read by transfer s of engine 0 (queued before check_job, so that the
 * read overlaps the checks). */
static u32 check_image(u32 s)
{
    u32 err = dma_wait(0, s);
    if (err != FF_ERR_NONE)
        return err;
    volatile u32 *g = cpu_local(0, 0) + IMAGE_HEAD / 4u;
    u32 h1 = g[1], h2 = g[2];
    coord_bytes = h2 & 0xFFu;
    tile_rows = g[17];
    tile_cols = g[21];
    u32 dir_off = g[8];
    if (g[0] != IMAGE_MAGIC || (h1 & 0xFFFFu) != 1u || ((h1 >> 16) & 0xFFu) != 2u ||
        h1 >> 24 != dtype || (coord_bytes != 2u && coord_bytes != 4u) ||
        h2 >> 16 != DIR_ENTRY || g[3] != n_tiles || g[4] != a_bytes || g[5] || g[9] ||
        g[16] != m || g[20] != n || (g[18] & 0xFFFFu) != 0u || (g[22] & 0xFFFFu) != 0x0101u ||
        tile_rows == 0u || tile_cols == 0u || dir_off & 15u || dir_off > a_bytes ||
        n_tiles > (a_bytes - dir_off) / DIR_ENTRY)
        return bad(FF_ERR_BAD_IMAGE, NONE);
    dir_base = a_addr + dir_off;
    return FF_ERR_NONE;
}

u32 job_ffjb(u32 addr)
{
    u32 lt[2u * MAX_LANES], err;
    FF_PHASE(PH_HEADER);
    job_addr = addr;
    if (n_lanes > MAX_LANES || tile_bytes < MISC_BYTES + n_lanes * 2u * 32u)
        return bad(FF_ERR_BAD_LANES, n_lanes);
    u32 head = up(96u + 8u * n_lanes);
    if ((err = dma(0, addr, LOCAL(0u, 0u), head, 0)) != FF_ERR_NONE)
        return err;
    /* The header is read where it landed (check_job is its only reader, before anything
     * else is written there); the lane table is copied, for the lanes' set-up after y's
     * first zeros, whose read-modify-write beats land there. */
    const volatile u32 *h = cpu_local(0, 0);
    u32 lanes = h[2] >> 16;
    for (u32 w = 0; w < 2u * n_lanes; w++)
        lt[w] = h[HEAD_WORDS + w];
    if (lanes != n_lanes)
        return bad(FF_ERR_BAD_LANES, lanes);
    /* The engine works while the CPU checks: A's image header is read (its address is checked
     * below) and, unless the job accumulates, lane 0's y buffer is filled with zeros for
     * zero_y (neither does harm if the job is refused). */
    if ((err = dma_push(0, h[8], LOCAL(0u, IMAGE_HEAD), 96u, 0)) != FF_ERR_NONE)
        return err;
    u32 img = dma_seq[0];
    y_bytes = 1u << field(FF_CONFIG3, FF_CONFIG3_Y_LOG2_MASK, FF_CONFIG3_Y_LOG2_SHIFT);
    /* y / C is zeroed unless the job ACCUMULATEs (flags bit 0) or its tiles cover every row
     * tile (bit 1, COVERED: every row is then written whole; checked at the end). */
    u32 zero = !(h[2] >> 8 & 3u);
    if (zero &&
        (err = dma_push(0, 0, LOCAL(LANE0_Y, 0u), y_bytes, FF_DMA_CTRL_ZERO_MASK)) != FF_ERR_NONE)
        return err;
    FF_PHASE(PH_CHECK_JOB);
    if ((err = check_job(h, lt)) != FF_ERR_NONE)
        return err;
    FF_PHASE(PH_CHECK_IMAGE);
    if ((err = check_image(img)) != FF_ERR_NONE)
        return err;
    FF_PHASE(PH_SETUP);
    /* Pieces of y's zeros keep the engine busy while the CPU sets up (2 pieces: about 4,000
     * cycles) and while it waits for the tile-list windows (1 more). */
    zy_off = 0;
    if (zero && (err = zero_y(2)) != FF_ERR_NONE)
        return err;
    win_cap = ((tile_bytes - MISC_BYTES) / (2u * n_lanes)) & ~31u;
    half = k > 1u ? tile_bytes / 2u : 0u;
    grid_r = (m + tile_rows - 1u) / tile_rows;
    grid_c = (n + tile_cols - 1u) / tile_cols;
    last_rows = m - (grid_r - 1u) * tile_rows;
    last_cols = n - (grid_c - 1u) * tile_cols;
    y_stride = row_bytes * tile_rows;
    x_stride = row_bytes * tile_cols;
    q_mask = r_mask = todo_mask = prep_mask = open_mask = 0;
    /* When the whole tile list and the whole directory each fit one window, the lanes share
     * one of each: two transfers at the start instead of two per lane, and no refills. */
    u32 dir_end = dir_base + DIR_ENTRY * n_tiles;
    u32 shared = n_tiles && job_end - down(tl_base) <= win_cap &&
                 dir_end - down(dir_base) <= win_cap;
    for (u32 l = 0, e = 0, r = 1; l < n_lanes; l++) {
        l_e[l] = e; /* l % n_dma, and its region 1 + 3 * (l / n_dma) */
        l_r[l] = r;
        if (++e == n_dma) {
            e = 0;
            r += 3u;
        }
        l_yseq[l] = dma_seq[l_e[l]]; /* nothing queued touches a y buffer */
        l_slot[l] = shared ? MISC_BYTES : MISC_BYTES + l * 2u * win_cap;
        l_pos[l] = lt[2u * l];
        l_end[l] = lt[2u * l] + lt[2u * l + 1u];
        FF_LANE_CTRL(l) = FF_LANE_CTRL_CLEAR_MASK; /* FAILED cleared, disarmed */
        FF_LANE_CFG0(l) = TILE_HEAD;
        FF_LANE_CFG4(l) = kernel | dtype << 8 | coord_bytes << 16;
        FF_LANE_CFG5(l) = k;
        l_prev[l] = l_xj[l] = l_xend[l] = l_i[l] = l_tb[l] = NONE;
        if (l_pos[l] != l_end[l])
            todo_mask |= 1u << l;
        l_clean[l] = l == 0 && zero ? y_bytes : 0;
        tw_a0[l] = tw_a1[l] = dw_a0[l] = dw_a1[l] = 0;
    }
    /* Every lane's first windows: the tile-list windows; once they have landed, the
     * directory windows (the entries say where they start); then the rest of y's zeros; the
     * lanes' first tiles queue up behind. (Refilled one lane at a time by prepare(), each
     * window would wait for the transfers queued for the lanes before it, and the engine
     * would then idle while the CPU prepared the lane.) */
    if (shared) {
        /* (The directory window's start is known: queued at once, not after the tile list.) */
        if ((err = refill(&tw_a0[0], &tw_a1[0], MISC_BYTES, tl_base, job_end)) != FF_ERR_NONE ||
            (err = refill(&dw_a0[0], &dw_a1[0], MISC_BYTES + win_cap, dir_base, dir_end)) !=
                FF_ERR_NONE)
            return err;
        for (u32 l = 1; l < n_lanes; l++) {
            tw_a0[l] = tw_a0[0];
            tw_a1[l] = tw_a1[0];
            dw_a0[l] = dw_a0[0];
            dw_a1[l] = dw_a1[0];
        }
    }
    for (u32 l = 0; l < n_lanes; l++)
        if (!shared && l_pos[l] < l_end[l] &&
            (err = refill(&tw_a0[l], &tw_a1[l], l_slot[l], tl_base + 4u * l_pos[l], job_end)) !=
                FF_ERR_NONE)
            return err;
    u32 tw_seq = win_seq;
    if (zero && (err = zero_y(1)) != FF_ERR_NONE)
        return err;
    FF_PHASE(PH_WINDOWS);
    if (!shared && (err = dma_wait(0, tw_seq)) != FF_ERR_NONE)
        return err;
    for (u32 l = 0; l < n_lanes; l++) {
        if (shared || l_pos[l] == l_end[l])
            continue;
        u32 d = cpu_local(0, 0)[(l_slot[l] + tl_base + 4u * l_pos[l] - tw_a0[l]) / 4u];
        if (d < n_tiles && (err = refill(&dw_a0[l], &dw_a1[l], l_slot[l] + win_cap,
                                         dir_base + DIR_ENTRY * d, dir_end)) != FF_ERR_NONE)
            return err;
    }
    FF_PHASE(PH_ZEROS);
    if (zero) {
        if ((err = zero_y(NONE)) != FF_ERR_NONE)
            return err;
        l_yseq[0] = dma_seq[0];
        /* With several engines, wait: a lane on another engine must not write a block out
         * before these zeros have landed (one engine runs its queue in order). */
        if (n_dma > 1u && (err = dma_drain()) != FF_ERR_NONE)
            return err;
    }
    /* Tiles finished (each also counted in TILE_DONE), and not yet queued. */
    u32 tiles = 0, left = n_tiles;
    row_tiles = 0;
    for (u32 e = 0; e < n_dma; e++)
        e_loading[e] = 0;
    u32 busy = 1;
    for (;;) {
        /* One read of each summary serves every lane: starts pending, lanes done with no
         * start pending (idle), lanes whose tile ended with an error. */
        u32 now = FF_CYCLES_LO, armed = FF_LANE_ARMED, idle = FF_LANE_DONE;
        u32 failed = FF_LANE_FAILED, was_busy = busy;
        FF_PHASE(busy ? PH_WALK : PH_POLL);
        busy = 0;
        if (failed)
            return bad(FF_ERR_LANE_ERROR, failed);
        /* The engines' errors and watchdog, in rounds after one with nothing to do (an
         * engine that fails or hangs starts no lane, which soon leaves the CPU so; the queues'
         * room is checked where a tile is queued). */
        if (!was_busy)
            for (u32 e = 0; e < n_dma; e++)
                if (dma_seq[e] != dma_done[e] && (err = dma_poll(e, now)) != FF_ERR_NONE)
                    return err;
        /* Queued tiles that have started: the lane's tile before, if any, has finished. */
        u32 started = q_mask & ~armed;
        for (u32 l = 0, m = started; m; l++, m >>= 1) {
            if (m & 1u) {
                if (r_mask >> l & 1u) {
                    tiles++;
                    FF_TILE_DONE = 1;
                }
                l_t0[l] = now;
                e_loading[l_e[l]]--;
            }
        }
        q_mask &= ~started;
        r_mask |= started;
        idle &= ~started; /* read before their starts were seen */
        for (u32 m = r_mask & idle; m; m &= m - 1u) {
            tiles++;
            FF_TILE_DONE = 1;
        }
        r_mask &= ~idle;
        /* The lane watchdog, from a tile's start: looked at once the CPU has time to spare
         * (a lane that never finishes leaves it so, soon enough). A lane that has finished
         * its tile but waits to start the next (LANE_DONE counts it only once no start is
         * pending) waits for a transfer: the DMA watchdog's to judge, not this one, or a
         * DDR that stops answering would be blamed on the lanes. */
        if (!was_busy)
            for (u32 l = 0, m = r_mask; m; l++, m >>= 1)
                if (m & 1u && now - l_t0[l] > timeout &&
                    !(FF_LANE_STATUS(l) & FF_LANE_STATUS_DONE_MASK))
                    return bad(FF_ERR_LANE_TIMEOUT, FF_LANE_DONE);
        /* A lane's next tile is read and queued while it computes (its transfers wait for
         * it), once its last one has started: the lane has one set of configuration words to
         * arm. Every lane that can take one gets it in this round, idle lanes first (with the
         * most tiles left first, so that the lanes finish together), then the running ones,
         * the one that started its tile longest ago first: it is likely to finish first, and
         * an engine runs its transfers in order. The lane's tile after that is read at once,
         * so that the next round can queue it. */
        for (u32 can = todo_mask & ~q_mask; can;) {
            u32 best = NONE, most = 0;
            for (u32 l = 0, m = can; m; l++, m >>= 1) {
                if (!(m & 1u))
                    continue;
                u32 score =
                    r_mask >> l & 1u ? now - l_t0[l] : 0x80000000u | (l_end[l] - l_pos[l]);
                if (best == NONE || score > most) {
                    best = l;
                    most = score;
                }
            }
            can &= ~(1u << best);
            /* Only when the engine has room for the whole tile, and fewer than LOOKAHEAD
             * tiles waiting to start: never wait for room here, other lanes may need
             * attention. */
            u32 e = l_e[best];
            if (e_loading[e] >= LOOKAHEAD)
                continue;
            if (dma_seq[e] - dma_done[e] > FF_DMA_QUEUE_DEPTH - TILE_XFERS &&
                (err = dma_check(e)) != FF_ERR_NONE)
                return err;
            if (dma_seq[e] - dma_done[e] > FF_DMA_QUEUE_DEPTH - TILE_XFERS)
                continue;
            if ((!(prep_mask >> best & 1u) && (err = prepare(best)) != FF_ERR_NONE) ||
                (err = half ? load_halves(best) : load(best, 0u)) != FF_ERR_NONE ||
                (todo_mask >> best & 1u && (err = prepare(best)) != FF_ERR_NONE))
                return err;
            busy = 1;
            left--;
        }
        /* Each lane's last y block: written out once every tile is queued (so that these
         * write-outs keep the engine busy while the last lanes compute), and the lane's last
         * tile has started. */
        if (!left) {
            for (u32 l = 0, m = open_mask & ~q_mask; m; l++, m >>= 1) {
                if (m & 1u) {
                    FF_PHASE(PH_FLUSH);
                    if ((err = flush_y(l)) != FF_ERR_NONE)
                        return err;
                    open_mask &= ~(1u << l);
                    busy = 1;
                }
            }
        }
        if (!(q_mask | r_mask | todo_mask | open_mask))
            break;
    }
    FF_PHASE(PH_END);
    if ((err = dma_drain()) != FF_ERR_NONE)
        return err;
    if (FF_LANE_FAILED)
        return bad(FF_ERR_LANE_ERROR, FF_LANE_FAILED);
    /* COVERED: no row of y / C was zeroed, so every row tile must have had a tile. */
    if (flags & 2u && row_tiles != grid_r)
        return bad(FF_ERR_BAD_SCHEDULE, row_tiles);
    FF_MAILBOX(1) = tiles;
    return FF_ERR_NONE;
}
