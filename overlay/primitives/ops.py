"""The ALU's operation codes (the ``op`` register of :mod:`fiberflow.overlay.primitives.alu`), in a
module of their own so that code which only names operations (the compiler's semirings, the host's
fast paths) does not need Migen."""

from __future__ import annotations

from enum import IntEnum


class Op(IntEnum):
    ADD = 0
    SUB = 1
    MUL = 2
    MIN = 3
    MAX = 4
    FADD = 8
    FSUB = 9
    FMUL = 10
    FMIN = 11
    FMAX = 12


ALL_OPS = tuple(Op)
FOLD_OPS = (Op.ADD, Op.MIN, Op.MAX, Op.FADD, Op.FMIN, Op.FMAX)  # no multiplier: reducers
