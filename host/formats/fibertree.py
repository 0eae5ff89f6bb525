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

from fiberflow.errors import CoordinateError, FormatError, ShapeError
from fiberflow.host.formats.formats import DENSE

# Positions a tensor may fill beyond the data it was built from (dense levels allocate every
# position, stored or not): at most FILL_FACTOR per input item, and FILL_FLOOR in any case. A
# (2^31-1) x 2 CSR tensor with one entry would otherwise allocate a 16 GiB segment array.
FILL_FLOOR = 1 << 25
FILL_FACTOR = 16
MAX_POSITIONS = 1 << 40  # positions stay below this whatever the data (int64 products)


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

    Duplicates are summed in the values' own type with ``np.add.reduceat``, as scipy's COO
    ``sum_duplicates`` sums them, so the results are scipy's bit for bit: in input order, but
    pairwise within a run of more than 8 (numpy's summation), so a float32 sum of a long run
    can round differently from a strictly sequential one. int32 wraps around; float32 sums
    that overflow, or meet an infinity of the other sign, give an infinity or NaN without a
    warning.
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
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.add.reduceat(values, starts).astype(values.dtype)
    return coords, values


def check_fill(
    sizes: tuple[int, ...], kinds: tuple[str, ...], nnz: int, real: int, what: str
) -> None:
    """Refuse, before any allocation, a fibertree of ``nnz`` entries whose levels would hold
    far more positions than the ``real`` items (input entries, array elements, image bytes) it
    is built from: see FILL_FLOOR and FILL_FACTOR."""
    limit = min(max(FILL_FLOOR, FILL_FACTOR * real), MAX_POSITIONS - 1)
    npos = 1
    for kind, size in zip(kinds, sizes, strict=True):
        # A compressed level holds at most one position per entry.
        npos = npos * size if kind == DENSE else min(npos * size, nnz)
        if npos > limit:
            raise FormatError(
                f"{what} would fill {npos} positions from {real} items of data (the limit is "
                f"{limit}); use compressed ('s') levels for large sparse modes"
            )


def check_compressed(
    pos: np.ndarray,
    crd: np.ndarray,
    nparent: int,
    size: int,
    what: str,
    names: tuple[str, str] = ("row", "column"),
) -> tuple[np.ndarray, np.ndarray]:
    """Check a segment array and its coordinates in one vectorised pass, in their own integer
    types (nothing is converted before it is checked); return them as arrays, unconverted.
    ``pos`` must have ``nparent + 1`` integer entries, start at 0, never decrease and end at
    ``len(crd)``; every coordinate must lie in ``0 .. size - 1``. The first bad coordinate is
    reported with its parent position; ``names`` call them (the parent, the coordinate), by
    default a CSR matrix's row and column."""
    pos, crd = np.asarray(pos), np.asarray(crd)
    if pos.ndim != 1 or crd.ndim != 1:
        raise ShapeError(f"{what}: the segment and coordinate arrays must be 1-D")
    for name, a in (("segment", pos), ("coordinate", crd)):
        if a.dtype.kind not in "iu":
            raise CoordinateError(f"{what}: the {name} array must hold integers, not {a.dtype}")
    if len(pos) != nparent + 1:
        raise ShapeError(
            f"{what}: the segment array (indptr) has {len(pos)} entries; {nparent + 1} are "
            "needed, one more than the rows (or parent positions)"
        )
    if int(pos[0]) != 0 or int(pos[-1]) != len(crd):
        raise ShapeError(
            f"{what}: the segment array (indptr) must start at 0 and end at the number of "
            f"coordinates {len(crd)}; it runs from {pos[0]} to {pos[-1]}"
        )
    if nparent and (pos[1:] < pos[:-1]).any():
        row = int(np.flatnonzero(pos[1:] < pos[:-1])[0])
        raise ShapeError(
            f"{what}: the segment array (indptr) decreases at {names[0]} {row} "
            f"(indptr[{row + 1}] < indptr[{row}]); it must never decrease"
        )
    # From here on every segment entry lies in 0 .. len(crd): any integer type holds it.
    if len(crd) and not _in_range(crd, size):
        bad = int(np.flatnonzero((crd < 0) | (crd >= size))[0])
        row = int(np.searchsorted(pos, bad, side="right")) - 1
        raise CoordinateError(
            f"{what}: {names[0]} {row} has {names[1]} {crd[bad]}, outside 0..{size - 1}; "
            "check the indices or enlarge the shape"
        )
    return pos, crd


def _in_range(crd: np.ndarray, size: int) -> bool:
    """Whether every coordinate lies in ``0 .. size - 1`` (``size < 2^31``), in one pass."""
    if crd.dtype.kind == "i" and crd.dtype.itemsize >= 4:
        # A negative value read as unsigned is at least 2^31, beyond every size.
        return bool(crd.view(crd.dtype.str.replace("i", "u")).max() < size)
    return bool(crd.min() >= 0 and crd.max() < size)


def check_sorted(pos: np.ndarray, crd: np.ndarray, what: str) -> None:
    """Refuse coordinates that do not strictly increase within each fiber."""
    if len(crd) < 2:
        return
    rising = np.diff(crd.astype(np.int64)) > 0
    starts = pos[1:-1]
    starts = starts[(starts > 0) & (starts < len(crd))]
    rising[starts - 1] = True  # a fiber may start lower than the previous one ended
    if not rising.all():
        at = int(np.flatnonzero(~rising)[0]) + 1
        row = int(np.searchsorted(pos, at, side="right")) - 1
        raise CoordinateError(
            f"{what}: coordinates of fiber {row} are unsorted or repeated at position {at}"
        )


def check_lengths(levels: list[Level], values: np.ndarray, what: str) -> None:
    """The cheap part of a tree's invariants, again: array lengths, segment arrays from 0 to
    their coordinate count and never decreasing, one value per last-level position. For code
    that trusts a tree whose public arrays may have been replaced since it was checked."""
    nparent = 1
    for k, level in enumerate(levels):
        if level.kind == DENSE:
            nparent *= level.size
            continue
        pos, crd = level.pos, level.crd
        if (
            not isinstance(pos, np.ndarray)
            or not isinstance(crd, np.ndarray)
            or pos.dtype != np.int64
            or crd.dtype != np.int32
            or pos.ndim != 1
            or crd.ndim != 1
            or len(pos) != nparent + 1
            or pos[0] != 0
            or pos[-1] != len(crd)
            or (nparent and (np.diff(pos) < 0).any())
        ):
            raise ShapeError(
                f"{what}: level {k}'s arrays were changed after the tensor was built and no "
                "longer form a fibertree; build the tensor again"
            )
        nparent = len(crd)
    if values.ndim != 1 or len(values) != nparent:
        raise ShapeError(
            f"{what}: {len(values)} values for {nparent} positions; the values were changed "
            "after the tensor was built, build it again"
        )
