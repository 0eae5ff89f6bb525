"""Checking a device's result against scipy, as ``fiberflow run``, ``demo`` and the
benchmarks report it, and measuring what converting a file's values to the device's type cost.

**float32.** The device computes each entry ``y_i = sum_j a_ij x_j`` of a row with ``n_i``
stored entries in float32: ``n_i`` products and ``n_i`` additions (the first one into the
zero the accumulator starts from), each rounded, then the result is stored as float32. The
reference is scipy in float64 on the *same float32 inputs* (the rounded matrix and vector), so
only the device's arithmetic is being checked, not the conversion of the file.

With the unit roundoff ``u = eps32 / 2 = 2**-24``, the classical bound for an inner product
computed in any order of summation (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., Theorem 3.1 and eq. 3.5) is ``|fl(y_i) - y_i| <= gamma_n * (|A| @ |x|)_i`` with
``gamma_n = n u / (1 - n u)``. Rounding the stored result adds one more ``u``, so with
``n = n_i + 1``::

    tol_i = (n_i + 1) * eps32 * (|A| @ |x|)_i  +  (n_i + 1) * tiny32

``(n_i + 1) * eps32 = 2 (n_i + 1) u`` is at least ``gamma_{n_i+1}`` whenever
``(n_i + 1) u <= 1/2``, i.e. for any row shorter than 8 million entries, and it holds
whatever order the device adds a row's partial sums in (across tiles and lanes). The second
term allows each operation to lose up to the smallest normal float32, ``tiny32``, for
hardware that flushes subnormal results to zero. The bound scales with the row's magnitude sum
``|A| @ |x|``, not with ``|y_i|``: where terms cancel, the error is small next to the terms,
not next to the result, which is why the verdict reports the error relative to that sum. NaN
and infinities must match scipy's.

**int32.** Exactly scipy's int64 result wrapped to 32 bits, because fiberflow's int32
arithmetic wraps around.

**Input rounding** (:func:`input_rounding`) is reported separately: how much the values
changed when the file's float64 (or large integer) values were rounded to float32, and how far
that moves the exact product, relative to the same magnitude sum.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

EPS32 = float(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).tiny)


def tolerance(A: sp.sparray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry float32 tolerance of ``A @ dense`` (see the module docstring), and the
    magnitude sum ``|A| @ |dense|`` it scales with, both in float64."""
    A64 = sp.csr_array(A).astype(np.float64)
    scale = abs(A64) @ np.abs(dense.astype(np.float64))
    n = np.diff(A64.indptr).astype(np.float64) + 1.0
    if scale.ndim == 2:
        n = n[:, None]
    return n * EPS32 * scale + n * TINY32, scale


def against_scipy(out: np.ndarray, A: sp.sparray, dense: np.ndarray) -> tuple[bool, str]:
    """Compare ``out`` with ``A @ dense`` computed by scipy; return (ok, a one-line verdict).
    ``A`` and ``dense`` are what the device was given (float32 or int32 values)."""
    A = sp.csr_array(A)
    if out.dtype == np.int32:
        ref = (A.astype(np.int64) @ dense.astype(np.int64)) & 0xFFFFFFFF
        ok = bool(np.array_equal(out.astype(np.int64) & 0xFFFFFFFF, ref))
        return ok, f"equal to scipy (int64 wrapped to 32 bits): {ok}"
    ref = A.astype(np.float64) @ dense.astype(np.float64)
    tol, scale = tolerance(A, dense)
    out64 = out.astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(out64 - ref)
        same = (out64 == ref) | (np.isnan(out64) & np.isnan(ref))  # equal infinities, NaNs
        good = same | (err <= tol)
        rel = np.where(same, 0.0, err / np.where(scale > 0, scale, 1.0))
    ok = bool(good.all())
    worst = float(np.nanmax(rel)) if rel.size and not np.isnan(rel).all() else 0.0
    bound = float((tol / np.where(scale > 0, scale, 1.0)).max(initial=0.0))
    return ok, (
        f"within float32 tolerance of scipy: {ok} (max |error| {worst:.2g} of |A||x|, bound "
        f"{bound:.2g}; scipy in float64 on the same float32 inputs)"
    )


def input_rounding(exact: sp.sparray, rounded: sp.sparray, dense: np.ndarray) -> str:
    """One line on what converting ``exact`` (the file's values) to ``rounded`` (the device's)
    cost: the largest relative change of a value, and how far it moves ``exact @ dense``
    relative to ``|exact| @ |dense|``."""
    E = sp.csr_array(exact).astype(np.float64)
    R = sp.csr_array(rounded).astype(np.float64)
    d = dense.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(R.data - E.data) / np.abs(E.data)
    value = float(np.nanmax(change)) if change.size else 0.0
    scale = abs(E) @ np.abs(d)
    moved = np.abs(R @ d - E @ d) / np.where(scale > 0, scale, 1.0)
    product = float(moved.max(initial=0.0))
    return (
        f"max relative rounding of a value {value:.2g}; it moves the exact product by up to "
        f"{product:.2g} of |A||x|"
    )
