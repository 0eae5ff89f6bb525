"""Semirings, named as GraphBLAS names them: the ALU operations a graph adds and multiplies
with, and the identity of the addition, which is what an empty row or a missing side of a
union contributes (``+inf`` for ``min_plus``: the shortest path to nowhere).

``lor_land`` is on 0/1 values: OR as the maximum, AND as the minimum (int32 only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiberflow.errors import DTypeError, FormatError
from fiberflow.overlay.primitives.ops import Op

_F_INF = 0x7F800000
_F_NEG_INF = 0xFF800000
_I_MAX = 0x7FFFFFFF
_I_MIN = 0x80000000


@dataclass(frozen=True)
class Semiring:
    name: str
    add: tuple[Op, Op]  # (fp32 op, int32 op)
    mul: tuple[Op, Op]
    identity: tuple[int, int]  # the addition's identity, as fp32 and int32 words
    fp32: bool = True  # defined on float32 values

    def ops(self, dtype: np.dtype) -> tuple[Op, Op, int]:
        """(add, mul, identity word) for values of ``dtype`` (float32 or int32)."""
        k = 0 if np.dtype(dtype) == np.float32 else 1
        if k == 0 and not self.fp32:
            raise DTypeError(f"semiring {self.name} is on 0/1 int32 values; pass int32 operands")
        return self.add[k], self.mul[k], self.identity[k]

    def sub(self, dtype: np.dtype) -> Op:
        if self.name != "plus_times":
            raise FormatError(f"'-' has no meaning in semiring {self.name}; use plus_times")
        return Op.FSUB if np.dtype(dtype) == np.float32 else Op.SUB


SEMIRINGS = {
    s.name: s
    for s in (
        Semiring("plus_times", (Op.FADD, Op.ADD), (Op.FMUL, Op.MUL), (0, 0)),
        Semiring("min_plus", (Op.FMIN, Op.MIN), (Op.FADD, Op.ADD), (_F_INF, _I_MAX)),
        Semiring("max_plus", (Op.FMAX, Op.MAX), (Op.FADD, Op.ADD), (_F_NEG_INF, _I_MIN)),
        Semiring("max_times", (Op.FMAX, Op.MAX), (Op.FMUL, Op.MUL), (_F_NEG_INF, _I_MIN)),
        Semiring("min_times", (Op.FMIN, Op.MIN), (Op.FMUL, Op.MUL), (_F_INF, _I_MAX)),
        Semiring("lor_land", (Op.MAX, Op.MAX), (Op.MIN, Op.MIN), (0, 0), fp32=False),
    )
}


def semiring(name: str | Semiring) -> Semiring:
    if isinstance(name, Semiring):
        return name
    try:
        return SEMIRINGS[name]
    except (KeyError, TypeError):
        raise FormatError(f"unknown semiring {name!r}; use one of {', '.join(SEMIRINGS)}") from None
