"""The C fast path of the packer (``cpack.c``), driven through cffi."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fiberflow.errors import CoordinateError
from fiberflow.host.formats.tensor import Tensor
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import image_memory
from fiberflow.host.workers import threads

try:
    from fiberflow.host._cpack import ffi, lib
except ImportError:  # pragma: no cover - only when the package was not built
    ffi = lib = None


def available() -> bool:
    return lib is not None


def _i64(a: np.ndarray) -> Any:
    return ffi.from_buffer("int64_t[]", a)


SIMD_LEVELS = {"0": 0, "avx2": 1, "avx512": 2}
"""``FIBERFLOW_SIMD`` values and the vector levels they allow (cpack.h's ``FF_SIMD_``)."""


def simd() -> int:
    """The highest vector level the packer's CSR loops may use: 0 for the portable loops, 1 for
    AVX2, 2 for AVX-512. ``FIBERFLOW_SIMD=0``, ``avx2`` or ``avx512`` sets it (for tests and
    comparisons; the bytes are the same at every level); otherwise, or for another value, the
    best. The C side never goes above what the CPU has (:func:`simd_used`)."""
    return SIMD_LEVELS.get(os.environ.get("FIBERFLOW_SIMD", "").lower(), max(SIMD_LEVELS.values()))


def simd_used() -> int:
    """The vector level the CSR loops run at: :func:`simd`, at most what the CPU has."""
    return min(simd(), int(lib.ff_pack_simd()))


def plan(
    geo: di.Geometry, ids: np.ndarray, ncrd: np.ndarray
) -> tuple[di.Layout, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`dma_image.plan` in C, for the grid tiles ``ids`` (increasing) of the counts
    ``ncrd`` of every grid tile: the same layout, without numpy's temporaries (with hundreds of
    thousands of tiles, each a fresh array whose pages fault in, planning took as long as
    filling; the tiles' indices and extents, a tenth of the pack). Also returns the tiles'
    extents, their offsets with the image's end appended, and ``slot``: the directory index of
    every grid tile, -1 for an empty one."""
    n, ndim = len(ids), geo.ndim
    index, ext, npos, seg, crd = (np.empty((n, ndim), dtype=np.int64) for _ in range(5))
    vals, tile_bytes = (np.empty(n, dtype=np.int64) for _ in range(2))
    tile_off = np.empty(n + 1, dtype=np.int64)
    slot = np.empty(int(np.prod(geo.grid)), dtype=np.int64)
    dir_offset, first = di.directory_span(ndim, n)
    dense = np.ascontiguousarray(geo.dense, dtype="u1")
    total = lib.ff_plan(
        ndim,
        ffi.from_buffer("uint8_t[]", dense),
        *(_i64(np.ascontiguousarray(a, dtype=np.int64)) for a in (geo.sizes, geo.tiles, geo.grid)),
        geo.coord_bytes,
        di.tile_header_dtype(ndim).itemsize,
        first,
        n,
        _i64(np.ascontiguousarray(ids, dtype=np.int64)),
        _i64(ncrd),
        *(_i64(a) for a in (index, ext, npos, seg, crd, vals, tile_off, tile_bytes, slot)),
        len(slot),
    )
    di.check_limits(npos, tile_bytes)
    lay = di.Layout(
        tile_ids=ids,
        index=index,
        npos=npos,
        seg_offset=seg,
        crd_offset=crd,
        vals_offset=vals,
        tile_offset=tile_off[:n],
        tile_bytes=tile_bytes,
        dir_offset=dir_offset,
        total_bytes=int(total),
    )
    return lay, ext, tile_off, slot


def pack_c(t: Tensor, geo: di.Geometry) -> tuple[np.ndarray, di.Layout, tuple[int, int]]:
    """Pack ``t``; return the image (checksum not yet stored), its layout and ``(start, crc)``:
    the CRC-32 of ``image[start:]``, computed while filling (see :func:`dma_image.checksum`)."""
    ndim = geo.ndim
    keep = []  # arrays that must outlive the C calls

    def arr(a: np.ndarray, dtype: str) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=dtype)
        keep.append(a)
        return a

    dense = arr(geo.dense, "u1")
    sizes, tiles, grid = arr(geo.sizes, "i8"), arr(geo.tiles, "i8"), arr(geo.grid, "i8")
    pos = ffi.new("int64_t *[]", ndim)
    crd = ffi.new("int32_t *[]", ndim)
    for k, level in enumerate(t.levels):
        if level.pos is not None and level.crd is not None:
            pos[k] = ffi.from_buffer("int64_t[]", arr(level.pos, "i8"))
            crd[k] = ffi.from_buffer("int32_t[]", arr(level.crd, "i4"))
    vals = arr(t.values.view(np.uint32), "u4")
    tree = ffi.new(
        "ff_tree *",
        {
            "ndim": ndim,
            "coord_bytes": geo.coord_bytes,
            "dense": ffi.from_buffer("uint8_t[]", dense),
            "size": _i64(sizes),
            "tile": _i64(tiles),
            "grid": _i64(grid),
            "pos": pos,
            "crd": crd,
            "vals": ffi.from_buffer("uint32_t[]", vals),
        },
    )
    n_grid = int(np.prod(geo.grid))
    ncrd = np.empty((n_grid, ndim), dtype=np.int64)
    scratch = np.empty((n_grid, ndim), dtype=np.int64)
    found = np.empty(n_grid, dtype=np.int64)
    n_found = ffi.new("int64_t *")
    runs = np.zeros(int(geo.grid[0]), dtype=np.int64)
    workers = threads(t.nnz)
    if lib.ff_count(
        tree, _i64(ncrd), _i64(scratch), _i64(runs), _i64(found), n_found, workers, simd()
    ) == (lib.FF_BAD_COORD):
        raise CoordinateError(
            f"a coordinate of the {t.shape} tensor lies outside its mode (negative, or not below "
            "the mode's size); build the tensor with ff.Tensor.from_scipy / from_coo / "
            "from_numpy, which check them, or fix the index arrays"
        )
    del scratch

    # A tile is stored if its last level has positions. For a compressed last level that is its
    # count, and ff_count listed those tiles as it counted (numpy's compare and flatnonzero over
    # a whole grid of counts, hundreds of thousands of tiles, cost a tenth of a pack); only a
    # dense one needs the positions of every grid tile worked out.
    if geo.dense[-1]:
        all_ids = np.arange(n_grid, dtype=np.int64)
        npos = di.positions(geo, geo.extents(geo.tile_index(all_ids)), ncrd)
        ids = np.flatnonzero(npos[:, -1] > 0).astype(np.int64)
        del npos
    else:
        ids = found[: n_found[0]].copy()
    del found
    lay, ext, tile_off, slot = plan(geo, ids, ncrd)
    del ncrd

    # Not zeroed: ff_fill writes every byte of the tiles, headers and padding included, and of
    # the directory; write_tables every byte before it. A large image gets pages a freed one
    # left (image_memory); new pages the kernel clears on their first write, which costs about
    # as much as copying the image: the threads of ff_fill take those faults as they write,
    # each for its own tiles and directory entries, and find each page just cleared and still
    # in cache (faulting them all in first sent both the clearing and the filling out to
    # memory: 0.8x the time with 256x256 tiles, 0.85x with 4096x4096).
    data = image_memory.new(lay.total_bytes)
    first = int(lay.tile_offset[0]) if len(ids) else lay.total_bytes
    data[: lay.dir_offset] = 0
    di.write_tables(geo, lay, data, directory=False)
    n = len(ids)
    state = np.empty((2, n, ndim), dtype=np.int64)
    crc = lib.ff_fill(
        tree,
        ffi.from_buffer("uint8_t[]", data),
        _i64(slot),
        n,
        _i64(ext),
        _i64(np.ascontiguousarray(lay.npos, dtype=np.int64)),
        _i64(np.ascontiguousarray(lay.seg_offset, dtype=np.int64)),
        _i64(np.ascontiguousarray(lay.crd_offset, dtype=np.int64)),
        _i64(np.ascontiguousarray(lay.vals_offset, dtype=np.int64)),
        _i64(tile_off),
        di.tile_header_dtype(ndim).itemsize,
        _i64(lay.index),
        lay.dir_offset,
        di.dir_entry_dtype(ndim).itemsize,
        _i64(state[0]),
        _i64(state[1]),
        _i64(runs),
        workers,
        simd(),
        int(di.records_extents(geo)),
    )
    return data, lay, (first, int(crc))
