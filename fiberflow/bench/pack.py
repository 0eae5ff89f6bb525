"""``fiberflow bench pack``: DMA-image packing speed and memory, C path vs numpy vs memcpy, at
several tile shapes and matrices."""

from __future__ import annotations

import argparse
import os
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench import Report, median_seconds
from fiberflow.bench._roofline import peak_extra
from fiberflow.errors import TileShapeError
from fiberflow.host import workers
from fiberflow.host.images import pack_c
from fiberflow.progress import bar

DESCRIPTION = (
    "pack float32 CSR matrices at several tile shapes with the C packer (each vector level) "
    "and numpy; compare to memcpy of the same bytes"
)
CRC_WAYS = ("table lookups", "PCLMULQDQ folding", "VPCLMULQDQ (512-bit) folding")
LOOPS = ("portable", "AVX2", "AVX-512")  # pack_c.simd() levels
# The devices' own shapes (rtl and board pack_to_fit), a square one a user may ask for, and
# edge cases: small square tiles (many tiles, segment arrays dominate), tall narrow tiles that
# are not a power of two wide, and 32-bit coordinates. The --tile shape is added first.
SHAPES = ("408x8000", "1642x8190", "4096x4096", "256x256", "8192x1000", "1000x100000:32")
MATRICES = ("random", "banded", "power-law")


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


def banded_csr(n: int, nnz: int, seed: int) -> sp.csr_array:
    """A FEM-like n x n matrix: the diagonals of a 27-point 3-D stencil on a grid of about n
    points, the nnz / n nearest the main one. A row's entries form a few runs near the
    diagonal, so most rows touch one or two tile columns."""
    rng = np.random.default_rng(seed)
    g = max(2, round(n ** (1 / 3)))
    offsets = sorted(
        {a + b * g + c * g * g for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)},
        key=lambda o: (abs(o), o),
    )[: max(1, min(27, round(nnz / n)))]
    diags = [rng.standard_normal(n - abs(o)).astype(np.float32) for o in offsets]
    return sp.csr_array(sp.diags_array(diags, offsets=offsets, shape=(n, n), format="csr"))


def power_law_csr(n: int, nnz: int, seed: int) -> sp.csr_array:
    """A graph-like n x n matrix: row lengths from a Zipf law (a few rows with many thousands
    of entries, most with a handful), scaled to about ``nnz``, columns uniform (as in
    scripts/make_demo_data.py's power-law graph)."""
    rng = np.random.default_rng(seed)
    deg = np.minimum(rng.zipf(1.8, size=n), n // 4).astype(np.float64)
    counts = np.minimum(np.maximum(1, deg * nnz / deg.sum()).astype(np.int64), n)
    rows = np.repeat(np.arange(n), counts)
    cols = rng.integers(0, n, size=len(rows))
    vals = rng.standard_normal(len(rows)).astype(np.float32)
    A = sp.csr_array((vals, (rows, cols)), shape=(n, n))
    A.sum_duplicates()
    return A


MAKERS: dict[str, Callable[[int, int, int], sp.csr_array]] = {
    "random": random_csr,
    "banded": banded_csr,
    "power-law": power_law_csr,
}


def parse_shape(text: str) -> tuple[tuple[int, int], int | None]:
    """``ROWSxCOLS`` or ``ROWSxCOLS:32`` (32-bit coordinates) as ``((rows, cols), bits)``."""
    shape, _, bits = text.partition(":")
    try:
        rows, cols = (int(v) for v in shape.lower().split("x"))
        return (rows, cols), int(bits) if bits else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a tile shape is ROWSxCOLS, optionally :16 or :32 for the coordinate width, not "
            f"{text!r}"
        ) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nnz", type=int, default=4_000_000, help="nonzeros (default 4M)")
    p.add_argument("--n", type=int, default=200_000, help="rows = columns (default 200k)")
    p.add_argument(
        "--tile",
        type=int,
        nargs=2,
        default=(2048, 65536),
        metavar=("ROWS", "COLS"),
        help="the main tile shape: numpy and peak memory are measured at it (default 2048 65536)",
    )
    p.add_argument(
        "--shapes",
        type=parse_shape,
        nargs="*",
        default=[parse_shape(s) for s in SHAPES],
        metavar="RxC[:32]",
        help="more tile shapes, each ROWSxCOLS, :32 for 32-bit coordinates (default: "
        + " ".join(SHAPES)
        + "; none with an empty list)",
    )
    p.add_argument(
        "--matrices",
        nargs="+",
        choices=MATRICES,
        default=["random"],
        help="matrices to pack at every shape (default random; the others: banded, a 3-D "
        "stencil's diagonals; power-law, Zipf row lengths)",
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per path; medians reported")
    p.add_argument("--seed", type=int, default=0)


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


def interleaved(fn: Callable[[], Any], nbytes: int, repeat: int) -> dict[str, list[float]]:
    """Seconds of ``repeat`` calls of ``fn``, each followed by a memcpy of ``nbytes`` into a
    preallocated buffer and one into a new buffer (after a warm-up of each): the machine's
    load changes from moment to moment, and alternating keeps each ratio's two sides in the
    same moment."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    ways = {"pack": fn, "memcpy": lambda: np.copyto(dst, src), "new": src.copy}
    times: dict[str, list[float]] = {k: [] for k in ways}
    for f in ways.values():
        f()
    for _ in range(repeat):
        for k, f in ways.items():
            start = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - start)
    return times


def shape_rows(
    name: str, t: ff.Tensor, shapes: list[tuple[tuple[int, int], int | None]], repeat: int
) -> tuple[list[list[Any]], list[dict[str, Any]], list[str]]:
    """Table rows, data records and notes for one matrix at every shape and vector level."""
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    levels = list(range(pack_c.simd_used(), -1, -1))
    with bar(f"pack {name}", total=len(shapes) * len(levels), unit="run") as progress_bar:
        for tile, bits in shapes:
            label = f"{tile[0]} x {tile[1]}"
            try:
                img = ff.pack(t, tile, coord_bits=bits)
            except TileShapeError as e:
                notes.append(f"{name}, tile {label}: not measured, {e}")
                progress_bar.update(len(levels))
                continue
            for level in levels:
                with simd_level(level):
                    times = interleaved(
                        lambda tile=tile, bits=bits: ff.pack(t, tile, coord_bits=bits),
                        img.nbytes,
                        repeat,
                    )
                pack_s, copy_s, new_s = (np.array(times[k]) for k in ("pack", "memcpy", "new"))
                ratio = copy_s / pack_s  # per run: pack and memcpy measured back to back
                record = {
                    "matrix": name,
                    "tile": list(tile),
                    "coord_bytes": img.geometry.coord_bytes,
                    "loops": LOOPS[level],
                    "tiles": img.n_tiles,
                    "image_bytes": img.nbytes,
                    "seconds": times["pack"],
                    "memcpy_seconds": times["memcpy"],
                    "new_buffer_seconds": times["new"],
                }
                records.append(record)
                med = float(np.median(pack_s))
                rows.append(
                    [
                        name,
                        label,
                        8 * img.geometry.coord_bytes,
                        LOOPS[level] + (" (best)" if level == levels[0] else ""),
                        img.n_tiles,
                        img.nbytes / 1e6,
                        med * 1e3,
                        img.nbytes / med / 1e9,
                        float(np.median(copy_s)) * 1e3,
                        float(np.median(ratio)),
                        f"{ratio.min():.2f}-{ratio.max():.2f}",
                        float(np.median(new_s / pack_s)),
                    ]
                )
                progress_bar.update(1)
    return rows, records, notes


def load() -> str:
    """The machine's 1-minute load average and core count, for the notes: other processes
    share the cores and the memory bus, and slow the pack more than memcpy."""
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:  # not available on this platform
        return "unknown"


def misses(rows: list[list[Any]]) -> str:
    """The AVX2 and AVX-512 rows below a target (0.3 vs memcpy, 1 GB/s), or that none are."""
    low = [
        f"{row[0]} {row[1]}{' (32-bit)' if row[2] == 32 else ''} {row[3].removesuffix(' (best)')} "
        f"{row[9]:.2f}x, {row[7]:.2f} GB/s"
        for row in rows
        if row[3].startswith(("AVX2", "AVX-512")) and (row[9] < 0.3 or row[7] < 1)
    ]
    return "; ".join(low) if low else "none"


def run(args: argparse.Namespace) -> Report:
    load_start = load()
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

    shapes = [((int(tile[0]), int(tile[1])), None), *args.shapes]
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in args.matrices:
        m = A if name == "random" else MAKERS[name](args.n, args.nnz, args.seed)
        r, rec, notes = shape_rows(name, ff.Tensor.from_scipy(m), shapes, args.repeat)
        rows += r
        records += rec
        skipped += notes
        if name != "random":
            skipped.append(f"{name} matrix: nnz {m.nnz}")

    c, numpy_, mem = gbs["C fast path"], gbs["numpy reference"], gbs["memcpy (same bytes)"]
    vector = [row for row in rows if row[3].startswith(("AVX2", "AVX-512"))]
    worst = min(vector, key=lambda row: row[9]) if vector else None
    notes = [
        f"matrix {args.n} x {args.n}, nnz {t.nnz} (random: Poisson row lengths, spread columns)",
        "each row: one matrix at one tile shape and coordinate width, packed by the C path "
        "capped at one vector level (FIBERFLOW_SIMD); 'vs memcpy' is the median over runs of "
        "memcpy's time for the image's bytes (into a preallocated buffer) over the pack's, the "
        "two measured back to back in each run, and 'spread' their least and greatest; 'vs new "
        "buffer' the same against a copy into a new buffer (which takes the page faults a new "
        "image takes)",
        "targets: >= 0.3 vs memcpy and >= 1 GB/s at every shape at the AVX2 and AVX-512 levels"
        + (
            f"; the lowest here: {worst[9]:.2f} ({worst[0]}, tile {worst[1]}, {worst[3]})"
            if worst
            else ""
        ),
        f"below a target at the AVX2 or AVX-512 level: {misses(rows)}",
        f"load average (1 minute) at the start {load_start}, at the end {load()}: the ratios are "
        "measured back to back in each run, but a busy machine slows the pack (two threads, "
        "each filling and checksumming the bytes it writes) more than memcpy",
        f"at tile {tile[0]} x {tile[1]}: {img.n_tiles} tiles, image {nbytes / 1e6:.1f} MB "
        f"({nbytes / t.nnz:.2f} B/nnz); C fast path {secs['C fast path'] * 1e3:.2f} ms, "
        f"{c:.2f} GB/s, "
        f"numpy reference {secs['numpy reference'] * 1e3:.0f} ms: C / numpy = {c / numpy_:.1f}x "
        f"(target >= 2x), C / memcpy = {c / mem:.2f} (medians measured one after the other)",
        "peak extra memory at that shape (traced allocation peak during one pack, image "
        f"included, relative to the image size; target <= 2.5x for the C path): C "
        f"{peaks['C fast path'] / nbytes:.2f}x, numpy {peaks['numpy reference'] / nbytes:.2f}x",
        "the C path checksums the image (CRC-32) as part of packing, memcpy does not: by "
        f"{CRC_WAYS[min(2, pack_c.lib.ff_crc32_accelerated())]} at the AVX-512 level, by "
        f"{CRC_WAYS[min(1, pack_c.lib.ff_crc32_accelerated())]} at the others (a CPU without "
        "512-bit vectors has no 512-bit carry-less multiply either)",
        f"the C path ran on {workers.threads(t.nnz)} threads",
        "CRC-32 of the image on one thread, GB/s: "
        + ", ".join(f"{way} {speed:.1f}" for way, speed in crc.items()),
        *skipped,
        f"medians of {args.repeat} runs after a warm-up, all measured in this one run",
    ]
    shape_args = " ".join(
        f"{s[0]}x{s[1]}" + (f":{bits}" if bits else "") for s, bits in args.shapes
    )
    return Report(
        target="pack",
        title="DMA-image packing",
        command=f"fiberflow bench pack --nnz {args.nnz} --n {args.n} --tile {tile[0]} {tile[1]} "
        f"--shapes {shape_args} --matrices {' '.join(args.matrices)} --repeat {args.repeat}",
        columns=[
            "matrix",
            "tile",
            "coord bits",
            "C loops",
            "tiles",
            "image MB",
            "median ms",
            "output GB/s",
            "memcpy ms",
            "vs memcpy",
            "spread",
            "vs new buffer",
        ],
        rows=rows,
        notes=notes,
        data={
            "seconds": secs,
            "gb_per_s": gbs,
            "peak_bytes": peaks,
            "image_bytes": nbytes,
            "crc_gb_per_s": crc,
            "shapes": records,
        },
    )
