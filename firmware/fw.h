/* Shared by the firmware's files: the shell's parameters, the current job's error detail and
 * the one DMA primitive. */
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

static inline u32 field(u32 value, u32 mask, u32 shift) { return (value & mask) >> shift; }

/* One DMA transfer on engine e, waited for. ctrl: DMA_CTRL bits besides GO (TO_DDR, ZERO).
 * Returns an FF_ERR_* code. Always inlined: on picorv32 a call and its register shuffling
 * cost about 100 cycles, as much again as the rest of a tile's control. */
static inline __attribute__((always_inline)) u32 dma(u32 e, u32 ddr, u32 local, u32 length,
                                                     u32 ctrl)
{
    u32 to_ddr = ctrl & FF_DMA_CTRL_TO_DDR_MASK;
    FF_DMA_DDR(e) = ddr;
    FF_DMA_LOCAL(e) = local;
    FF_DMA_LENGTH(e) = length;
    FF_DMA_CTRL(e) = FF_DMA_CTRL_GO_MASK | (ctrl & (FF_DMA_CTRL_TO_DDR_MASK | FF_DMA_CTRL_ZERO_MASK));
    u32 start = FF_CYCLES_LO;
    for (;;) {
        u32 st = FF_DMA_STATUS(e);
        if (!(st & FF_DMA_STATUS_BUSY_MASK)) {
            if (st & FF_DMA_STATUS_ERROR_MASK) {
                info = st;
                return to_ddr ? FF_ERR_DMA_WRITE : FF_ERR_DMA_READ;
            }
            return FF_ERR_NONE;
        }
        if (FF_CYCLES_LO - start > timeout) {
            info = st;
            return FF_ERR_DMA_TIMEOUT;
        }
    }
}

/* The SpMV/SpMM job of docs/jobs.md (magic FFJB) at DDR address addr (ffjb.c). */
u32 job_ffjb(u32 addr);

#endif
