"""Repeater and its repeat-signal generator (SAM broadcast of a fiber over another level).

``RepeatSigGen`` -- sink ``i`` (a coordinate stream); source ``o``: each coordinate becomes a
repeat signal ``R`` (``VAL`` with data 0), stops and done pass unchanged. Combinational, no
latency, one token per cycle.

``Repeater`` -- sinks ``ref`` (references to repeat) and ``rep`` (a repeat signal); source ``o``.
Each reference is emitted once per ``R`` of its fiber of the repeat signal; the repeat signal's
stops are copied. The repeat signal has one more stop level than ``ref``: its ``S0`` ends the
repeats of one reference, and its ``Sn`` (n >= 1) also matches the ``S(n-1)`` that follows that
reference in ``ref`` (consumed silently, one extra cycle). An ``EMPTY`` reference is repeated
as ``EMPTY``. Example: ``ref = 7 8 S0 D``, ``rep = R R S0 R S1 D`` -> ``7 7 S0 8 S1 D``.
Combinational, one token per cycle.
"""

from __future__ import annotations

from migen import If, Mux, Signal

from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import DONE, Done, Kind, Stop, Token, Val


class RepeatSigGen(Primitive):
    def __init__(self) -> None:
        super().__init__()
        i = self.sink("i")
        o = self.source("o")
        # # #
        self.comb += [
            o.valid.eq(i.valid),
            o.kind.eq(i.kind),
            o.data.eq(Mux(i.kind == Kind.VAL, 0, i.data)),
            i.ready.eq(o.ready),
        ]


class Repeater(Primitive):
    def __init__(self) -> None:
        super().__init__()
        ref = self.sink("ref")
        rep = self.sink("rep")
        o = self.source("o")
        # # #
        skip = Signal()  # the stop following the last reference is still in `ref`
        fire = o.valid & o.ready
        self.comb += If(
            skip,
            ref.ready.eq(1),
        ).Elif(
            ref.valid & rep.valid,
            o.valid.eq(1),
            If(
                rep.kind == Kind.VAL,
                o.kind.eq(ref.kind),
                o.data.eq(ref.data),
                rep.ready.eq(o.ready),
            ).Else(
                o.kind.eq(rep.kind),
                o.data.eq(rep.data),
                rep.ready.eq(o.ready),
                ref.ready.eq(o.ready),
            ),
        )
        self.sync += If(skip & ref.valid, skip.eq(0)).Elif(
            fire & (rep.kind == Kind.STOP) & (rep.data != 0) & (ref.kind != Kind.STOP),
            skip.eq(1),
        )


def model_sig(crd: list[Token]) -> list[Token]:
    return [Val(0) if isinstance(t, Val) else t for t in crd]


def model(ref: list[Token], rep: list[Token]) -> list[Token]:
    out: list[Token] = []
    j = 0
    for r in rep:
        head = ref[j]
        if isinstance(r, Val):
            out.append(head)
        elif isinstance(r, Stop):
            out.append(r)
            j += 1
            if r.level >= 1 and not isinstance(head, Stop):
                j += 1  # the matching stop after this reference
        elif isinstance(r, Done):
            out.append(DONE)
            j += 1
    return out
