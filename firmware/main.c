/* Control firmware of the fiberflow shell.
 *
 * Waits for the host's doorbell, reads the job descriptor from DDR (by DMA into tile buffer 0),
 * runs the job (the FFJB SpMV/SpMM walker of ffjb.c, or a v0 bring-up job) and reports STATUS
 * and the job's cycles (MAILBOX[0]). Every wait has a watchdog on the cycle counter, so a stuck
 * DMA or lane ends in an error code, never a hang. Addresses and codes come from regs.h,
 * generated from overlay/regmap.py. See docs/firmware.md.
 */
#include "fw.h"

#define JOB_BYTES 32u
#define FFJB_MAGIC 0x424A4646u /* "FFJB": the SpMV/SpMM job of docs/jobs.md */

u32 bus_bytes;
u32 tile_bytes;
u32 n_lanes;
u32 n_dma;
u32 timeout;
u32 info; /* ERROR_INFO of the current job */
u32 dma_seq[FF_MAX_DMA];
u32 dma_done[FF_MAX_DMA];
u32 dma_t0[FF_MAX_DMA];
u32 dma_ddr[FF_MAX_DMA][FF_DMA_QUEUE_DEPTH];

u32 dma_check(u32 e) { return dma_poll(e, FF_CYCLES_LO); }

u32 dma_poll(u32 e, u32 now)
{
    u32 st = FF_DMA_STATUS(e);
    if (st & FF_DMA_STATUS_ERROR_MASK) {
        /* Let the failed transfer finish its bursts (the engine drops the rest of its queue):
         * the bus is then idle, and DONE_SEQ is the failed transfer's number. */
        while ((st & FF_DMA_STATUS_BUSY_MASK) && FF_CYCLES_LO - now <= timeout)
            st = FF_DMA_STATUS(e);
        info = st;
        FF_MAILBOX(2) = dma_ddr[e][done_seq(e, st) % FF_DMA_QUEUE_DEPTH];
        return st & FF_DMA_STATUS_TO_DDR_MASK ? FF_ERR_DMA_WRITE : FF_ERR_DMA_READ;
    }
    u32 done = done_seq(e, st);
    /* A transfer that waits for its lane (AFTER_LANE) is not charged: the lane's own
     * watchdog is. */
    if (done != dma_done[e] || st & FF_DMA_STATUS_WAITING_MASK) {
        dma_done[e] = done;
        dma_t0[e] = now;
    } else if (done != dma_seq[e] && now - dma_t0[e] > timeout) {
        info = st;
        return FF_ERR_DMA_TIMEOUT;
    }
    return FF_ERR_NONE;
}

/* dma_push with a full queue: wait for room first (fw.h's dma_push, inlined where it is
 * used, calls this only then). */
u32 dma_push_full(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl)
{
    u32 err;
    while (dma_seq[e] - dma_done[e] >= FF_DMA_QUEUE_DEPTH)
        if ((err = dma_check(e)) != FF_ERR_NONE)
            return err;
    dma_go(e, ddr, local, length, ctrl);
    return FF_ERR_NONE;
}

u32 lane_wait(u32 n, u32 *status)
{
    u32 t0 = FF_CYCLES_LO, st;
    while (((st = FF_LANE_STATUS(n)) & (FF_LANE_STATUS_DONE_MASK | FF_LANE_STATUS_ARMED_MASK)) !=
           FF_LANE_STATUS_DONE_MASK) {
        if (FF_CYCLES_LO - t0 > timeout) {
            info = FF_LANE_DONE; /* as the register map says for LANE_TIMEOUT */
            return FF_ERR_LANE_TIMEOUT;
        }
    }
    *status = st;
    return FF_ERR_NONE;
}

u32 dma_wait(u32 e, u32 s)
{
    u32 err;
    while (!dma_finished(e, s))
        if ((err = dma_check(e)) != FF_ERR_NONE)
            return err;
    return FF_ERR_NONE;
}

u32 dma(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl)
{
    u32 err = dma_push(e, ddr, local, length, ctrl);
    return err != FF_ERR_NONE ? err : dma_wait(e, dma_seq[e]);
}

u32 dma_drain(void)
{
    for (u32 e = 0; e < n_dma; e++) {
        u32 err = dma_wait(e, dma_seq[e]);
        if (err != FF_ERR_NONE)
            return err;
    }
    return FF_ERR_NONE;
}

/* A job failed with transfers maybe still queued: drop them and let the running ones finish,
 * so the bus is idle when the host resets the shell. (Not after DMA_TIMEOUT: that engine does
 * not finish.) The counts then agree with the engines again. */
static void quiesce(void)
{
    for (u32 e = 0; e < n_dma; e++) {
        FF_DMA_CTRL(e) = FF_DMA_CTRL_ABORT_MASK;
        u32 t0 = FF_CYCLES_LO;
        while ((FF_DMA_STATUS(e) & FF_DMA_STATUS_BUSY_MASK) && FF_CYCLES_LO - t0 <= timeout)
            ;
        dma_seq[e] = dma_done[e] = done_seq(e, FF_DMA_STATUS(e));
    }
}

static u32 misaligned(u32 value) { return value & (bus_bytes - 1u); }

/* The checks COPY and DMA share: engine e exists, both addresses and the length are multiples
   of the bus width, and the length is not zero. */
static u32 check_transfer(u32 e, u32 a, u32 b, u32 length)
{
    if (e >= n_dma) {
        info = e;
        return FF_ERR_BAD_ENGINE;
    }
    if (misaligned(a) || misaligned(b) || misaligned(length)) {
        info = misaligned(a) ? a : misaligned(b) ? b : length;
        return FF_ERR_BAD_ALIGN;
    }
    if (length == 0u) {
        info = length;
        return FF_ERR_BAD_LENGTH;
    }
    return FF_ERR_NONE;
}

/* COPY: SRC -> a tile buffer of engine ARG0 -> DST, one tile-buffer-sized piece at a time. The
 * buffer is the engine's region 0, which engine 0 always has and the others only in an overlay
 * without lanes; otherwise it is region 1, the tile buffer of the engine's first lane (idle
 * while the firmware runs a COPY). The engine runs its queue in order, so piece k + 1 is read
 * only after piece k has been written out; the firmware queues one piece ahead and counts each
 * piece when its write has finished. */
static u32 job_copy(const u32 *job)
{
    u32 src = job[FF_JOBW_SRC], dst = job[FF_JOBW_DST], length = job[FF_JOBW_LENGTH];
    u32 e = job[FF_JOBW_ARG0];
    u32 err = check_transfer(e, src, dst, length);
    if (err != FF_ERR_NONE)
        return err;
    u32 buf = e == 0u || FF_CONFIG3 == 0u ? 0u : 1u << FF_LOCAL_REGION_SHIFT;
    u32 prev = 0; /* the previous piece's write-out */
    for (u32 done = 0; done < length;) {
        u32 n = length - done < tile_bytes ? length - done : tile_bytes;
        if ((err = dma_push(e, src + done, buf, n, 0)) != FF_ERR_NONE ||
            (err = dma_push(e, dst + done, buf, n, FF_DMA_CTRL_TO_DDR_MASK)) != FF_ERR_NONE)
            return err;
        if (prev) {
            if ((err = dma_wait(e, prev)) != FF_ERR_NONE)
                return err;
            FF_TILE_DONE = 1;
        }
        prev = dma_seq[e];
        done += n;
    }
    if ((err = dma_wait(e, prev)) != FF_ERR_NONE)
        return err;
    FF_TILE_DONE = 1;
    return FF_ERR_NONE;
}

/* LANES: start the lanes in ARG0 with CFG0 = ARG1, CFG1 = SRC; wait until all are done. */
static u32 job_lanes(const u32 *job)
{
    u32 mask = job[FF_JOBW_ARG0], cfg0 = job[FF_JOBW_ARG1], cfg1 = job[FF_JOBW_SRC];
    if (n_lanes < 32u && (mask >> n_lanes) != 0u) {
        info = mask;
        return FF_ERR_BAD_LANES;
    }
    for (u32 n = 0; n < n_lanes; n++) {
        if (mask & (1u << n)) {
            FF_LANE_CFG0(n) = cfg0;
            FF_LANE_CFG1(n) = cfg1;
            FF_LANE_CTRL(n) = FF_LANE_CTRL_START_MASK;
        }
    }
    u32 start = FF_CYCLES_LO;
    while ((FF_LANE_DONE & mask) != mask) {
        if (FF_CYCLES_LO - start > timeout) {
            info = FF_LANE_DONE;
            return FF_ERR_LANE_TIMEOUT;
        }
    }
    if (FF_LANE_ERROR & mask) {
        info = FF_LANE_ERROR & mask;
        return FF_ERR_LANE_ERROR;
    }
    return FF_ERR_NONE;
}

/* DMA: one transfer, as the descriptor says (bring-up and tests). */
static u32 job_dma(const u32 *job)
{
    u32 e = job[FF_JOBW_ARG0], ddr = job[FF_JOBW_SRC], local = job[FF_JOBW_DST];
    u32 length = job[FF_JOBW_LENGTH], ctrl = job[FF_JOBW_ARG1];
    u32 err = check_transfer(e, ddr, local, length);
    if (err != FF_ERR_NONE)
        return err;
    return dma(e, ddr, local, length, ctrl & (FF_DMA_CTRL_TO_DDR_MASK | FF_DMA_CTRL_ZERO_MASK));
}

/* LANE_RUN: lane ARG0 gets the 8 configuration words at SRC, runs, and is waited for. */
static u32 job_lane_run(const u32 *job)
{
    u32 n = job[FF_JOBW_ARG0], src = job[FF_JOBW_SRC];
    if (n >= n_lanes) {
        info = n;
        return FF_ERR_BAD_LANES;
    }
    if (misaligned(src)) {
        info = src;
        return FF_ERR_BAD_ALIGN;
    }
    u32 err = dma(0, src, 0, 4u * FF_LANE_CFG_WORDS, 0);
    if (err != FF_ERR_NONE)
        return err;
    const volatile u32 *buf = (const volatile u32 *)FF_CPU_LOCAL_BASE;
    u32 seat = FF_CPU_REG_BASE + FF_LANE_BASE + n * FF_LANE_STRIDE;
    for (u32 w = 0; w < FF_LANE_CFG_WORDS; w++)
        FF_REG(seat + 4u * w) = buf[w];
    FF_LANE_CTRL(n) = FF_LANE_CTRL_START_MASK;
    u32 st;
    if ((err = lane_wait(n, &st)) != FF_ERR_NONE)
        return err;
    if (st & FF_LANE_STATUS_ERROR_MASK) {
        info = 1u << n;
        return FF_ERR_LANE_ERROR;
    }
    return FF_ERR_NONE;
}

static u32 run_job(void)
{
    u32 addr = FF_JOB_ADDR;
    info = 0;
    timeout = DEFAULT_TIMEOUT;
    if (misaligned(addr)) {
        info = addr;
        return FF_ERR_BAD_ALIGN;
    }
    u32 err = dma(0, addr, 0, JOB_BYTES, 0);
    if (err != FF_ERR_NONE)
        return err;
    const volatile u32 *buf = (const volatile u32 *)FF_CPU_LOCAL_BASE;
    if (buf[FF_JOBW_MAGIC] == FFJB_MAGIC)
        return job_ffjb(addr);
    /* Copy the descriptor out of tile buffer 0: the job reuses that buffer. */
    u32 job[JOB_BYTES / 4u];
    for (u32 i = 0; i < JOB_BYTES / 4u; i++)
        job[i] = buf[i];
    if (job[FF_JOBW_MAGIC] != FF_JOB_MAGIC) {
        info = job[FF_JOBW_MAGIC];
        return FF_ERR_BAD_MAGIC;
    }
    if (job[FF_JOBW_TIMEOUT] != 0u)
        timeout = job[FF_JOBW_TIMEOUT];
    switch (job[FF_JOBW_OPCODE]) {
    case FF_OP_NOP:
        return FF_ERR_NONE;
    case FF_OP_COPY:
        return job_copy(job);
    case FF_OP_LANES:
        return job_lanes(job);
    case FF_OP_DMA:
        return job_dma(job);
    case FF_OP_LANE_RUN:
        return job_lane_run(job);
    default:
        info = job[FF_JOBW_OPCODE];
        return FF_ERR_BAD_OPCODE;
    }
}

int main(void)
{
    u32 config = FF_CONFIG0;
    bus_bytes = field(config, FF_CONFIG0_BUS_BYTES_MASK, FF_CONFIG0_BUS_BYTES_SHIFT);
    n_lanes = field(config, FF_CONFIG0_LANES_MASK, FF_CONFIG0_LANES_SHIFT);
    n_dma = field(config, FF_CONFIG0_DMA_MASK, FF_CONFIG0_DMA_SHIFT);
    tile_bytes = FF_CONFIG2;
    FF_STATUS = FF_STATE_IDLE;
    u32 beat = 0;
    for (;;) {
        FF_HEARTBEAT = ++beat;
        u32 bell = FF_DOORBELL;
        if (!(bell & FF_DOORBELL_PENDING_MASK))
            continue;
        FF_DOORBELL_ACK = 1;
        FF_PHASE(PH_START);
        u32 seq = field(bell, FF_DOORBELL_SEQ_MASK, FF_DOORBELL_SEQ_SHIFT) << FF_STATUS_SEQ_SHIFT;
        FF_STATUS = seq | FF_STATE_BUSY;
        u32 t0 = FF_CYCLES_LO;
        u32 err = run_job();
        if (err != FF_ERR_NONE) {
            /* Disarm the lanes (LANE_CTRL.ARM): a later transfer could carry the number an
             * armed lane waits for. */
            for (u32 l = 0; l < n_lanes; l++)
                FF_LANE_CTRL(l) = 0;
            if (err != FF_ERR_DMA_TIMEOUT)
                quiesce();
        }
        FF_MAILBOX(0) = FF_CYCLES_LO - t0; /* the job's own cycles, for the host's statistics */
        FF_ERROR_INFO = info;
        if (err == FF_ERR_NONE)
            FF_STATUS = seq | FF_STATE_DONE;
        else
            FF_STATUS = seq | (err << FF_STATUS_ERROR_SHIFT) | FF_STATE_ERROR;
        FF_PHASE(PH_IDLE);
    }
}
