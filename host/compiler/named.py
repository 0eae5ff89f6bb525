"""The named kernels beyond SpMV and SpMM, each an expression for the compiler:

    ff.spgemm(A, B)        X(i,j) = A(i,k) * B(k,j)            Gustavson's order
    ff.add(A, B)           X(i,j) = A(i,j) + B(i,j)            the union of A's and B's entries
    ff.multiply(A, B)      X(i,j) = A(i,j) * B(i,j)            their intersection
    ff.sddmm(S, U, V)      X(i,j) = S(i,j) * U(i,k) * V(k,j)   S's entries of U @ V, scaled
    ff.spmspv(A, x)        y(i) = A(i,j) * x(j)                x sparse; y keeps rows with a product

Each takes ``semiring=`` (a GraphBLAS name) and runs on the emulator. Sparse results come
back as scipy ``csr_array`` (sorted indices); ``spmspv`` gives an ``ff.Tensor`` vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from fiberflow.errors import ShapeError
from fiberflow.host.compiler.kernel import compile
from fiberflow.host.formats.tensor import Tensor


def _matrix(x: Any, name: str) -> None:
    if not (sp.issparse(x) or isinstance(x, (Tensor, np.ndarray))) or getattr(x, "ndim", 0) != 2:
        raise ShapeError(f"{name} must be a 2-D sparse matrix (scipy or ff.Tensor), not {x!r:.60}")


def spgemm(A: Any, B: Any, *, device: Any = None, dtype: Any = None,
           semiring: str = "plus_times") -> sp.csr_array:  # fmt: skip
    """``A @ B`` with both sparse, as a csr_array."""
    _matrix(A, "A")
    _matrix(B, "B")
    k = compile("X(i,j) = A(i,k) * B(k,j)", {"A": "ds", "B": "ds", "X": "ds"},
                order="ikj", semiring=semiring)  # fmt: skip
    return k(A=A, B=B, device=device, dtype=dtype)


def add(A: Any, B: Any, *, device: Any = None, dtype: Any = None,
        semiring: str = "plus_times") -> sp.csr_array:  # fmt: skip
    """``A + B`` entry by entry (the semiring's addition) over the union of their entries."""
    return _elementwise("X(i,j) = A(i,j) + B(i,j)", A, B, device, dtype, semiring)


def multiply(A: Any, B: Any, *, device: Any = None, dtype: Any = None,
             semiring: str = "plus_times") -> sp.csr_array:  # fmt: skip
    """``A * B`` entry by entry (the semiring's multiplication) over the entries both have."""
    return _elementwise("X(i,j) = A(i,j) * B(i,j)", A, B, device, dtype, semiring)


def _elementwise(expression: str, A: Any, B: Any, device: Any, dtype: Any,
                 semiring: str) -> sp.csr_array:  # fmt: skip
    _matrix(A, "A")
    _matrix(B, "B")
    return compile(expression, semiring=semiring)(A=A, B=B, device=device, dtype=dtype)


def sddmm(S: Any, U: Any, V: Any, *, device: Any = None, dtype: Any = None,
          semiring: str = "plus_times") -> sp.csr_array:  # fmt: skip
    """``S .* (U @ V)`` for a sparse ``S`` (m, n) and dense ``U`` (m, r), ``V`` (r, n):
    ``U @ V`` only where S has entries."""
    _matrix(S, "S")
    k = compile("X(i,j) = S(i,j) * U(i,k) * V(k,j)", {"S": "ds", "U": "dd", "V": "dd:1,0",
                "X": "ds"}, order="ijk", semiring=semiring)  # fmt: skip
    return k(S=S, U=U, V=V, device=device, dtype=dtype)


def spmspv(A: Any, x: Any, *, device: Any = None, dtype: Any = None,
           semiring: str = "plus_times") -> Tensor:  # fmt: skip
    """``A @ x`` for a sparse vector ``x`` (an ff.Tensor, a 1-D scipy coo_array or a dense
    array whose zeros are dropped): a sparse vector of the rows that met an entry of x."""
    _matrix(A, "A")
    k = compile("y(i) = A(i,j) * x(j)", {"A": "ds", "x": "s", "y": "s"}, semiring=semiring)
    return k(A=A, x=x, device=device, dtype=dtype)
