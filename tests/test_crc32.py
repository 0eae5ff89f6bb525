"""The C CRC-32 (host/crc32.c) against zlib, and its folding constants against their
definition."""

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from fiberflow.host.images import dma_image as di
from fiberflow.host.images import pack_c

pytestmark = pytest.mark.skipif(not pack_c.available(), reason="the C extension was not built")

POLY = 0x104C11DB7  # CRC-32's generator, x^32 + ... + 1


def xpow_mod(e: int) -> int:
    """x^e mod POLY, bit i the coefficient of x^i."""
    r = 1
    for _ in range(e):
        r <<= 1
        if r >> 32:
            r ^= POLY
    return r


def reflected33(p: int) -> int:
    """The 33-bit form the folding multiplies by: bit l is the coefficient of x^(32 - l)."""
    return sum(((p >> i) & 1) << (32 - i) for i in range(33))


def test_folding_constants_are_powers_of_x_mod_p():
    src = (Path(__file__).parents[1] / "host" / "crc32.c").read_text()
    pattern = r"_mm_set_epi64x\((0x[0-9a-fA-F]+), (0x[0-9a-fA-F]+)\)\)?; /\* D = (\d+)"
    pairs = re.findall(pattern, src)
    assert {int(d) for _, _, d in pairs} == {128, 256, 384, 512, 2048}
    for hi, lo, d in pairs:
        D = int(d)
        assert int(lo, 16) == reflected33(xpow_mod(D + 32)), f"D={D}: low qword"
        assert int(hi, 16) == reflected33(xpow_mod(D - 32)), f"D={D}: high qword"


def c_crc(buf: np.ndarray, crc: int, how: int = 2) -> int:
    ptr = pack_c.ffi.from_buffer("uint8_t[]", buf)
    return int(pack_c.lib.ff_crc32_with(how, crc, ptr, len(buf)))


def test_equals_zlib_at_every_length_and_start_value():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 5000, dtype=np.uint8)
    lengths = [*range(300), 1023, 1024, 4097]
    for n in lengths:
        for start in (0, 3):  # unaligned starts too
            buf = data[start : start + n]
            crc = int(rng.integers(0, 2**32))
            want = zlib.crc32(buf, crc)
            for how in (0, 1, 2):  # tables, 128-bit and 512-bit folding (as far as the CPU has)
                assert c_crc(buf, crc, how) == want, (n, start, how)


def test_large_buffer_and_module_helper():
    buf = np.random.default_rng(1).integers(0, 256, (1 << 22) + 12345, np.uint8)
    assert di.crc32(buf.data, 7) == zlib.crc32(buf.data, 7)
    assert c_crc(buf, 7, 1) == zlib.crc32(buf.data, 7)
    assert di.crc32(memoryview(bytes(buf[:100]))) == zlib.crc32(bytes(buf[:100]))


def test_combine_equals_crc_of_concatenation():
    for a, b in [(b"", b"x"), (b"abc", b""), (b"hello ", b"world" * 1000), (b"", b"")]:
        combined = pack_c.lib.ff_crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b))
        assert combined == zlib.crc32(a + b)


def test_combine_at_many_lengths():
    """Every bit of the length matters: lengths 0 .. 300, then random ones up to 4 MiB."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, (1 << 22) + 300, np.uint8).tobytes()
    lengths = list(range(301)) + [int(v) for v in rng.integers(301, len(data) - 7, 40)]
    for n in lengths:
        a, b = data[:7], data[7 : 7 + n]
        assert pack_c.lib.ff_crc32_combine(zlib.crc32(a), zlib.crc32(b), n) == zlib.crc32(a + b)


def test_threads_give_zlibs_value():
    """Stretches on threads, combined: every split of lengths around the 64-byte alignment."""
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, (1 << 18) + 777, np.uint8)
    for n in (0, 1, 65535, 65536, 65536 + 63, 200_001, len(data)):
        for threads in (1, 2, 3, 7, 16, 40):
            ptr = pack_c.ffi.from_buffer("uint8_t[]", data)
            assert pack_c.lib.ff_crc32_threads(9, ptr, n, threads) == zlib.crc32(data[:n], 9)
