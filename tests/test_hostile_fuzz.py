"""Hostile input, fuzzed: every case ends in a FiberflowError or the right answer.

Each case builds a small matrix or image, damages it one way (lying lengths, non-monotone or
out-of-range indptr, out-of-range or negative indices of every index type, huge counts, a
corrupted image with its checksum recomputed, ...) or leaves it intact, and sends it through
one entry point: ``Tensor.from_scipy``, ``Tensor.from_coo``, ``ff.pack`` + ``ff.unpack``,
``dev.put`` + ``ff.spmv``, ``ff.spmv`` or ``ff.unpack``. The answer is compared with a
reference computed here in plain Python from the raw arrays (which also decides whether the
arrays are valid at all). Outcomes are counted; a wrong result or an exception that is not a
FiberflowError fails the test. A crash kills the process, which fails the run too.

Run ``python tests/test_hostile_fuzz.py [cases] [seed]`` to print the counts;
``FIBERFLOW_FUZZ_SEED`` varies the seed under pytest (the default is fixed).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import dma_image as di

CASES = 10_000
INDEX_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
Lists = tuple[list[int], list[int], list[int]]


def reference(indptr: list[int], indices: list[int], data: list[int], shape: Any) -> Any:
    """The dense matrix the CSR arrays describe (duplicates summed), or None when they are
    not a valid CSR matrix of that shape."""
    m, n = shape
    if len(indptr) != m + 1 or indptr[0] != 0 or not indptr[-1] == len(indices) == len(data):
        return None
    if any(b < a for a, b in itertools.pairwise(indptr)):
        return None
    if any(not 0 <= c < n for c in indices):
        return None
    out = np.zeros(shape, dtype=np.float64)
    for r in range(m):
        for q in range(indptr[r], indptr[r + 1]):
            out[r, indices[q]] += data[q]
    return out


def random_csr(rng: np.random.Generator) -> tuple[Lists, tuple[int, int]]:
    """Valid CSR arrays as lists: unsorted and duplicate indices included, small integer
    values so that every sum is exact in float32."""
    m, n = int(rng.integers(0, 7)), int(rng.integers(1, 9))
    counts = rng.integers(0, 4, size=m)
    indptr = [0, *np.cumsum(counts).tolist()]
    indices = rng.integers(0, n, size=indptr[-1]).tolist()
    if rng.random() < 0.5:  # sorted, unique rows too
        indices = []
        for r in range(m):
            row = sorted({int(c) for c in rng.integers(0, n, size=int(counts[r]))})
            indices += row
            indptr[r + 1] = indptr[r] + len(row)
    data = rng.integers(-9, 10, size=len(indices)).tolist()
    return (indptr, indices, data), (m, n)


def damage(rng: np.random.Generator, arrays: Lists, shape: tuple[int, int], kind: str) -> Lists:
    indptr, indices, data = (list(a) for a in arrays)
    n = shape[1]
    big = [n, n + 1, n + 1000, 2**15, 2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1]
    if kind == "col_high" and indices:
        indices[int(rng.integers(len(indices)))] = int(rng.choice(big))
    elif kind == "col_negative" and indices:
        indices[int(rng.integers(len(indices)))] = -int(rng.choice([1, 2, 2**31, 2**63]))
    elif kind == "indptr_short":
        indptr = indptr[: int(rng.integers(0, len(indptr)))]
    elif kind == "indptr_long":
        indptr = indptr + [indptr[-1]] * int(rng.integers(1, 3))
    elif kind == "data_short" and data:
        data = data[: int(rng.integers(0, len(data)))]
    elif kind == "data_long":
        data = data + [1] * int(rng.integers(1, 3))
    elif kind == "indices_short" and indices:
        indices = indices[: int(rng.integers(0, len(indices)))]
    elif kind == "indptr_decreasing" and len(indptr) > 2:
        r = int(rng.integers(1, len(indptr) - 1))
        indptr[r] = indptr[-1] + int(rng.integers(1, 4))
    elif kind == "indptr_past_end":
        indptr[-1] += int(rng.choice([1, 5, 2**20, 2**40]))
    elif kind == "indptr_negative" and len(indptr) > 1:
        indptr[int(rng.integers(0, len(indptr)))] = -int(rng.choice([1, 3, 2**40]))
    elif kind == "indptr_start":
        indptr = [v + 1 for v in indptr]
    return indptr, indices, data


def typed(values: list[int], rng: np.random.Generator) -> np.ndarray | None:
    """``values`` as an array of a random index type, or None when they do not fit it."""
    dt = np.dtype(INDEX_TYPES[int(rng.integers(len(INDEX_TYPES)))])
    info = np.iinfo(dt)
    if values and (min(values) < info.min or max(values) > info.max):
        return None
    return np.array(values, dtype=dt)


def hostile_scipy(rng: np.random.Generator, arrays: Lists, shape: tuple[int, int]) -> Any:
    """A scipy CSR matrix carrying exactly these arrays: scipy checks little at construction
    and nothing afterwards, so the arrays are set after a valid matrix is built."""
    indptr, indices, data = arrays
    ip, ix = typed(indptr, rng), typed(indices, rng)
    if ip is None or ix is None:
        return None
    A = sp.csr_array(shape, dtype=np.float32) if rng.random() < 0.5 else sp.csr_matrix(shape)
    A.indptr, A.indices, A.data = ip, ix, np.array(data, dtype=np.float32)
    return A


KINDS = [
    "valid",
    "valid",
    "valid",
    "col_high",
    "col_negative",
    "indptr_short",
    "indptr_long",
    "data_short",
    "data_long",
    "indices_short",
    "indptr_decreasing",
    "indptr_past_end",
    "indptr_negative",
    "indptr_start",
]


def csr_case(rng: np.random.Generator, dev: Any) -> tuple[str, Callable[[], Any], Any]:
    """A damaged (or intact) CSR matrix through one entry point, and the reference."""
    arrays, shape = random_csr(rng)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    arrays = damage(rng, arrays, shape, kind)
    ref = reference(*arrays, shape)
    A = hostile_scipy(rng, arrays, shape)
    if A is None:  # the values do not fit the drawn index type: build a COO matrix instead
        return coo_case(rng, dev)
    x = np.arange(1, shape[1] + 1, dtype=np.float32)
    ref_y = None if ref is None else ref @ x
    route = int(rng.integers(6))
    if route == 0:
        return "from_scipy", lambda: ff.Tensor.from_scipy(A).to_numpy(), ref
    if route == 1:
        return "from_scipy csc", lambda: ff.Tensor.from_scipy(A, "ds:1,0").to_numpy(), ref
    if route == 2:
        tile = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        return "pack", lambda: ff.unpack(ff.pack(ff.Tensor.from_scipy(A), tile)).to_numpy(), ref
    if route == 3:
        return "from_scipy dcsr", lambda: ff.Tensor.from_scipy(A, "ss").to_numpy(), ref

    def put_spmv() -> Any:
        with dev.put(A) as h:
            return ff.spmv(h, x, device=dev)

    if route == 4:
        return "put+spmv", put_spmv, ref_y
    return "spmv", lambda: ff.spmv(A, x, device=dev), ref_y


def coo_case(rng: np.random.Generator, dev: Any) -> tuple[str, Callable[[], Any], Any]:
    """``Tensor.from_coo`` with hostile coordinates, lengths or shapes."""
    shape = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    nnz = int(rng.integers(0, 6))
    rows = rng.integers(0, shape[0], size=nnz).tolist()
    cols = rng.integers(0, shape[1], size=nnz).tolist()
    vals = rng.integers(-9, 10, size=nnz).astype(np.float32)
    kind = int(rng.integers(6)) if nnz else 0
    fmt = ["ds", "ss", "dd", "ds:1,0", "sd"][int(rng.integers(5))]
    coords: Any = [rows, cols]
    if kind == 1:
        cols[0] = int(rng.choice([-1, shape[1], 2**31, 2**32 + 1, -(2**40)]))
    elif kind == 2:
        vals = vals[:-1]
    elif kind == 3:  # a dense mode far larger than the data: refused before allocating
        shape, fmt = (2**31 - 1, shape[1]), str(rng.choice(["ds", "dd"]))
    elif kind == 4:
        coords = [[*rows[:-1], [rows[-1]]], cols]  # ragged
    elif kind == 5:
        coords = np.array(coords, dtype=np.float64) + 0.5
    ref = None
    if kind == 0:
        ref = np.zeros(shape)
        np.add.at(ref, (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)), vals)
    return "from_coo", lambda: ff.Tensor.from_coo(coords, vals, shape, format=fmt).to_numpy(), ref


def image_case(rng: np.random.Generator, images: list[ff.DmaImage]) -> tuple[str, Any, Any]:
    """A packed image with one to three bytes changed and its checksum recomputed."""
    img = images[int(rng.integers(len(images)))]
    buf = img.data.copy()
    for at in rng.choice(len(buf), size=int(rng.integers(1, 4)), replace=False):
        buf[at] ^= int(rng.integers(1, 256))
    di.seal(buf)
    return "unpack", lambda: ff.unpack(buf), ("canonical", buf)


def is_right(result: Any, ref: Any) -> bool:
    if isinstance(ref, tuple) and ref[0] == "canonical":
        # The image is accepted only when it is exactly the reference packer's bytes for the
        # tensor it decodes to.
        geo, _ = di.read_geometry(ref[1])
        again = ff.pack(result, geo.tile, coord_bits=8 * geo.coord_bytes, impl="numpy")
        return bool(np.array_equal(again.data, ref[1]))
    if ref is None:
        return False  # invalid input must be refused
    return bool(np.array_equal(np.asarray(result, dtype=np.float64), ref))


def sample_images() -> list[ff.DmaImage]:
    rng = np.random.default_rng(3)
    out = []
    for fmt, tile in (("ds", (4, 4)), ("ss", (3, 5)), ("dd", (4, 4)), ("sd", (5, 2)), ("s", 4)):
        ndim = len(fmt)
        shape = (9, 7)[:ndim]
        dense = rng.integers(-3, 4, size=shape) * (rng.random(shape) < 0.4)
        t = ff.Tensor.from_numpy(dense.astype(np.float32), format=fmt)
        out.append(ff.pack(t, tile))
        if fmt == "ds":  # zero tiles: level kinds and sizes must still be canonical
            out.append(ff.pack(ff.Tensor.from_numpy(np.zeros(shape, np.float32), fmt), tile))
    return out


def run(cases: int, seed: int) -> Counter[str]:
    """Run ``cases`` cases; count outcomes. Raises on the first non-FiberflowError."""
    rng = np.random.default_rng(seed)
    images = sample_images()
    counts: Counter[str] = Counter()
    with ff.open("emu") as dev:
        for _ in range(cases):
            pick = rng.random()
            if pick < 0.55:
                what, call, ref = csr_case(rng, dev)
            elif pick < 0.7:
                what, call, ref = coo_case(rng, dev)
            else:
                what, call, ref = image_case(rng, images)
            counts["cases"] += 1
            try:
                result = call()
            except ff.FiberflowError:
                counts["clean errors"] += 1
                continue
            except Exception as e:
                raise AssertionError(f"{what}: {type(e).__name__} is not a FiberflowError") from e
            if is_right(result, ref):
                counts["right answers"] += 1
            else:
                counts["wrong results"] += 1
                counts[f"wrong: {what}"] += 1
        assert dev.memory_used == 0, "a case left device memory allocated"
    return counts


def test_hostile_fuzz():
    seed = int(os.environ.get("FIBERFLOW_FUZZ_SEED", "20261206"))
    counts = run(CASES, seed)
    assert counts["cases"] == CASES
    assert counts["wrong results"] == 0, counts
    # Both outcomes must be reached, or the cases test nothing.
    assert counts["clean errors"] > CASES // 5 and counts["right answers"] > CASES // 5, counts


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else CASES
    s = int(sys.argv[2]) if len(sys.argv) > 2 else 20261206
    for name, count in sorted(run(n, s).items()):
        print(f"{name:>16}: {count}")
