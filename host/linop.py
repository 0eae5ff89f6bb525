"""``ff.aslinearoperator``: a matrix on a device as a scipy ``LinearOperator``, so that scipy's
iterative solvers (``cg``, ``gmres``, ``bicgstab``, ``minres``, ``eigsh``...) run their
products on the device.

The device computes in float32 (or int32). The operator's dtype is the matrix's, and it takes
vectors of any real type, converting them to it: scipy's solvers hand it float64 vectors
when the right-hand side is float64, and each is then rounded to float32 (a relative error of
at most 2^-24, about 6e-8, per entry). This is the one place fiberflow converts without a
``dtype=``: asking for a float32 operator is asking for float32 products. Elsewhere
(``ff.spmv``, ``ff.run``) float64 is refused unless ``dtype=`` says to convert.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from fiberflow.errors import DeviceError, DTypeError
from fiberflow.host.devices.resident import ResidentMatrix, is_handle


class DeviceOperator(LinearOperator):
    """``A`` (resident on a device) as a LinearOperator: ``matvec`` / ``matmat`` run
    ``ff.spmv`` / ``ff.spmm``, ``rmatvec`` / ``rmatmat`` the same on ``A``'s transpose (a
    resident copy, made the first time one is asked for)."""

    def __init__(self, h: ResidentMatrix) -> None:
        super().__init__(dtype=h.dtype, shape=h.shape)
        self.handle = h

    def _cast(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind == "c":
            raise DTypeError("the device computes with real numbers; this vector is complex")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.handle @ self._cast(x).reshape(-1)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self.handle @ self._cast(X)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self.handle.T @ self._cast(x).reshape(-1)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self.handle.T @ self._cast(X)

    def _adjoint(self) -> LinearOperator:
        return DeviceOperator(self.handle.T)

    def _transpose(self) -> LinearOperator:
        return DeviceOperator(self.handle.T)


def aslinearoperator(A: Any, *, device: Any = None, dtype: Any = None) -> DeviceOperator:
    """``A`` (a scipy sparse matrix, an ``ff.Tensor``, or a handle from ``dev.put``) as a
    scipy ``LinearOperator`` whose products run on ``device``. A matrix is put on the device
    once (``dtype=`` converts it, e.g. float64 to float32) and stays there while the operator
    lives."""
    if is_handle(A):  # one device's, or a dask device's
        if device is not None and A.device is not device:
            raise DeviceError("this resident matrix lives on another device than device=")
        return DeviceOperator(A)
    if device is None:
        raise DeviceError(
            "ff.aslinearoperator needs device=: open one with dev = ff.open('emu'); "
            "fiberflow keeps no default device"
        )
    return DeviceOperator(device.put(A, dtype=dtype))
