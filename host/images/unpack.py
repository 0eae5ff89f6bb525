"""Decoding a DMA image back into a tensor, trusting nothing in it.

Every field is checked before it is used: the checksum first, then the structure. The image must
be laid out exactly as :func:`dma_image.plan` would place it, and every segment and coordinate
array must describe a valid fibertree. Anything else raises :class:`ImageError`.
"""

from __future__ import annotations

import numpy as np

from fiberflow.errors import FiberflowError, TileShapeError
from fiberflow.host.formats.fibertree import Level, leaf_coords, lex_sort_unique
from fiberflow.host.formats.formats import DENSE
from fiberflow.host.formats.tensor import Tensor
from fiberflow.host.images import dma_image as di


def decode(data: np.ndarray) -> tuple[Tensor, di.Geometry]:
    """The tensor an image holds, and the image's geometry."""
    geo, h = di.read_geometry(data)
    n, ndim = int(h["n_tiles"]), geo.ndim
    entry = di.dir_entry_dtype(ndim)
    dir_offset = int(h["dir_offset"])
    if dir_offset != di.align(di.HEADER.itemsize + di.MODE.itemsize * ndim):
        raise di.image_error("the directory is not where it belongs")
    if dir_offset + n * entry.itemsize > len(data):
        raise di.image_error(f"the directory of {n} tiles runs past the end")
    entries = data[dir_offset : dir_offset + n * entry.itemsize].view(entry)
    index = entries["index"].astype(np.int64).reshape(n, ndim)
    if (index >= geo.grid).any():
        raise di.image_error("a tile index lies outside the tile grid")
    ids = (
        np.ravel_multi_index(tuple(index.T), tuple(geo.grid)).astype(np.int64)
        if n
        else np.zeros(0, dtype=np.int64)
    )
    if (np.diff(ids) <= 0).any():
        raise di.image_error("the tile directory is not in increasing tile order")

    # Read each tile's position counts, then demand the canonical layout for them.
    head = di.tile_header_dtype(ndim)
    offsets = entries["offset"].astype(np.int64)
    if n and (offsets.min() < 0 or offsets.max() + head.itemsize > len(data)):
        raise di.image_error("a tile lies outside the image")
    raw = data[offsets[:, None] + np.arange(head.itemsize)] if n else np.zeros((0, head.itemsize))
    heads = np.ascontiguousarray(raw, dtype=np.uint8).view(head).reshape(n)
    npos = heads["levels"]["npos"].astype(np.int64).reshape(n, ndim)
    try:
        lay = di.plan(geo, ids, npos)
    except TileShapeError:
        raise di.image_error("a tile header claims more positions than a tile can hold") from None
    rel = lay.tile_offset[:, None]
    checks = [
        (lay.tile_offset, offsets),
        (lay.tile_bytes, entries["nbytes"]),
        (lay.npos, npos),
        (lay.npos[:, -1] if n else np.zeros(0), entries["nvals"]),
        (lay.npos[:, -1] if n else np.zeros(0), heads["nvals"]),
        (lay.vals_offset - lay.tile_offset, heads["vals_offset"]),
        (np.where(lay.seg_offset > 0, lay.seg_offset - rel, 0), heads["levels"]["seg_offset"]),
        (np.where(lay.crd_offset > 0, lay.crd_offset - rel, 0), heads["levels"]["crd_offset"]),
    ]
    for expected, found in checks:
        if not np.array_equal(np.asarray(expected, dtype=np.int64), found.astype(np.int64)):
            raise di.image_error("tile sizes or offsets disagree with the tile contents")
    if lay.total_bytes != len(data) or int(h["nvals"]) != int(lay.npos[:, -1].sum()):
        raise di.image_error("the image size disagrees with its tiles")

    extents = geo.extents(lay.index)
    crd_type = np.dtype(f"<u{geo.coord_bytes}")
    all_coords, all_vals = [], []
    for i in range(n):
        levels = []
        parents = 1
        for k, kind in enumerate(geo.fmt.levels):
            ext = int(extents[i, k])
            if kind == DENSE:
                levels.append(Level(kind, ext))
            else:
                seg = _section(data, lay.seg_offset[i, k], parents + 1, np.dtype("<u4"))
                crd = _section(data, lay.crd_offset[i, k], int(npos[i, k]), crd_type)
                _check_level(seg, crd, ext, int(npos[i, k]))
                levels.append(Level(kind, ext, seg.astype(np.int64), crd.astype(np.int32)))
            parents = int(npos[i, k])
        vals = _section(data, lay.vals_offset[i], parents, geo.dtype.newbyteorder("<"))
        all_coords.append(leaf_coords(levels) + (lay.index[i] * geo.tiles)[:, None])
        all_vals.append(vals.astype(geo.dtype))
    if n:
        coords = np.concatenate(all_coords, axis=1)
        vals = np.concatenate(all_vals)
    else:
        coords, vals = np.zeros((ndim, 0), dtype=np.int64), np.zeros(0, dtype=geo.dtype)
    coords, vals = lex_sort_unique(coords, vals)  # tiles are disjoint: this only sorts
    try:
        # Dense levels fill positions no tile stores: bounded by the image's own size.
        return Tensor._from_canonical(geo.shape, geo.fmt, coords, vals, real=len(data)), geo
    except FiberflowError as e:
        raise di.image_error(f"the image describes an impossible tensor ({e})") from None


def _section(data: np.ndarray, offset: int, count: int, dtype: np.dtype) -> np.ndarray:
    start = int(offset)
    return data[start : start + count * dtype.itemsize].view(dtype)


def _check_level(seg: np.ndarray, crd: np.ndarray, extent: int, npos: int) -> None:
    if seg[0] != 0 or seg[-1] != npos or (np.diff(seg.astype(np.int64)) < 0).any():
        raise di.image_error("a segment array is not a valid offset list")
    if len(crd) and int(crd.max()) >= extent:
        raise di.image_error("a coordinate lies outside its tile")
    # Coordinates must increase strictly within each fiber.
    rising = np.diff(crd.astype(np.int64)) > 0
    boundary = np.zeros(max(len(crd) - 1, 0), dtype=bool)
    starts = seg[1:-1].astype(np.int64)
    starts = starts[(starts > 0) & (starts < len(crd))]
    boundary[starts - 1] = True
    if not (rising | boundary).all():
        raise di.image_error("coordinates within a fiber are not strictly increasing")
