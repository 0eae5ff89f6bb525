"""The numpy reference packer: sort entries by tile, then build each tile's fibertree.

It is the readable definition of what a DMA image holds; the C fast path must produce the same
bytes (``tests/test_pack.py`` checks this on random tensors).
"""

from __future__ import annotations

import numpy as np

from fiberflow.host.formats.fibertree import Level, build_levels
from fiberflow.host.formats.tensor import Tensor
from fiberflow.host.images import dma_image as di


def tiles_of(
    t: Tensor, geo: di.Geometry
) -> tuple[np.ndarray, list[tuple[list[Level], np.ndarray]]]:
    """The non-empty tiles of ``t``: their linear ids and their (levels, values)."""
    coords = t.storage_coords()
    if coords.shape[1] == 0:
        return np.zeros(0, dtype=np.int64), []
    tiles = geo.tiles[:, None]
    lin = np.ravel_multi_index(tuple(coords // tiles), tuple(geo.grid))
    order = np.argsort(lin, kind="stable")  # stable: keeps each tile's entries in lex order
    ids, starts = np.unique(lin[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    index = geo.tile_index(ids)
    extents = geo.extents(index)
    built = []
    for i in range(len(ids)):
        sel = order[starts[i] : ends[i]]
        local = coords[:, sel] - (index[i] * geo.tiles)[:, None]
        built.append(
            build_levels(local, t.values[sel], tuple(int(e) for e in extents[i]), t.fmt.levels)
        )
    return ids.astype(np.int64), built


def pack_numpy(t: Tensor, geo: di.Geometry) -> tuple[np.ndarray, di.Layout]:
    ids, built = tiles_of(t, geo)
    ncrd = np.zeros((len(ids), geo.ndim), dtype=np.int64)
    for i, (levels, _) in enumerate(built):
        for k, level in enumerate(levels):
            if level.crd is not None:
                ncrd[i, k] = len(level.crd)
    lay = di.plan(geo, ids, ncrd)
    data = np.zeros(lay.total_bytes, dtype=np.uint8)
    di.write_tables(geo, lay, data)
    crd_type = np.dtype(f"<u{geo.coord_bytes}")
    for i, (levels, vals) in enumerate(built):
        for k, level in enumerate(levels):
            if level.pos is None or level.crd is None:
                continue
            seg = level.pos.astype("<u4").view(np.uint8)
            crd = level.crd.astype(crd_type).view(np.uint8)
            data[lay.seg_offset[i, k] : lay.seg_offset[i, k] + len(seg)] = seg
            data[lay.crd_offset[i, k] : lay.crd_offset[i, k] + len(crd)] = crd
        raw = vals.view(np.uint8)
        data[lay.vals_offset[i] : lay.vals_offset[i] + len(raw)] = raw
    if di.records_extents(geo) and built:
        crd = [levels[1].crd for levels, _ in built]
        di.extents_of(data, lay.dir_offset, len(ids))[:] = [(c.min(), c.max() + 1) for c in crd]
    return data, lay
