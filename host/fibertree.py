"""Building and walking fibertree levels, shared by :class:`Tensor` and the DMA-image packer.

A fibertree stores one level per mode, in storage order. Level ``k`` maps each position of level
``k-1`` (the single root position for ``k = 0``) to a fiber of child positions:

* a dense level of size ``N`` gives every parent ``p`` the children ``p*N .. p*N+N-1``, with
  coordinates ``0 .. N-1``;
* a compressed level gives parent ``p`` the children ``pos[p] .. pos[p+1]-1``, whose coordinates
  are ``crd[pos[p]:pos[p+1]]``, strictly increasing.

The values array holds one value per position of the last level. Positions under dense levels
that received no entry hold zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiberflow.host.formats import DENSE


@dataclass(frozen=True)
class Level:
    """One level: ``kind`` is ``"d"`` or ``"s"``; compressed levels carry ``pos`` (int64,
    segment array) and ``crd`` (int32, coordinates)."""

    kind: str
    size: int
    pos: np.ndarray | None = None
    crd: np.ndarray | None = None


def build_levels(
    coords: np.ndarray, values: np.ndarray, sizes: tuple[int, ...], kinds: tuple[str, ...]
) -> tuple[list[Level], np.ndarray]:
    """Build levels from coordinates in storage order.

    ``coords`` has shape ``(ndim, nnz)``; its columns must be sorted lexicographically and
    unique. Returns the levels and the values array (zero-filled under dense levels).
    """
    nnz = coords.shape[1]
    parent = np.zeros(nnz, dtype=np.int64)
    nparent = 1
    levels: list[Level] = []
    for k, kind in enumerate(kinds):
        c = coords[k]
        if kind == DENSE:
            parent = parent * sizes[k] + c
            nparent *= sizes[k]
            levels.append(Level(kind, sizes[k]))
            continue
        # A compressed coordinate is new wherever the (parent, coordinate) pair changes; the
        # input order makes equal pairs adjacent.
        new = np.ones(nnz, dtype=bool)
        new[1:] = (parent[1:] != parent[:-1]) | (c[1:] != c[:-1])
        crd = c[new].astype(np.int32)
        counts = np.bincount(parent[new], minlength=nparent)
        pos = np.zeros(nparent + 1, dtype=np.int64)
        np.cumsum(counts, out=pos[1:])
        parent = np.cumsum(new, dtype=np.int64) - 1
        nparent = len(crd)
        levels.append(Level(kind, sizes[k], pos, crd))
    if nparent == nnz:  # sorted and unique, so every position is filled in order
        vals = np.ascontiguousarray(values)
    else:
        vals = np.zeros(nparent, dtype=values.dtype)
        vals[parent] = values
    return levels, vals


def leaf_coords(levels: list[Level]) -> np.ndarray:
    """The storage-order coordinates of every last-level position, shape ``(ndim, npos)``,
    in lexicographic order."""
    parents_of: list[np.ndarray] = []
    coords_of: list[np.ndarray] = []
    npos = 1
    for level in levels:
        if level.kind == DENSE:
            parents_of.append(np.repeat(np.arange(npos, dtype=np.int64), level.size))
            coords_of.append(np.tile(np.arange(level.size, dtype=np.int64), npos))
            npos *= level.size
        else:
            assert level.pos is not None and level.crd is not None
            parents_of.append(np.repeat(np.arange(npos, dtype=np.int64), np.diff(level.pos)))
            coords_of.append(level.crd.astype(np.int64))
            npos = len(level.crd)
    out = np.empty((len(levels), npos), dtype=np.int64)
    idx = np.arange(npos, dtype=np.int64)
    for k in range(len(levels) - 1, -1, -1):
        out[k] = coords_of[k][idx]
        idx = parents_of[k][idx]
    return out


def lex_sort_unique(coords: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort coordinate columns lexicographically and sum duplicates, as scipy does.

    Duplicates are summed in the values' own type and in input order (int32 wraps around).
    """
    if coords.shape[1] == 0:
        return coords, values
    order = np.lexsort(coords[::-1])
    coords = coords[:, order]
    values = values[order]
    dup = np.all(coords[:, 1:] == coords[:, :-1], axis=0)
    if dup.any():
        starts = np.flatnonzero(np.concatenate(([True], ~dup)))
        coords = coords[:, starts]
        with np.errstate(over="ignore"):
            values = np.add.reduceat(values, starts).astype(values.dtype)
    return coords, values
