/* Shared by the firmware's files: the shell's parameters, the current job's error detail and
 * the DMA queue primitives. */
#ifndef FF_FW_H
#define FF_FW_H

#include "regs.h"

#define DEFAULT_TIMEOUT 2000000u /* cycles per wait when the job does not say */

typedef unsigned int u32;

extern u32 bus_bytes;  /* AXI4 data width in bytes */
extern u32 tile_bytes; /* each tile buffer (CONFIG2) */
extern u32 n_lanes;
extern u32 n_dma;
extern u32 timeout; /* watchdog per wait, cycles */
extern u32 info;    /* ERROR_INFO of the current job */

/* Per DMA engine: the number of the last transfer queued (transfers count from 1 after reset,
 * as the engine's DMA_STATUS.DONE_SEQ does) and of the last one known finished. */
extern u32 dma_seq[FF_MAX_DMA];
extern u32 dma_done[FF_MAX_DMA];

static inline u32 field(u32 value, u32 mask, u32 shift) { return (value & mask) >> shift; }

/* The number of engine e's last finished transfer, from its DMA_STATUS st (DONE_SEQ has 16
 * bits; fewer than 2^16 transfers are ever outstanding). */
static inline u32 done_seq(u32 e, u32 st)
{
    return dma_seq[e] - ((dma_seq[e] - (st >> FF_DMA_STATUS_DONE_SEQ_SHIFT)) & 0xFFFFu);
}

/* Transfer s of engine e is known finished. */
static inline u32 dma_finished(u32 e, u32 s) { return (int)(dma_done[e] - s) >= 0; }

/* Read engine e's status: brings dma_done[e] up to date, and fails (DMA_READ / DMA_WRITE) on
 * an error response, or (DMA_TIMEOUT) when transfers are outstanding but none finished for
 * the watchdog's cycles. Returns an FF_ERR_* code; after an error response, ERROR_INFO is the
 * engine's DMA_STATUS (DONE_SEQ: the failed transfer's number) and MAILBOX[2] that transfer's
 * DDR address. */
u32 dma_check(u32 e);

/* dma_check with the time already read (FF_CYCLES_LO). */
u32 dma_poll(u32 e, u32 now);

extern u32 dma_t0[FF_MAX_DMA]; /* when engine e last finished a transfer, or got one idle */
/* The DDR address of each unfinished transfer (at most FF_DMA_QUEUE_DEPTH), by its number: the
 * host is told which transfer failed. */
extern u32 dma_ddr[FF_MAX_DMA][FF_DMA_QUEUE_DEPTH];

/* Write transfer (ddr, local, length, ctrl) into engine e's queue, which has room. */
static inline void dma_go(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl)
{
    if (dma_done[e] == dma_seq[e])
        dma_t0[e] = FF_CYCLES_LO; /* an idle engine: the watchdog starts now */
    FF_DMA_DDR(e) = ddr;
    FF_DMA_LOCAL(e) = local;
    FF_DMA_LENGTH(e) = length;
    FF_DMA_CTRL(e) = FF_DMA_CTRL_GO_MASK | ctrl;
    dma_ddr[e][++dma_seq[e] % FF_DMA_QUEUE_DEPTH] = ddr;
}

u32 dma_push_full(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl);

/* Queue one transfer on engine e (waiting for room); ctrl: DMA_CTRL bits besides GO (TO_DDR,
 * ZERO, AFTER_LANE). Its number is dma_seq[e] afterwards. In the header so that each file's
 * copy calls nothing on its common path (the full-queue wait is dma_push_full): clang -Os keeps
 * one out-of-line copy per file. Forced inline at every call it was slower (2,000-nonzero job
 * 20,450 -> 20,869 cycles, 3-D Poisson on the rtl bench 772,062 -> 786,239: a larger walk). */
static inline u32 dma_push(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl)
{
    if (dma_seq[e] - dma_done[e] >= FF_DMA_QUEUE_DEPTH)
        return dma_push_full(e, ddr, local, length, ctrl);
    dma_go(e, ddr, local, length, ctrl);
    return FF_ERR_NONE;
}

/* Wait until lane n is done with no start pending (LANE_TIMEOUT after the watchdog's cycles);
 * *status is its last LANE_STATUS. */
u32 lane_wait(u32 n, u32 *status);

/* Wait until transfer s of engine e has finished. */
u32 dma_wait(u32 e, u32 s);

/* One transfer, waited for. */
u32 dma(u32 e, u32 ddr, u32 local, u32 length, u32 ctrl);

/* Wait until every engine has finished what it was given. */
u32 dma_drain(void);

/* The SpMV/SpMM job of docs/jobs.md (magic FFJB) at DDR address addr (ffjb.c). */
u32 job_ffjb(u32 addr);

/* Where a job's time goes (scripts/firmware_phases.py): built with -DFF_PHASES, the firmware
 * writes the phase it enters into MAILBOX[3], which the script samples while the job runs.
 * The shipped image has no marks: a mark costs a store, about 6 cycles. */
enum {
    PH_IDLE,        /* waiting for the doorbell */
    PH_START,       /* the descriptor's first words read, the job type looked up */
    PH_HEADER,      /* FFJB: its header and lane table read */
    PH_CHECK_JOB,   /* the header checked */
    PH_CHECK_IMAGE, /* A's image header waited for and checked */
    PH_SETUP,       /* y's first zeros queued, the lanes' state, their tile-list windows */
    PH_WINDOWS,     /* the tile-list windows waited for, the directory windows queued */
    PH_ZEROS,       /* the rest of y's zeros queued and (several engines) waited for */
    PH_WALK,        /* the walk's own work: polling the engines and lanes, choosing */
    PH_POLL,        /* the walk after a round that found nothing to do: waiting */
    PH_PREPARE,     /* a lane's next tile-list and directory entries read and checked */
    PH_LOAD,        /* a lane's transfers queued (y block, x slice, tile), the lane armed */
    PH_FLUSH,       /* a lane's last y block queued for write-out */
    PH_END,         /* every transfer waited for, the last checks */
};
#ifdef FF_PHASES
#define FF_PHASE(p) (FF_MAILBOX(3) = (p))
#else
#define FF_PHASE(p) ((void)0)
#endif

#endif
