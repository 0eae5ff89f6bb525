/* The cycle model's per-tile lane cost (host/devices/perf_model.py), computed straight from a DMA
 * image's segment arrays. Declarations only: also read as the cffi cdef. */

/* out[i] = the cycles a lane spends on the 2-D CSR tile at image offset offsets[i], with k
 * columns of B, as perf_model.tiles_cycles gives them from the tile's row lengths and the
 * lane constants tile_base, turn and queue. A tile whose header or segment array lies outside
 * the image counts as having no rows (out[i] = tile_base): the job is refused when it runs. */
void ff_tile_cycles(const uint8_t *image, uint64_t image_bytes, const int64_t *offsets,
                    int64_t n, int64_t k, int64_t tile_base, int64_t turn, int64_t queue,
                    int64_t *out);
