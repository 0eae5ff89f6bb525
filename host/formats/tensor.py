"""``ff.Tensor``: an N-D tensor stored as a fibertree (see :mod:`fiberflow.host.formats.fibertree`).

Duplicates and order: coordinates given to :meth:`Tensor.from_coo` (or inside a scipy matrix)
may be unsorted and may repeat. They are sorted, and repeated coordinates are summed, as scipy's
``sum_duplicates`` does. The caller's arrays are never modified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from fiberflow.errors import CoordinateError, ShapeError
from fiberflow.host import args
from fiberflow.host.formats import dtypes
from fiberflow.host.formats.fibertree import (
    Level,
    build_levels,
    check_compressed,
    check_fill,
    check_sorted,
    leaf_coords,
    lex_sort_unique,
)
from fiberflow.host.formats.formats import COMPRESSED, DENSE, Format, default_dense, default_sparse

# Coordinates are stored as int32, so each dimension must fit.
MAX_DIM = 2**31 - 1


def _check_shape(shape: Any) -> tuple[int, ...]:
    dims = args.integers(shape, "a shape", ShapeError)
    if not dims:
        raise ShapeError("a tensor needs at least one mode; wrap scalars in a 1-element vector")
    for d in dims:
        if d < 0 or d > MAX_DIM:
            raise ShapeError(f"dimension {d} in shape {dims} must be between 0 and {MAX_DIM}")
    return dims


def _array(x: Any, what: str) -> np.ndarray:
    """``np.asarray(x)``, with numpy's complaints about ragged or odd input as ShapeError."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"{what} must be a rectangular array of numbers: {e}") from None


def _check_coords(coords: list[np.ndarray], dims: tuple[int, ...]) -> None:
    """One integer array of coordinates per mode, each inside its dimension. Compared in their
    own type, so that no uint64 or int64 value wraps around before it is checked."""
    for c in coords:
        if c.dtype.kind not in "iu":
            raise CoordinateError(f"coordinates must be integers, not {c.dtype}")
    if not len(coords[0]):
        return
    outside = np.zeros(len(coords[0]), dtype=bool)
    for c, dim in zip(coords, dims, strict=True):
        if c.min() < 0 or c.max() >= dim:
            outside |= (c < 0) | (c >= dim)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        at = tuple(int(c[i]) for c in coords)
        mode = next(m for m, (v, dim) in enumerate(zip(at, dims, strict=True)) if not 0 <= v < dim)
        raise CoordinateError(
            f"entry {i} at {at}: coordinate {at[mode]} in mode {mode} is outside "
            f"0..{dims[mode] - 1} (shape {dims}); check the indices or enlarge the shape"
        )


# The index types scipy's C routines (sparsetools) take; any other is converted after the check.
_NATIVE_INDEX = (np.dtype(np.int32), np.dtype(np.int64))


def _check_scipy(A: Any, dims: tuple[int, ...]) -> Any:
    """Check the raw index arrays of a scipy matrix before scipy's C code reads them; return
    ``A``, or the same matrix rebuilt around index arrays of a type scipy's C code takes."""
    if A.format in ("csr", "csc", "bsr"):
        R, C = A.blocksize if A.format == "bsr" else (1, 1)
        if dims[0] % R or dims[1] % C:
            raise ShapeError(f"the matrix's shape {dims} is not a multiple of its blocks")
        outer, inner = (dims[0] // R, dims[1] // C) if A.format != "csc" else dims[::-1]
        names = ("column", "row") if A.format == "csc" else ("row", "column")
        pos, crd = check_compressed(A.indptr, A.indices, outer, inner, "the matrix", names)
        data = np.asarray(A.data)
        block = (R, C) if A.format == "bsr" else ()
        if data.shape != (len(crd), *block):
            raise ShapeError(
                f"the matrix has {len(crd)} indices but data of shape {data.shape}; scipy "
                "arrays must have one value per index"
            )
        if A.indptr.dtype != A.indices.dtype or A.indices.dtype not in _NATIVE_INDEX:
            return type(A)((data, crd.astype(np.int64), pos.astype(np.int64)), shape=dims)
    elif A.format == "coo":
        row, col, data = np.asarray(A.row), np.asarray(A.col), np.asarray(A.data)
        if not row.ndim == col.ndim == data.ndim == 1 or not len(row) == len(col) == len(data):
            raise ShapeError(
                f"the matrix has {row.shape} rows, {col.shape} columns and {data.shape} values; "
                "scipy arrays must have one of each per entry"
            )
        _check_coords([row, col], dims)
        if row.dtype != col.dtype or row.dtype not in _NATIVE_INDEX:
            return type(A)((data, (row.astype(np.int64), col.astype(np.int64))), shape=dims)
    return A


class Tensor:
    """A sparse or dense tensor in a TACO-style format.

    Build one with :meth:`from_scipy`, :meth:`from_numpy` or :meth:`from_coo`. The constructor
    takes already-built levels and checks all of them (the C packer trusts a tensor's levels):
    shapes, segment arrays, coordinate bounds and order, the values' length and type.
    """

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside; equality is by value

    def __init__(
        self, shape: tuple[int, ...], fmt: Format | str, levels: list[Level], values: Any
    ) -> None:
        dims = _check_shape(shape)
        f = Format.parse(fmt, len(dims))
        if not isinstance(levels, (list, tuple)) or len(levels) != len(dims):
            raise ShapeError(f"a {len(dims)}-D tensor needs {len(dims)} levels")
        checked: list[Level] = []
        nparent = 1
        for k, (level, kind, mode) in enumerate(zip(levels, f.levels, f.order, strict=True)):
            what = f"level {k} of the tensor"
            if not isinstance(level, Level) or level.kind != kind or level.size != dims[mode]:
                raise ShapeError(f"{what} must be a Level of kind {kind!r} and size {dims[mode]}")
            if kind == DENSE:
                if level.pos is not None or level.crd is not None:
                    raise ShapeError(f"{what} is dense and has no segment or coordinate array")
                checked.append(Level(DENSE, dims[mode]))
                nparent *= dims[mode]
            else:
                pos, crd = check_compressed(level.pos, level.crd, nparent, dims[mode], what)
                pos, crd = pos.astype(np.int64, copy=False), crd.astype(np.int32, copy=False)
                check_sorted(pos, crd, what)
                checked.append(Level(COMPRESSED, dims[mode], pos, crd))
                nparent = len(crd)
        vals = dtypes.coerce(_array(values, "the values"))
        if vals.ndim != 1 or len(vals) != nparent:
            raise ShapeError(
                f"the values must be a 1-D array of {nparent} entries, one per last-level "
                f"position, not of shape {vals.shape}"
            )
        self._set(dims, f, checked, np.ascontiguousarray(vals))

    def _set(
        self, shape: tuple[int, ...], fmt: Format, levels: list[Level], values: np.ndarray
    ) -> None:
        self._shape = shape
        self._format = fmt
        self.levels = levels
        self.values = values

    @classmethod
    def _trusted(
        cls, shape: tuple[int, ...], fmt: Format, levels: list[Level], values: np.ndarray
    ) -> Tensor:
        """A tensor from levels that are valid by construction (built from canonical
        coordinates, or checked just before): the constructor's checks are skipped."""
        t = cls.__new__(cls)
        t._set(shape, fmt, levels, values)
        return t

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_coo(
        cls,
        coords: Any,
        values: Any,
        shape: Any,
        format: str | Format | None = None,
        dtype: Any = None,
    ) -> Tensor:
        """Build a tensor from coordinates ``coords`` of shape ``(ndim, nnz)`` (one row per
        mode, as in pydata ``sparse.COO``) and ``values`` of length ``nnz``."""
        dims = _check_shape(shape)
        fmt = Format.parse(format if format is not None else default_sparse(len(dims)), len(dims))
        vals = dtypes.coerce(_array(values, "the values").reshape(-1), dtype)
        c = _array(coords, "coords")
        if c.ndim == 1 and len(dims) == 1:
            c = c.reshape(1, -1)
        if c.size == 0:  # an empty list has no integer type of its own
            c = c.reshape(len(dims), 0).astype(np.int64)
        if c.ndim != 2 or c.shape[0] != len(dims):
            raise ShapeError(
                f"coords must have shape (ndim, nnz) = ({len(dims)}, nnz) for a "
                f"{len(dims)}-D tensor, not {c.shape}"
            )
        if c.shape[1] != len(vals):
            raise ShapeError(f"{c.shape[1]} coordinates were given but {len(vals)} values")
        _check_coords(list(c), dims)
        c = c.astype(np.int64)
        coords, vals = lex_sort_unique(c[list(fmt.order)], vals)
        return cls._from_canonical(dims, fmt, coords, vals, real=c.shape[1])

    @classmethod
    def _from_canonical(
        cls, dims: tuple[int, ...], fmt: Format, coords: np.ndarray, vals: np.ndarray, real: int
    ) -> Tensor:
        """Build from storage-order coordinates that are already sorted, unique and inside
        the shape. ``real``: the items of data they come from, which bounds the positions the
        dense levels may fill (:func:`fibertree.check_fill`)."""
        sizes = tuple(dims[m] for m in fmt.order)
        check_fill(sizes, fmt.levels, coords.shape[1], real, f"format {fmt} of shape {dims}")
        levels, values = build_levels(coords, vals, sizes, fmt.levels)
        return cls._trusted(dims, fmt, levels, values)

    @classmethod
    def from_scipy(cls, A: Any, format: str | Format = "ds", dtype: Any = None) -> Tensor:
        """Build from any scipy sparse array or matrix (duplicates are summed).

        scipy does not check index bounds, so the raw arrays are checked first, in one
        vectorised pass, before any scipy conversion or C code reads them: ``indptr`` length,
        start, end and order, ``indices`` and ``data`` lengths, index type and bounds (COO:
        row and column bounds). Whether CSR/CSC indices are sorted is scipy's own
        ``has_canonical_format``, computed by scipy unless already cached on ``A``."""
        if not sp.issparse(A):
            raise ShapeError(
                f"from_scipy expects a scipy.sparse array or matrix, not {type(A).__name__}; "
                "use Tensor.from_numpy for dense arrays"
            )
        if A.ndim != 2:
            raise ShapeError(f"from_scipy handles 2-D matrices; got {A.ndim}-D, use from_coo")
        fmt = Format.parse(format, 2)
        dims = _check_shape(A.shape)
        dtypes.coerce(np.empty(0, A.dtype), dtype, "the matrix values")  # refuse before converting
        A = _check_scipy(A, dims)
        if fmt.levels == (DENSE, COMPRESSED):
            # CSR / CSC: take scipy's arrays directly, without a COO round trip.
            target = "csr" if fmt.order == (0, 1) else "csc"
            if A.format != target:  # scipy would allocate the new indptr before any check
                sizes = tuple(dims[m] for m in fmt.order)
                check_fill(sizes, fmt.levels, A.nnz, A.nnz, f"format {fmt} of shape {dims}")
            M = A.tocsr() if target == "csr" else A.tocsc()
            if not M.has_canonical_format:
                M = M.copy()
                M.sum_duplicates()
            vals = dtypes.coerce(M.data, dtype, "the matrix values")
            outer = dims[fmt.order[0]]
            levels = [
                Level(DENSE, outer),
                Level(
                    COMPRESSED,
                    dims[fmt.order[1]],
                    np.asarray(M.indptr, dtype=np.int64),
                    np.asarray(M.indices, dtype=np.int32),
                ),
            ]
            return cls._trusted(dims, fmt, levels, np.ascontiguousarray(vals))
        C = A.tocoo()
        return cls.from_coo(np.vstack([C.row, C.col]), C.data, dims, fmt, dtype)

    @classmethod
    def from_numpy(cls, x: Any, format: str | Format | None = None, dtype: Any = None) -> Tensor:
        """Build from a dense array. Dense levels keep every value; compressed levels keep
        the entries that compare unequal to zero (NaN is kept, -0.0 is dropped)."""
        arr = _array(x, "the array")
        if arr.ndim == 0:
            raise ShapeError("a 0-D array is a scalar; wrap it as a 1-element vector")
        dims = _check_shape(arr.shape)
        fmt = Format.parse(format if format is not None else default_dense(arr.ndim), arr.ndim)
        vals = dtypes.coerce(arr, dtype, "the array values")
        stored = np.transpose(vals, fmt.order)
        if all(kind == DENSE for kind in fmt.levels):
            levels = [Level(DENSE, stored.shape[k]) for k in range(arr.ndim)]
            return cls._trusted(dims, fmt, levels, np.ascontiguousarray(stored).reshape(-1))
        coords = np.vstack(np.nonzero(stored)).astype(np.int64)
        return cls._from_canonical(dims, fmt, coords, stored[tuple(coords)], real=arr.size)

    # -- properties ---------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def format(self) -> str:
        return str(self._format)

    @property
    def fmt(self) -> Format:
        return self._format

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def nnz(self) -> int:
        """Stored values, as in scipy: explicit zeros and dense-level fill count."""
        return len(self.values)

    # -- export -------------------------------------------------------------------------------

    def storage_coords(self) -> np.ndarray:
        """Coordinates of every stored value in storage order, shape ``(ndim, nnz)``."""
        return leaf_coords(self.levels)

    def to_coo(self) -> tuple[np.ndarray, np.ndarray]:
        """``(coords, values)`` with ``coords`` of shape ``(ndim, n)`` in logical mode order.

        Every stored value is returned, except that when the last level is dense, the
        all-zero-bits fill values (``0`` and ``+0.0``) are left out.
        """
        coords = np.empty((self.ndim, self.nnz), dtype=np.int64)
        coords[list(self._format.order)] = self.storage_coords()
        values = self.values
        if self._format.levels[-1] == DENSE:
            keep = values.view(np.uint32) != 0
            coords, values = coords[:, keep], values[keep]
        return coords, values

    def to_numpy(self) -> np.ndarray:
        """A dense array of the tensor's shape (ShapeError when it cannot be allocated)."""
        try:
            out = np.zeros(self._shape, dtype=self.dtype)
        except (ValueError, MemoryError):  # too big to address, or to allocate
            size = np.prod(np.array(self._shape, dtype=np.float64)) * self.dtype.itemsize
            raise ShapeError(
                f"a dense {self._shape} array of {self.dtype} needs {size:.3g} bytes, more than "
                "this machine can allocate; use to_coo() or to_scipy() instead"
            ) from None
        coords, values = self.to_coo()
        out[tuple(coords)] = values
        return out

    def to_scipy(self) -> sp.sparray:
        """A scipy sparse array: ``csr_array`` for "ds", ``csc_array`` for "ds:1,0", otherwise
        ``coo_array``. Only for 2-D tensors."""
        if self.ndim != 2:
            raise ShapeError(
                f"to_scipy needs a 2-D tensor; this one is {self.ndim}-D, use to_coo()"
            )
        level = self.levels[1]
        if self._format.levels == (DENSE, COMPRESSED):
            assert level.pos is not None and level.crd is not None
            cls = sp.csr_array if self._format.order == (0, 1) else sp.csc_array
            return cls((self.values, level.crd, level.pos), shape=self._shape)
        coords, values = self.to_coo()
        return sp.coo_array((values, (coords[0], coords[1])), shape=self._shape)

    # -- comparison ---------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality: same shape, format, dtype, levels and value bits."""
        if not isinstance(other, Tensor):
            return NotImplemented
        if (self._shape, self._format, self.dtype) != (other._shape, other._format, other.dtype):
            return False
        for a, b in zip(self.levels, other.levels, strict=True):
            if a.kind != b.kind or a.size != b.size:
                return False
            if a.kind == COMPRESSED and not (
                np.array_equal(a.pos, b.pos) and np.array_equal(a.crd, b.crd)
            ):
                return False
        return np.array_equal(self.values.view(np.uint32), other.values.view(np.uint32))

    def __repr__(self) -> str:
        return (
            f"Tensor(shape={self._shape}, format={self.format!r}, dtype={self.dtype}, "
            f"nnz={self.nnz})"
        )
