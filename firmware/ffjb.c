/* The SpMV/SpMM job walker: runs the FFJB descriptor of docs/jobs.md on the shell's lanes.
 *
 * 1. Read the descriptor's header and lane table, and A's image header and mode table, and
 *    check them (BAD_JOB with the field's byte offset, BAD_LANES, BAD_ALIGN, BAD_IMAGE,
 *    BAD_SCHEDULE).
 * 2. Without ACCUMULATE, write zeros over all of y / C (rows that no tile touches must read 0).
 * 3. Walk every lane's tile list at once: whenever a lane is idle and has tiles left, load its
 *    next tile (directory entry -> tile bytes into the lane's tile buffer, the x / B slice into
 *    its x buffer unless it already holds that slice), open the row tile's y block when the
 *    row tile changes (zero fill, or load it with ACCUMULATE; write the previous block out
 *    first), write the 8 configuration words and start the lane. Poll the running lanes with a
 *    watchdog. A lane's last row tile is written out when its list is done. While one lane
 *    loads, the others compute.
 *
 * Scratch: tile buffer 0 of engine 0 (region 0), which no lane uses: the first MISC_BYTES hold
 * the descriptor and image headers while they are read, and single beats for the
 * read-modify-write of y blocks that do not start or end on a bus beat; after that, each lane
 * has a window of its tile-list entries and one of directory entries, refilled by DMA when the
 * lane walks past it.
 *
 * y blocks and x slices need not be bus-aligned (any tile shape): the aligned range around
 * them is moved and the lane's x_base / y_base point inside it. A y block is written out
 * whole beats at a time, so the words of a partial first or last beat that belong to the
 * neighbouring rows are first copied in from DDR (the firmware is the only writer of y and
 * runs one transfer at a time, so this read-modify-write is atomic).
 */
#include "fw.h"

#define NONE 0xFFFFFFFFu
#define MAX_LANES 8u /* the walker's state for more does not fit the 8 KiB RAM */
#define MISC_BYTES 256u
#define IMAGE_MAGIC 0x49444646u /* "FFDI" */
#define HEAD_WORDS 24u          /* the FFJB header: 96 bytes */
#define DIR_ENTRY 32u           /* a 2-D image's directory entry */

#define LOCAL(region, offset) (((region) << FF_LOCAL_REGION_SHIFT) | (offset))

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
static u32 l_run[MAX_LANES] NOINIT;
static u32 l_t0[MAX_LANES] NOINIT;
static u32 l_prev[MAX_LANES] NOINIT;
static u32 l_xj[MAX_LANES] NOINIT;
static u32 l_i[MAX_LANES] NOINIT;
static u32 l_ya[MAX_LANES] NOINIT;
static u32 l_yoff[MAX_LANES] NOINIT;
static u32 l_ybytes[MAX_LANES] NOINIT;
static u32 tw_a0[MAX_LANES] NOINIT;
static u32 tw_a1[MAX_LANES] NOINIT;
static u32 dw_a0[MAX_LANES] NOINIT;
static u32 dw_a1[MAX_LANES] NOINIT;
static u32 l_rows[MAX_LANES] NOINIT; /* rows of the open y block */
static u32 l_xoff[MAX_LANES] NOINIT; /* x_base of the loaded slice */
static u32 l_prep[MAX_LANES] NOINIT; /* the next tile is prepared: */
static u32 n_off[MAX_LANES] NOINIT;  /* its directory entry */
static u32 n_bytes[MAX_LANES] NOINIT;
static u32 n_nvals[MAX_LANES] NOINIT;
static u32 n_i[MAX_LANES] NOINIT;
static u32 n_j[MAX_LANES] NOINIT;
static u32 l_e[MAX_LANES] NOINIT;    /* the lane's DMA engine */
static u32 l_r[MAX_LANES] NOINIT;    /* its tile buffer's region; x: +1, y: +2 */
static u32 l_slot[MAX_LANES] NOINIT; /* its windows' scratch offset */
static u32 win_cap;                  /* bytes of each window */
/* Per job, so the per-tile path needs no division (about 40 cycles each on picorv32) and at
 * most two multiplications. */
static u32 grid_r, grid_c, last_rows, last_cols, y_stride, x_stride;

/* dma() out of line, for the transfers off the per-tile path (inlining each would not fit the
 * RAM). */
static __attribute__((noinline)) u32 xfer(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl)
{
    return dma(e, ddr, local, length, ctrl);
}

static inline u32 up(u32 v) { return (v + bus_bytes - 1u) & ~(bus_bytes - 1u); }
static inline u32 down(u32 v) { return v & ~(bus_bytes - 1u); }

static u32 bad(u32 code, u32 detail)
{
    info = detail;
    return code;
}

/* Make DDR bytes [addr, addr + 4) readable in a lane's window [*a0, *a1) (at scratch offset
 * off, cap bytes), refilling it by DMA from addr's beat up to at most end. */
static u32 refill(u32 *a0, u32 *a1, u32 off, u32 addr, u32 end)
{
    u32 start = down(addr);
    u32 stop = start + win_cap < end ? start + win_cap : end;
    u32 err = xfer(0, start, LOCAL(0u, off), up(stop) - start, 0);
    *a0 = start;
    *a1 = stop;
    return err;
}

/* Write a y block out: DDR [ya, ya + nbytes) from lane buffer (e, region) at byte yoff (the
 * block's offset within its first beat). */
static u32 store_y(u32 e, u32 region, u32 yoff, u32 ya, u32 nbytes)
{
    volatile u32 *yb = cpu_local(e, region + 2u);
    volatile u32 *misc = cpu_local(0, 0);
    u32 a0 = ya - yoff, end = ya + nbytes, a1 = up(end), err;
    if (yoff) {
        if ((err = xfer(0, a0, LOCAL(0u, 0u), bus_bytes, 0)) != FF_ERR_NONE)
            return err;
        for (u32 w = 0; w < yoff / 4u; w++)
            yb[w] = misc[w];
    }
    u32 tail = end & (bus_bytes - 1u);
    if (tail) {
        if ((err = xfer(0, a1 - bus_bytes, LOCAL(0u, 0u), bus_bytes, 0)) != FF_ERR_NONE)
            return err;
        u32 base = (a1 - bus_bytes - a0) / 4u;
        for (u32 w = tail / 4u; w < bus_bytes / 4u; w++)
            yb[base + w] = misc[w];
    }
    return dma(e, a0, LOCAL(region + 2u, 0u), a1 - a0, FF_DMA_CTRL_TO_DDR_MASK);
}

/* Lane l's y buffer: region_of(l) + 2. store_y takes the lane's base region. */
static u32 flush_y(u32 l)
{
    return store_y(l_e[l], l_r[l], l_yoff[l], l_ya[l], l_ybytes[l]);
}

/* Zero all of y / C (no ACCUMULATE), through lane 0's y buffer. */
static u32 zero_y(void)
{
    u32 total = m * row_bytes, e = l_e[0], r = l_r[0], err;
    if (total == 0u)
        return FF_ERR_NONE;
    if ((err = xfer(e, 0, LOCAL(r + 2u, 0u), y_bytes, FF_DMA_CTRL_ZERO_MASK)) != FF_ERR_NONE)
        return err;
    for (u32 off = 0; off < total; off += y_bytes) {
        u32 nb = total - off < y_bytes ? total - off : y_bytes;
        if ((err = store_y(e, r, 0, y_addr + off, nb)) != FF_ERR_NONE)
            return err;
    }
    return FF_ERR_NONE;
}

static u32 finish_pending(void);

/* The DMA of a tile still in flight (engine l_e[pend_lane]), and when it was started. */
static u32 pend_lane, pend_t0;

/* Lane l's next tile: its tile-list entry read, its directory entry read and checked. Needs no
 * DMA unless a window has to be refilled; runs while another lane's tile loads. */
static u32 prepare(u32 l)
{
    u32 p = l_pos[l], err;
    u32 slot = l_slot[l];
    u32 ta = tl_base + 4u * p;
    if (ta < tw_a0[l] || ta + 4u > tw_a1[l]) {
        if ((err = finish_pending()) != FF_ERR_NONE)
            return err;
        if ((err = refill(&tw_a0[l], &tw_a1[l], slot, ta, job_end)) != FF_ERR_NONE)
            return err;
    }
    u32 d = cpu_local(0, 0)[(slot + ta - tw_a0[l]) / 4u];
    if (d >= n_tiles)
        return bad(FF_ERR_BAD_IMAGE, p);
    if (l_prev[l] != NONE && d <= l_prev[l])
        return bad(FF_ERR_BAD_SCHEDULE, p);
    l_prev[l] = d;
    u32 da = dir_base + DIR_ENTRY * d;
    if (da < dw_a0[l] || da + DIR_ENTRY > dw_a1[l]) {
        if ((err = finish_pending()) != FF_ERR_NONE)
            return err;
        if ((err = refill(&dw_a0[l], &dw_a1[l], slot + win_cap, da,
                          dir_base + DIR_ENTRY * n_tiles)) != FF_ERR_NONE)
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
    n_off[l] = off;
    n_bytes[l] = nbytes;
    n_nvals[l] = de[3];
    n_i[l] = i;
    n_j[l] = j;
    l_prep[l] = 1;
    return FF_ERR_NONE;
}

/* Lane l's prepared tile: the row tile's y block (write the previous one out, zero or load
 * the new one) and the x slice, waited for; then start the tile's DMA and return without
 * waiting for it (launch() finishes the job when it is done). The engine must be idle. */
static u32 load(u32 l)
{
    u32 p = l_pos[l], err, i = n_i[l], j = n_j[l], zero_words = 0;
    u32 e = l_e[l], rt = l_r[l];
    if (i != l_i[l]) {
        u32 rows = i == grid_r - 1u ? last_rows : tile_rows;
        u32 ya = y_addr + y_stride * i, yoff = ya & (bus_bytes - 1u);
        u32 ylen = up(yoff + row_bytes * rows);
        if (ylen > y_bytes)
            return bad(FF_ERR_TOO_BIG, p);
        if (l_i[l] != NONE && (err = flush_y(l)) != FF_ERR_NONE)
            return err;
        /* ACCUMULATE: load the block. Otherwise zero it: by the CPU below while the tile's
         * transfer runs, when that is sure to finish first (about 2 cycles per byte against
         * 1/8 cycle per tile byte, with room for the rest of the firmware's work), since a zero
         * fill by DMA holds the engine, the bottleneck; else by DMA. */
        if (flags & 1u || 2u * ylen + 1536u >= n_bytes[l] / 8u) {
            u32 ctrl = flags & 1u ? 0u : FF_DMA_CTRL_ZERO_MASK;
            if ((err = dma(e, ya - yoff, LOCAL(rt + 2u, 0u), ylen, ctrl)) != FF_ERR_NONE)
                return err;
        } else {
            zero_words = ylen / 4u;
        }
        l_i[l] = i;
        l_ya[l] = ya;
        l_yoff[l] = yoff;
        l_ybytes[l] = row_bytes * rows;
        l_rows[l] = rows;
    }
    u32 xa = x_addr + x_stride * j, xoff = xa & (bus_bytes - 1u);
    if (l_xj[l] != j) {
        u32 cols = j == grid_c - 1u ? last_cols : tile_cols;
        u32 xlen = up(xoff + row_bytes * cols);
        if (xlen > x_bytes)
            return bad(FF_ERR_TOO_BIG, p);
        l_xj[l] = NONE;
        if ((err = dma(e, xa - xoff, LOCAL(rt + 1u, 0u), xlen, 0)) != FF_ERR_NONE)
            return err;
        l_xj[l] = j;
    }
    l_xoff[l] = xoff;
    FF_DMA_DDR(e) = a_addr + n_off[l];
    FF_DMA_LOCAL(e) = LOCAL(rt, 0u);
    FF_DMA_LENGTH(e) = n_bytes[l];
    FF_DMA_CTRL(e) = FF_DMA_CTRL_GO_MASK;
    pend_lane = l;
    pend_t0 = FF_CYCLES_LO;
    if (zero_words) {
        volatile u32 *yb = cpu_local(e, rt + 2u);
        u32 w = 0;
        for (; w + 4u <= zero_words; w += 4u) {
            yb[w] = 0;
            yb[w + 1u] = 0;
            yb[w + 2u] = 0;
            yb[w + 3u] = 0;
        }
        for (; w < zero_words; w++)
            yb[w] = 0;
    }
    return FF_ERR_NONE;
}

/* The pending tile DMA is done (or failed): check it, read the tile header (docs/dma-image.md:
 * nvals, vals_offset, level 0 (npos, -, -), level 1 (npos, seg_offset, crd_offset)), write the
 * lane's configuration and start it. */
static u32 start_lane(u32 l);

static u32 launch(u32 st)
{
    u32 l = pend_lane;
    pend_lane = NONE;
    if (st & FF_DMA_STATUS_ERROR_MASK)
        return bad(FF_ERR_DMA_READ, st);
    return start_lane(l);
}

/* Lane l's tile has landed in its tile buffer: configure and start it. */
static u32 start_lane(u32 l)
{
    u32 p = l_pos[l];
    volatile u32 *th = cpu_local(l_e[l], l_r[l]);
    u32 t_nvals = th[0], vals = th[1], npos0 = th[2], npos1 = th[5], seg = th[6], crd = th[7];
    if (t_nvals != n_nvals[l] || npos1 != t_nvals || npos0 != l_rows[l])
        return bad(FF_ERR_BAD_IMAGE, p);
    FF_LANE_CFG0(l) = seg;
    FF_LANE_CFG1(l) = crd;
    FF_LANE_CFG2(l) = vals;
    FF_LANE_CFG3(l) = npos0;
    FF_LANE_CFG4(l) = kernel | dtype << 8 | coord_bytes << 16;
    FF_LANE_CFG5(l) = k;
    FF_LANE_CFG6(l) = l_xoff[l];
    FF_LANE_CFG7(l) = l_yoff[l];
    FF_LANE_CTRL(l) = FF_LANE_CTRL_START_MASK;
    l_t0[l] = FF_CYCLES_LO;
    l_run[l] = 1;
    l_prep[l] = 0;
    l_pos[l] = p + 1u;
    return FF_ERR_NONE;
}

/* Wait for the pending tile DMA, if any, and launch its lane. */
static u32 finish_pending(void)
{
    if (pend_lane == NONE)
        return FF_ERR_NONE;
    u32 e = l_e[pend_lane];
    for (;;) {
        u32 st = FF_DMA_STATUS(e);
        if (!(st & FF_DMA_STATUS_BUSY_MASK))
            return launch(st);
        if (FF_CYCLES_LO - pend_t0 > timeout)
            return bad(FF_ERR_DMA_TIMEOUT, st);
    }
}

static u32 check_job(const u32 *h, const u32 *lt)
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
    y_bytes = 1u << field(c3, FF_CONFIG3_Y_LOG2_MASK, FF_CONFIG3_Y_LOG2_SHIFT);
    if (version != 1u)
        return bad(FF_ERR_BAD_JOB, 4);
    if ((kernel != 1u && kernel != 2u) || !(kernels & (1u << (kernel - 1u))))
        return bad(FF_ERR_BAD_JOB, 6);
    if ((dtype != 1u && dtype != 2u) || !(dtype & vtype)) /* VTYPE: mask of the codes */
        return bad(FF_ERR_BAD_JOB, 7);
    if (h[2] & 0xFFu)
        return bad(FF_ERR_BAD_JOB, 8);
    if (flags & ~1u)
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

static u32 check_image(void)
{
    u32 err = xfer(0, a_addr, LOCAL(0u, 0u), 96u, 0);
    if (err != FF_ERR_NONE)
        return err;
    volatile u32 *g = cpu_local(0, 0);
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
    u32 h[HEAD_WORDS], lt[2u * MAX_LANES], err;
    job_addr = addr;
    if (n_lanes > MAX_LANES || tile_bytes < MISC_BYTES + n_lanes * 2u * 32u)
        return bad(FF_ERR_BAD_LANES, n_lanes);
    u32 head = up(96u + 8u * n_lanes);
    if ((err = xfer(0, addr, LOCAL(0u, 0u), head, 0)) != FF_ERR_NONE)
        return err;
    volatile u32 *g = cpu_local(0, 0);
    for (u32 w = 0; w < HEAD_WORDS; w++)
        h[w] = g[w];
    u32 lanes = h[2] >> 16;
    for (u32 w = 0; w < 2u * n_lanes; w++)
        lt[w] = g[HEAD_WORDS + w];
    if (lanes != n_lanes)
        return bad(FF_ERR_BAD_LANES, lanes);
    if ((err = check_job(h, lt)) != FF_ERR_NONE)
        return err;
    if ((err = check_image()) != FF_ERR_NONE)
        return err;
    win_cap = ((tile_bytes - MISC_BYTES) / (2u * n_lanes)) & ~31u;
    grid_r = (m + tile_rows - 1u) / tile_rows;
    grid_c = (n + tile_cols - 1u) / tile_cols;
    last_rows = m - (grid_r - 1u) * tile_rows;
    last_cols = n - (grid_c - 1u) * tile_cols;
    y_stride = row_bytes * tile_rows;
    x_stride = row_bytes * tile_cols;
    for (u32 l = 0; l < n_lanes; l++) {
        l_e[l] = l % n_dma;
        l_r[l] = 1u + 3u * (l / n_dma);
        l_slot[l] = MISC_BYTES + l * 2u * win_cap;
        l_pos[l] = lt[2u * l];
        l_end[l] = lt[2u * l] + lt[2u * l + 1u];
        l_run[l] = 0;
        l_prev[l] = l_xj[l] = l_i[l] = NONE;
        l_prep[l] = 0;
        tw_a0[l] = tw_a1[l] = dw_a0[l] = dw_a1[l] = 0;
    }
    if (!(flags & 1u) && (err = zero_y()) != FF_ERR_NONE)
        return err;
    u32 tiles = 0;
    pend_lane = NONE;
    /* Each scan starts after the lane loaded last: the DMA engine serves the lanes in turn.
     * (Starting at lane 0 every time let the first lanes run ahead, and the last one finish
     * its tiles alone, loading and computing in turn.) */
    u32 rr = 0, held = NONE; /* held: a lane whose tile landed, started after the next load */
    for (;;) {
        u32 active = 0;
        for (u32 q = 0, l = rr; q < n_lanes; q++, l = l + 1u == n_lanes ? 0u : l + 1u) {
            /* The DMA engine is the bottleneck: look at the pending tile before every lane, so
             * its lane starts, and the next load begins, soon after it lands. */
            if (pend_lane != NONE) {
                u32 st = FF_DMA_STATUS(l_e[pend_lane]);
                if (!(st & FF_DMA_STATUS_BUSY_MASK)) {
                    /* Landed: start the next transfer first, then this lane (its start-up
                     * then overlaps the transfer; the lanes are not the bottleneck). */
                    if (held != NONE && (err = start_lane(held)) != FF_ERR_NONE)
                        return err;
                    if (st & FF_DMA_STATUS_ERROR_MASK)
                        return bad(FF_ERR_DMA_READ, st);
                    held = pend_lane;
                    pend_lane = NONE;
                } else if (FF_CYCLES_LO - pend_t0 > timeout) {
                    return bad(FF_ERR_DMA_TIMEOUT, st);
                }
                active = 1;
            }
            if (l_run[l]) {
                u32 st = FF_LANE_STATUS(l);
                if (!(st & FF_LANE_STATUS_DONE_MASK)) {
                    if (FF_CYCLES_LO - l_t0[l] > timeout)
                        return bad(FF_ERR_LANE_TIMEOUT, FF_LANE_DONE);
                    active = 1;
                    /* Read the lane's next tile's entries while it computes. */
                    if (!l_prep[l] && l_pos[l] < l_end[l] && (err = prepare(l)) != FF_ERR_NONE)
                        return err;
                    continue;
                }
                if (st & FF_LANE_STATUS_ERROR_MASK)
                    return bad(FF_ERR_LANE_ERROR, 1u << l);
                l_run[l] = 0;
                FF_TILE_DONE = 1;
                tiles++;
            }
            if (l == pend_lane || l == held)
                continue;
            if (l_pos[l] < l_end[l]) {
                active = 1;
                if (!l_prep[l] && (err = prepare(l)) != FF_ERR_NONE)
                    return err;
                if (pend_lane == NONE) {
                    if ((err = load(l)) != FF_ERR_NONE)
                        return err;
                    rr = l + 1u == n_lanes ? 0u : l + 1u;
                    if (held != NONE && (err = start_lane(held)) != FF_ERR_NONE)
                        return err;
                    held = NONE;
                }
            } else if (l_i[l] != NONE) {
                if (held != NONE && (err = start_lane(held)) != FF_ERR_NONE)
                    return err;
                held = NONE;
                if ((err = finish_pending()) != FF_ERR_NONE)
                    return err;
                if ((err = flush_y(l)) != FF_ERR_NONE)
                    return err;
                l_i[l] = NONE;
            }
        }
        if (held != NONE) { /* nothing else to load: start it now */
            if ((err = start_lane(held)) != FF_ERR_NONE)
                return err;
            held = NONE;
            active = 1;
        }
        if (!active)
            break;
    }
    FF_MAILBOX(1) = tiles;
    return FF_ERR_NONE;
}
