"""``fiberflow bench pack``: DMA-image packing speed and memory, C path vs numpy vs memcpy."""

from __future__ import annotations

import argparse
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench import Report, median_seconds
from fiberflow.bench._roofline import peak_extra
from fiberflow.host import pack_c

DESCRIPTION = "pack a random float32 CSR matrix with the C and numpy packers; compare to memcpy"
CRC_WAYS = ("table lookups", "PCLMULQDQ folding", "VPCLMULQDQ (512-bit) folding")
LOOPS = ("portable", "AVX2", "AVX-512")  # pack_c.simd() levels


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nnz", type=int, default=4_000_000, help="nonzeros (default 4M)")
    p.add_argument("--n", type=int, default=200_000, help="rows = columns (default 200k)")
    p.add_argument("--tile", type=int, nargs=2, default=(2048, 65536), metavar=("ROWS", "COLS"))
    p.add_argument("--repeat", type=int, default=5, help="timed runs per path; medians reported")
    p.add_argument("--seed", type=int, default=0)


def random_csr(n: int, nnz: int, seed: int) -> sp.csr_array:
    """A random n x n float32 CSR matrix with about ``nnz`` nonzeros, built without COO
    temporaries so the benchmark itself stays small."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(nnz / n, size=n).clip(0, n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    total = int(indptr[-1])
    # Evenly spread sorted columns per row, jittered: unique and sorted by construction.
    step = np.maximum(n // np.maximum(counts, 1), 1)
    row_of = np.repeat(np.arange(n), counts)
    k = np.arange(total) - indptr[row_of]
    cols = k * step[row_of] + rng.integers(0, step[row_of])
    data = rng.standard_normal(total).astype(np.float32)
    return sp.csr_array((data, cols.astype(np.int32), indptr), shape=(n, n))


@contextmanager
def simd_level(level: int) -> Iterator[None]:
    """Cap the C packer's vector level (``FIBERFLOW_SIMD``) for the block."""
    name = {v: k for k, v in pack_c.SIMD_LEVELS.items()}[level]
    old = os.environ.get("FIBERFLOW_SIMD")
    os.environ["FIBERFLOW_SIMD"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["FIBERFLOW_SIMD"]
        else:
            os.environ["FIBERFLOW_SIMD"] = old


def crc_speeds(data: np.ndarray, repeat: int) -> dict[str, float]:
    """GB/s of one thread's CRC-32 of ``data``: each way this CPU has, and zlib's."""
    ptr = pack_c.ffi.from_buffer("uint8_t[]", data)
    ways = {
        CRC_WAYS[how]: (lambda how=how: pack_c.lib.ff_crc32_with(how, 0, ptr, data.size))
        for how in range(pack_c.lib.ff_crc32_accelerated() + 1)
    }
    ways["zlib.crc32"] = lambda: zlib.crc32(data)
    return {k: data.size / median_seconds(f, repeat, "crc") / 1e9 for k, f in ways.items()}


def run(args: argparse.Namespace) -> Report:
    A = random_csr(args.n, args.nnz, args.seed)
    t = ff.Tensor.from_scipy(A)
    tile = tuple(args.tile)
    img = ff.pack(t, tile)
    nbytes = img.nbytes
    assert np.array_equal(img.data, ff.pack(t, tile, impl="numpy").data)

    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    secs = {
        "C fast path": median_seconds(lambda: ff.pack(t, tile, impl="c"), args.repeat, "C"),
    }
    for level in range(pack_c.simd_used()):  # the CPU's lower vector levels, for comparison
        with simd_level(level):
            secs[f"C, {LOOPS[level]} loops"] = median_seconds(
                lambda: ff.pack(t, tile, impl="c"), args.repeat, LOOPS[level]
            )
    secs |= {
        "numpy reference": median_seconds(
            lambda: ff.pack(t, tile, impl="numpy"), args.repeat, "numpy"
        ),
        "memcpy (same bytes)": median_seconds(lambda: np.copyto(dst, src), args.repeat, "memcpy"),
        "memcpy into a new buffer": median_seconds(src.copy, args.repeat, "copy"),
    }
    peaks = {
        "C fast path": peak_extra(lambda: ff.pack(t, tile, impl="c")),
        "numpy reference": peak_extra(lambda: ff.pack(t, tile, impl="numpy")),
    }
    crc = crc_speeds(img.data, args.repeat)
    gbs = {k: nbytes / s / 1e9 for k, s in secs.items()}
    mem, fresh = gbs["memcpy (same bytes)"], gbs["memcpy into a new buffer"]
    rows = [
        [
            name,
            secs[name] * 1e3,
            gbs[name],
            gbs[name] / mem,
            gbs[name] / fresh,
            f"{peaks[name] / nbytes:.2f}x" if name in peaks else "-",
        ]
        for name in secs
    ]
    c, numpy_ = gbs["C fast path"], gbs["numpy reference"]
    notes = [
        f"matrix {args.n} x {args.n}, nnz {t.nnz}, tile {tile[0]} x {tile[1]}: "
        f"{img.n_tiles} tiles, image {nbytes / 1e6:.1f} MB ({nbytes / t.nnz:.2f} B/nnz)",
        f"C / numpy = {c / numpy_:.1f}x (target >= 2x); C / memcpy = {c / mem:.2f} into a "
        f"preallocated buffer, {c / fresh:.2f} into a new one, as pack writes a new image "
        f"(target >= 0.3); C = {c:.2f} GB/s (target >= 1.0)",
        "the C path checksums the image (CRC-32) as part of packing; memcpy does not",
        f"the C path ran on {pack_c.threads(t.nnz)} threads with its "
        f"{LOOPS[pack_c.simd_used()]} loops (the rows 'C, ... loops' cap it at the CPU's lower "
        f"levels: FIBERFLOW_SIMD); CRC by {CRC_WAYS[pack_c.lib.ff_crc32_accelerated()]}",
        "CRC-32 of the image on one thread, GB/s: "
        + ", ".join(f"{way} {speed:.1f}" for way, speed in crc.items()),
        "peak extra memory is the traced allocation peak during one pack, image included, "
        "relative to the image size (target <= 2.5x for the C path)",
        f"medians of {args.repeat} runs after a warm-up, all measured in this one run",
    ]
    return Report(
        target="pack",
        title="DMA-image packing",
        command=f"fiberflow bench pack --nnz {args.nnz} --n {args.n} --tile {tile[0]} {tile[1]} "
        f"--repeat {args.repeat}",
        columns=[
            "path",
            "median ms",
            "output GB/s",
            "vs memcpy",
            "vs memcpy to new buffer",
            "peak extra memory",
        ],
        rows=rows,
        notes=notes,
        data={
            "seconds": secs,
            "gb_per_s": gbs,
            "peak_bytes": peaks,
            "image_bytes": nbytes,
            "crc_gb_per_s": crc,
        },
    )
