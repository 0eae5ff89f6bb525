/* The functional emulator's kernels: run the tiles of one job over a resident DMA image.
 * Declarations only: this file is also read as the cffi cdef, so it holds no preprocessor
 * lines. Image layout: docs/dma-image.md; job and accumulation order: docs/jobs.md and
 * docs/emulator.md. What ff_emu_run checks and what it trusts: the top of cemu.c. */

typedef struct {
    const uint8_t *image;     /* A's DMA image: 2-D, format "ds" (CSR tiles) */
    uint64_t image_bytes;
    const uint32_t *tiles;    /* directory indices in execution order (the schedule) */
    int64_t n_tiles;
    const uint8_t *x;         /* x, or B row-major with k columns */
    uint64_t x_bytes;         /* bytes readable at x */
    uint8_t *y;               /* y, or C row-major with k columns; holds the initial sums */
    uint64_t y_bytes;         /* bytes writable at y */
    int64_t m, n, k;
    int dtype;                /* 1: float32, 2: int32 (the image value codes) */
    int ftz;                  /* float32: 1 flushes subnormal operands and results to +-0 */
    int canonical_nan;        /* float32: 1 turns every NaN result into 0x7fc00000 */
    int64_t deadline_ns;      /* CLOCK_MONOTONIC time to give up at (0: none) */
    int threads;              /* at most this many threads (row tiles run in parallel) */
} ff_emu_job;

/* Run every tile of the schedule. Returns 0, or a negative code naming what was malformed
 * or that the deadline passed (see ERRORS in emu.py); *bad_tile receives the position in the
 * tile list where that happened (-1 when it concerns the whole job; with several threads, the
 * lowest position any thread failed at, and tiles after it may have run too). */
int ff_emu_run(const ff_emu_job *job, int64_t *bad_tile);
