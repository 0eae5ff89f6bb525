"""The value types fiberflow computes with, and explicit conversion into them.

fp32 and int32 are supported. Other inputs are refused unless the caller asks for a conversion
with ``dtype=``, so no precision is lost silently:

* ``dtype="float32"`` rounds float64 (or integer) values to the nearest float32, as
  ``numpy.ndarray.astype`` does; values beyond the float32 range become infinities.
* ``dtype="int32"`` accepts integer (and bool) input whose values all fit in int32, and refuses
  anything else: floats would be truncated and larger integers would wrap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fiberflow.errors import DTypeError

SUPPORTED = (np.dtype(np.float32), np.dtype(np.int32))

# The code each value type has in DMA images and job descriptors.
CODES = {np.dtype(np.float32): 1, np.dtype(np.int32): 2}
BY_CODE = {code: dtype for dtype, code in CODES.items()}


def check_supported(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{dtype!r} is not a value type; use 'float32' or 'int32'") from None
    if dt not in SUPPORTED:
        raise DTypeError(f"dtype {dt} is not supported; use 'float32' or 'int32'")
    return dt


def coerce(values: np.ndarray, dtype: Any = None, what: str = "the values") -> np.ndarray:
    """Return ``values`` as float32 or int32.

    Without ``dtype``, only float32 and int32 input is accepted. With ``dtype``, the input is
    converted as the module docstring describes.
    """
    values = np.asarray(values)
    if dtype is None:
        if values.dtype in SUPPORTED:
            return values
        hint = "float32" if values.dtype.kind in "fc" else "int32"
        raise DTypeError(
            f"{what} have dtype {values.dtype}, which fiberflow does not compute with; "
            f"pass dtype='{hint}' to convert explicitly (fiberflow supports float32 and int32)"
        )
    target = check_supported(dtype)
    if values.dtype == target:
        return values
    if values.dtype.kind == "c":
        raise DTypeError(f"{what} are complex; fiberflow supports real float32 and int32 only")
    if target == np.float32:
        if values.dtype.kind not in "fiub":
            raise DTypeError(f"cannot convert {what} of dtype {values.dtype} to float32")
        with np.errstate(over="ignore"):
            return values.astype(np.float32)
    if values.dtype.kind not in "iub":
        raise DTypeError(
            f"{what} have dtype {values.dtype}; converting to int32 would truncate them. "
            "Round them yourself first, or use dtype='float32'"
        )
    if values.size:
        lo, hi = values.min(), values.max()
        info = np.iinfo(np.int32)
        if lo < info.min or hi > info.max:
            raise DTypeError(
                f"{what} range from {lo} to {hi}, outside int32; scale them or use float32"
            )
    return values.astype(np.int32)
