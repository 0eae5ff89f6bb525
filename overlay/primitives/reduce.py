"""Scalar reducer: folds each fiber of a value stream into one value, over a chosen stop level.

Ports: sink ``i`` (values); source ``o``; config ``op`` (an
:class:`~fiberflow.overlay.primitives.alu.Op`: ``ADD``, ``MIN``, ``MAX``, ``FADD``, ``FMIN`` or
``FMAX``), ``init`` (the op's identity: 0 for add, ``0x7F800000`` for fp min, ...), ``level`` (L,
default 0).

Tokens: values are folded left to right, ``acc = op(acc, v)``, starting from ``init``. A stop
``Sn`` with ``n < L`` is absorbed (the fold continues across it); with ``n >= L`` the fold is
emitted as one value (``init`` for an empty fiber) and restarted, followed by ``S(n-L-1)`` when
``n > L``. So the output has ``L+1`` fewer stop levels: with L = 0, ``1 2 S0 3 S1 D`` becomes
``3 3 S0 D``. ``D`` passes on. fp32 follows the ALU's policy; the order is exactly this fold.

Timing: one input value per cycle (the fold is combinational in the accumulator loop); a stop
with ``n > L`` takes two cycles (value, then stop).
"""

from __future__ import annotations

import numpy as np
from migen import If, Mux, Signal

from fiberflow.overlay.primitives.alu import FOLD_OPS, Op, alu_comb, op_words
from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import DONE, Done, Empty, Kind, Stop, Token, Val


class Reducer(Primitive):
    def __init__(self) -> None:
        super().__init__()
        i = self.sink("i")
        o = self.source("o")
        op = self.config("op", 4)
        init = self.config("init", 32)
        level = self.config("level", 8)
        # # #
        acc = Signal(32)
        started = Signal()  # acc holds a fold (else it is init)
        pend = Signal()  # a stop is owed after the value just emitted
        pend_level = Signal(32)
        cur = Signal(32)
        self.comb += cur.eq(Mux(started, acc, init))
        folded = alu_comb(self, op, cur, Mux(i.kind == Kind.EMPTY, 0, i.data), FOLD_OPS)
        fire = o.valid & o.ready
        self.comb += If(
            pend,
            o.valid.eq(1),
            o.kind.eq(Kind.STOP),
            o.data.eq(pend_level),
        ).Elif(
            i.valid,
            If(
                (i.kind == Kind.VAL) | (i.kind == Kind.EMPTY),
                i.ready.eq(1),
            )
            .Elif(
                i.kind == Kind.STOP,
                If(
                    i.data < level,
                    i.ready.eq(1),
                ).Else(
                    o.valid.eq(1),
                    o.kind.eq(Kind.VAL),
                    o.data.eq(cur),
                    i.ready.eq(o.ready),
                ),
            )
            .Else(
                o.valid.eq(1),
                o.kind.eq(Kind.DONE),
                i.ready.eq(o.ready),
            ),
        )
        take = i.valid & i.ready
        self.sync += [
            If(pend & fire, pend.eq(0)),
            If(
                take,
                If(
                    (i.kind == Kind.VAL) | (i.kind == Kind.EMPTY),
                    acc.eq(folded),
                    started.eq(1),
                )
                .Elif(
                    (i.kind == Kind.STOP) & (i.data >= level),
                    started.eq(0),
                    If(i.data > level, pend.eq(1), pend_level.eq(i.data - level - 1)),
                )
                .Elif(i.kind == Kind.DONE, started.eq(0)),
            ),
        ]


def model(tokens: list[Token], op: Op, init: int, level: int = 0) -> list[Token]:
    """Values (an empty read as 0) fold into ``acc = op(acc, v)`` from ``init``; a stop of
    ``level`` or higher emits ``acc`` (then, if higher, the stop ``level + 1`` lower) and
    starts again; done passes. The folds of all groups run together, one :func:`op_words`
    per position in a group."""
    out: list[Token | None] = []
    groups: list[list[int]] = []  # per emitted sum: its values
    slots: list[int] = []  # where in ``out`` each sum goes
    current: list[int] = []
    for t in tokens:
        if isinstance(t, (Val, Empty)):
            current.append(t.value if isinstance(t, Val) else 0)
        elif isinstance(t, Stop):
            if t.level >= level:
                slots.append(len(out))
                out.append(None)
                groups.append(current)
                current = []
                if t.level > level:
                    out.append(Stop(t.level - level - 1))
        elif isinstance(t, Done):
            out.append(DONE)
            current = []
    acc = np.full(len(groups), init, np.uint32)
    lengths = np.array([len(g) for g in groups], np.int64)
    for step in range(int(lengths.max()) if len(groups) else 0):
        live = np.flatnonzero(lengths > step)
        vals = np.array([groups[g][step] for g in live.tolist()], np.uint32)
        acc[live] = op_words(op, acc[live], vals)
    for slot, value in zip(slots, acc.tolist(), strict=True):
        out[slot] = Val(int(value))
    return out  # type: ignore[return-value]
