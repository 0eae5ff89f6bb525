"""Checking a device's result against scipy, as ``fiberflow run`` and ``demo`` report it.

float32: within the error bound of a sequential float32 sum, ``L * eps * (|A| @ |x|)`` with
``L`` the longest row (NaN where scipy has NaN). int32: exactly scipy's int64 result wrapped
to 32 bits, because fiberflow's int32 arithmetic wraps around.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def against_scipy(out: np.ndarray, A: sp.sparray, dense: np.ndarray) -> tuple[bool, str]:
    """Compare ``out`` with ``A @ dense`` computed by scipy; return (ok, a one-line verdict)."""
    A = sp.csr_array(A)
    if out.dtype == np.int32:
        ref = (A.astype(np.int64) @ dense.astype(np.int64)) & 0xFFFFFFFF
        ok = bool(np.array_equal(out.astype(np.int64) & 0xFFFFFFFF, ref))
        return ok, f"equal to scipy (int64 wrapped to 32 bits): {ok}"
    A64 = A.astype(np.float64)
    ref = A64 @ dense.astype(np.float64)
    scale = abs(A64) @ np.abs(dense.astype(np.float64))
    longest = max(int(np.diff(A64.indptr).max()) if A64.shape[0] else 0, 1)
    with np.errstate(invalid="ignore"):
        err = np.abs(out - ref)
        good = (err <= longest * np.finfo(np.float32).eps * scale + 1e-30) | (
            np.isnan(out) & np.isnan(ref)
        )
    ok = bool(good.all())
    worst = float(np.nanmax(err)) if err.size and not np.isnan(err).all() else 0.0
    return ok, f"within float32 tolerance of scipy (float64): {ok}, max |error| {worst:.3g}"
