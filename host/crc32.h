/* CRC-32 as zlib computes it (crc32.c). Declarations only: also read as the cffi cdef. */

/* zlib.crc32(buf[:len], crc): carry-less multiply folding where the CPU has it. */
uint32_t ff_crc32(uint32_t crc, const uint8_t *buf, uint64_t len);

/* The same on up to `threads` threads (stretches checksummed apart and combined). */
uint32_t ff_crc32_threads(uint32_t crc, const uint8_t *buf, uint64_t len, int threads);

/* The same, by at most the given way (see ff_crc32_accelerated); for tests. */
uint32_t ff_crc32_with(int how, uint32_t crc, const uint8_t *buf, uint64_t len);

/* How ff_crc32 runs on this CPU: 0 tables, 1 PCLMULQDQ, 2 VPCLMULQDQ (512-bit). */
int ff_crc32_accelerated(void);

/* The CRC-32 of A followed by B, given crc32(A), crc32(B) and the length of B. */
uint32_t ff_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
