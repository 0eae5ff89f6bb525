/* The C fast path of the DMA-image packer. Declarations only: this file is also read as the
 * cffi cdef, so it holds no preprocessor lines. Layout rules: docs/dma-image.md. */

typedef struct {
    int ndim;
    int coord_bytes;          /* 2 or 4 */
    const uint8_t *dense;     /* [ndim] 1 for a dense level, 0 for a compressed one */
    const int64_t *size;      /* [ndim] level sizes (the tensor's shape, storage order) */
    const int64_t *tile;      /* [ndim] tile sizes, storage order */
    const int64_t *grid;      /* [ndim] tiles per level */
    const int64_t **pos;      /* [ndim] segment arrays; NULL for dense levels */
    const int32_t **crd;      /* [ndim] coordinate arrays; NULL for dense levels */
    const uint32_t *vals;     /* value bits, one per last-level position */
} ff_tree;

/* Vector levels of the CSR loops, for the simd arguments and ff_pack_simd. */
enum { FF_SIMD_NONE = 0, FF_SIMD_AVX2 = 1, FF_SIMD_AVX512 = 2 };

/* What ff_count returns: FF_BAD_COORD for a coordinate outside its level (then the counts are
 * not to be used). */
enum { FF_OK = 0, FF_BAD_COORD = 1 };

/* Pass 1. For every tile of the grid (row-major tile id t) and every compressed level k,
 * count into ncrd[t * ndim + k] the coordinates that level holds in that tile, and list the
 * tiles whose last level holds any, increasing, in ids (their number in *n_ids). ncrd, last
 * and ids have room for every grid tile (ncrd and last ndim entries each) and need no
 * clearing; for a CSR-like tree, only the counts of the listed tiles and of tiles near them
 * are written. runs has grid[0] entries, zeroed: for a CSR-like tree, the runs (stretches of
 * a row in one tile) of each row band the loop for many tile columns counted, for ff_fill's
 * choice of loop. threads, simd: as for ff_fill. Returns FF_OK, or FF_BAD_COORD. */
int ff_count(const ff_tree *tree, int64_t *ncrd, int64_t *last, int64_t *runs, int64_t *ids,
             int64_t *n_ids, int threads, int simd);

/* Pass 2. Fill the non-empty tiles into image and return the CRC-32 of their bytes,
 * image[tile_off[0] .. tile_off[n_tiles]). slot[t] is the directory index of grid tile t (or
 * -1 when empty). For directory entry i and level k, ext[i*ndim+k] is the tile's extent and
 * seg_off / crd_off[i*ndim+k] the absolute section offsets (compressed levels only);
 * npos[i*ndim+k] its positions per level; vals_off[i] the value section's offset; tile_off[i]
 * where the tile starts (n_tiles + 1 entries: the last is the image's end). Every byte of the
 * tiles is written here, their headers (header_bytes each) and padding included, and their
 * directory entries (dir_entry_bytes each from dir_offset, the grid indices from
 * index[i*ndim+k]; with extents, for a 2-D tree whose level 1 is compressed, words 6 and 7:
 * the tile's lowest level-1 coordinate and one past its highest, the lane's x window). last
 * and cur each have n_tiles * ndim entries; runs is ff_count's.
 * simd is the highest vector level the CSR loops may use (FF_SIMD_NONE keeps to the portable
 * ones; lower levels are for tests); they use at most what the CPU has.
 * Both passes split the work over up to `threads` threads; the result does not depend on it. */
uint32_t ff_fill(const ff_tree *tree, uint8_t *image, const int64_t *slot, int64_t n_tiles,
                 const int64_t *ext, const int64_t *npos, const int64_t *seg_off,
                 const int64_t *crd_off, const int64_t *vals_off, const int64_t *tile_off,
                 int64_t header_bytes, const int64_t *index, int64_t dir_offset,
                 int64_t dir_entry_bytes, int64_t *last, int64_t *cur, const int64_t *runs,
                 int threads, int simd, int extents);

/* dma_image.plan for the C path: place the sections of the n non-empty tiles ids[i] (row-major
 * grid tile ids, increasing) of a tensor of level sizes `size` cut into tiles `tile`, `grid`
 * tiles per level, whose compressed levels hold ncrd[ids[i] * ndim + k] coordinates. Fills
 * index (the tiles' grid indices), ext (their extents), npos, seg_off, crd_off (n * ndim each;
 * 0 for dense levels), vals_off and tile_bytes (n each) as plan's Layout holds them, tile_off
 * (n + 1: the last is the image's end), the first tile at `first`, and slot (n_grid entries:
 * the directory index of each grid tile, -1 for an empty one); returns the image's size.
 * Arithmetic wraps as numpy's int64 does: the caller checks npos and tile_bytes against 32
 * bits. */
int64_t ff_plan(int ndim, const uint8_t *dense, const int64_t *size, const int64_t *tile,
                const int64_t *grid, int coord_bytes, int64_t header_bytes, int64_t first,
                int64_t n, const int64_t *ids, const int64_t *ncrd, int64_t *index, int64_t *ext,
                int64_t *npos, int64_t *seg_off, int64_t *crd_off, int64_t *vals_off,
                int64_t *tile_off, int64_t *tile_bytes, int64_t *slot, int64_t n_grid);

/* The highest vector level ff_fill's loops can use on this CPU (an FF_SIMD_ value). */
int ff_pack_simd(void);
