/* Memory for DMA images (imagemem.c). Declarations only: also read as the cffi cdef. */

/* At least `nbytes` of writable memory, of `*capacity` bytes, or NULL if there is none. Not
 * cleared: it may hold an earlier image's bytes (the packer writes every byte). */
void *ff_image_alloc(int64_t nbytes, int64_t *capacity);

/* Give back what ff_image_alloc returned, with the capacity it said. */
void ff_image_free(void *p, int64_t capacity);

/* Unmap every kept region; returns how many bytes that gave back. */
int64_t ff_image_trim(void);

/* Bytes kept for reuse now. */
int64_t ff_image_kept(void);
