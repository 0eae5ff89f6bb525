"""Reading integer and time arguments strictly: shapes, tile shapes, timeouts.

Python's ``int()`` and ``tuple()`` accept far more than a shape: ``tuple('22')`` is two
characters, ``int(2.5)`` is 2 and ``int(True)`` is 1, so ``shape='22'`` or ``tile=(2.5, 3.7)``
would be misread silently. These helpers take only what the caller meant: integers (Python or
numpy), or floats that hold an exact integer; bools, strings, NaN and infinities are refused
with the given error class.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np

from fiberflow.errors import FiberflowError, TileShapeError


def integer(value: Any, what: str, error: type[FiberflowError]) -> int:
    """``value`` as an int: an integer, or a float holding an exact integer."""
    if isinstance(value, (bool, np.bool_)):
        raise error(f"{what} must be an integer, not the bool {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        return int(value)
    raise error(f"{what} must be an integer, not {value!r}")


def integers(value: Any, what: str, error: type[FiberflowError]) -> tuple[int, ...]:
    """A sequence of integers (a tuple, list or 1-D integer array), never a string."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise error(f"{what} must be a tuple of integers, not {value!r}")
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise error(f"{what} must be a 1-D sequence of integers, not an array of {value.shape}")
    return tuple(integer(v, f"every entry of {what}", error) for v in value)


# The longest wait a timeout may ask for (about 116 days): the clocks and lock waits that a
# timeout becomes (nanosecond deadlines, the C emulator's int64 clock) overflow far beyond it.
MAX_SECONDS = 1e7


def seconds(value: Any, what: str, error: type[FiberflowError]) -> float:
    """A positive, finite number of seconds, at most MAX_SECONDS."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise error(f"{what} must be a positive, finite number of seconds, not {value!r}")
    s = float(value)
    if not (math.isfinite(s) and s > 0):
        raise error(f"{what} must be a positive, finite number of seconds, not {value!r}")
    if s > MAX_SECONDS:
        raise error(
            f"{what}={value!r} is longer than fiberflow waits ({MAX_SECONDS:g} s, about 116 "
            f"days); pass {what}={MAX_SECONDS:g} for no practical limit"
        )
    return s


def tile_shape(value: Any, ndim: int) -> tuple[int, ...]:
    """A requested tile shape for a tensor of ``ndim`` modes: one int for every mode, or one
    int per mode, each at least 1 (TileShapeError otherwise)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        req = (integer(value, "tile (an int or a tuple of ints)", TileShapeError),) * ndim
    else:
        req = integers(value, "tile", TileShapeError)
    if len(req) != ndim:
        raise TileShapeError(f"tile {req} has {len(req)} modes but the tensor has {ndim}")
    if any(t < 1 for t in req):
        raise TileShapeError(f"tile {req}: every tile dimension must be at least 1")
    return req
