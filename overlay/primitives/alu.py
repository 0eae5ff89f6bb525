"""ALU: element-wise op on two value streams of the same shape.

Ports: sinks ``a``, ``b``; source ``o``; config ``op`` (4 bits, :class:`Op`).

Tokens: a ``VAL``/``EMPTY`` pair becomes ``VAL(op(a, b))`` (``EMPTY`` reads as the value 0);
any other pair (stops, done) must match and is passed on once. Latency 2 cycles, one token per
cycle. int32 ops wrap modulo 2**32 (min/max are signed); fp32 ops follow the policy of
:mod:`fiberflow.overlay.lanes.fp32` (round to nearest even, subnormals flushed to zero, canonical
NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from migen import Case, If, Mux, Signal

from fiberflow.overlay.lanes import fp32
from fiberflow.overlay.primitives.ops import ALL_OPS, FOLD_OPS, Op  # noqa: F401 (re-exported)
from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import Empty, Kind, Token, Val


def alu_comb(m: Any, op: Signal, a: Signal, b: Signal, ops: tuple[Op, ...] = ALL_OPS) -> Signal:
    """The combinational datapath shared by the ALU, the reducer and the accumulator.

    Only the ops in ``ops`` get hardware; any other op code gives 0.
    """
    r = Signal(32)
    sa, sb = Signal((32, True)), Signal((32, True))
    m.comb += [sa.eq(a), sb.eq(b)]
    cases: dict[Any, Any] = {"default": r.eq(0)}
    int_ops = {
        Op.ADD: lambda: a + b,
        Op.SUB: lambda: a - b,
        Op.MUL: lambda: a * b,
        Op.MIN: lambda: Mux(sa < sb, a, b),
        Op.MAX: lambda: Mux(sa > sb, a, b),
    }
    for o, fn in int_ops.items():
        if o in ops:
            cases[o] = r.eq(fn())
    if Op.FADD in ops or Op.FSUB in ops:
        is_sub = op == Op.FSUB if Op.FSUB in ops else 0
        fadd = fp32.fp_add(m, a, b, is_sub)
        cases.update({o: r.eq(fadd) for o in (Op.FADD, Op.FSUB) if o in ops})
    if Op.FMUL in ops:
        cases[Op.FMUL] = r.eq(fp32.fp_mul(m, a, b))
    if Op.FMIN in ops or Op.FMAX in ops:
        fmm = fp32.fp_minmax(m, a, b, op == Op.FMAX)
        cases.update({o: r.eq(fmm) for o in (Op.FMIN, Op.FMAX) if o in ops})
    m.comb += Case(op, cases)
    return r


class Alu(Primitive):
    def __init__(self) -> None:
        super().__init__()
        a, b = self.sink("a"), self.sink("b")
        o = self.source("o")
        op = self.config("op", 4)
        # # #
        # Stage 1 registers the operands; stage 2 registers the result. The whole pipe moves
        # together (ce) whenever its last stage is empty or being taken.
        ce = Signal()
        v1 = Signal()
        a1, b1, k1 = Signal(32), Signal(32), Signal(2)
        both = a.valid & b.valid
        self.comb += [
            ce.eq(~o.valid | o.ready),
            a.ready.eq(ce & both),
            b.ready.eq(ce & both),
        ]
        is_val_a = (a.kind == Kind.VAL) | (a.kind == Kind.EMPTY)
        self.sync += If(
            ce,
            v1.eq(both),
            a1.eq(Mux(a.kind == Kind.EMPTY, 0, a.data)),
            b1.eq(Mux(b.kind == Kind.EMPTY, 0, b.data)),
            k1.eq(Mux(is_val_a, Kind.VAL, a.kind)),
        )
        r = alu_comb(self, op, a1, b1)
        self.sync += If(
            ce,
            o.valid.eq(v1),
            o.kind.eq(k1),
            o.data.eq(Mux(k1 == Kind.VAL, r, a1)),
        )


# ---- reference model -----------------------------------------------------------------------


def op_words(op: Op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ALU's result for uint32 operand arrays (bit patterns)."""
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    if op == Op.ADD:
        return a + b
    if op == Op.SUB:
        return a - b
    if op == Op.MUL:
        return (a.astype(np.uint64) * b.astype(np.uint64)).astype(np.uint32)
    if op in (Op.MIN, Op.MAX):
        sa, sb = a.view(np.int32), b.view(np.int32)
        pick_a = sa < sb if op == Op.MIN else sa > sb
        return np.where(pick_a, a, b).astype(np.uint32)
    fn = {
        Op.FADD: fp32.model_add,
        Op.FSUB: fp32.model_sub,
        Op.FMUL: fp32.model_mul,
        Op.FMIN: fp32.model_min,
        Op.FMAX: fp32.model_max,
    }[Op(op)]
    return fn(a, b)


def model(a: list[Token], b: list[Token], op: Op) -> list[Token]:
    """Token by token: a value (or empty, read as 0) of ``a`` with ``b``'s partner (0 unless
    a value) gives ``op``'s result; any other token of ``a`` passes. The arithmetic runs as
    one :func:`op_words` over all the stream's values."""
    if len(a) != len(b):
        raise ValueError(f"ALU streams differ in length: {len(a)} vs {len(b)}")
    at = [k for k, x in enumerate(a) if isinstance(x, (Val, Empty))]
    xs = np.array([a[k].value if isinstance(a[k], Val) else 0 for k in at], np.uint32)
    ys = np.array([b[k].value if isinstance(b[k], Val) else 0 for k in at], np.uint32)
    out = list(a)
    for k, r in zip(at, op_words(op, xs, ys).tolist(), strict=True):
        out[k] = Val(int(r))
    return out
