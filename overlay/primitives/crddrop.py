"""Coordinate dropper: removes outer coordinates whose inner fiber came out empty (for example
rows of a product with no surviving nonzero after an intersection), and those empty fibers.

Ports: sinks ``outer`` (coordinates of level k) and ``inner`` (coordinates of level k+1, one
fiber per outer coordinate); sources ``oouter`` and ``oinner``.

Tokens: an outer coordinate is passed on only if its inner fiber has a coordinate; the outer
stops and done pass unchanged (an outer fiber whose coordinates were all dropped becomes a bare
stop). In the inner stream the empty fibers disappear: each kept fiber's stop is held back until
the next token shows whether fibers after it were dropped; a dropped fiber's higher stop level
is merged into the held stop, and an outer fiber left with no fiber becomes a bare stop one level
up, as a level scanner would have produced it. So ``outer = 0 1 2 S0 D``,
``inner = 5 S0 S0 6 7 S1 D`` gives ``0 2 S0 D`` and ``5 S0 6 7 S1 D``.

Timing: one inner coordinate per cycle within a fiber; each kept fiber costs two more cycles
(its held stop, its outer coordinate) and each dropped one a cycle.
"""

from __future__ import annotations

from migen import FSM, If, NextState, NextValue, Signal

from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import DONE, Done, Kind, Stop, Token, Val


class CoordDropper(Primitive):
    def __init__(self) -> None:
        super().__init__()
        outer, inner = self.sink("outer"), self.sink("inner")
        oouter, oinner = self.source("oouter"), self.source("oinner")
        # # #
        pend = Signal()  # a stop of the inner stream is held back
        pend_level = Signal(32)
        kept = Signal()  # the current outer fiber has passed on at least one inner fiber
        dsent = Signal()  # done already sent on the outer output
        both = outer.valid & inner.valid
        ok, ik = outer.kind, inner.kind
        in_fire = oinner.valid & oinner.ready
        out_fire = oouter.valid & oouter.ready

        def emit_pend() -> list:
            return [
                oinner.valid.eq(1),
                oinner.kind.eq(Kind.STOP),
                oinner.data.eq(pend_level),
                If(in_fire, NextValue(pend, 0)),
            ]

        def take_both() -> list:
            return [outer.ready.eq(1), inner.ready.eq(1)]

        self.submodules.fsm = fsm = FSM(reset_state="UNIT")
        fsm.act(
            "UNIT",
            If(
                both,
                If(
                    ok == Kind.DONE,
                    If(pend, *emit_pend())
                    .Elif(
                        ~dsent,
                        oouter.valid.eq(1),
                        oouter.kind.eq(Kind.DONE),
                        If(out_fire, NextValue(dsent, 1)),
                    )
                    .Else(
                        oinner.valid.eq(1),
                        oinner.kind.eq(Kind.DONE),
                        If(
                            in_fire,
                            *take_both(),
                            NextValue(dsent, 0),
                            NextValue(kept, 0),
                        ),
                    ),
                )
                .Elif(
                    ok == Kind.STOP,  # an outer fiber that was empty from the start
                    If(pend, *emit_pend()).Else(
                        oouter.valid.eq(1),
                        oouter.kind.eq(Kind.STOP),
                        oouter.data.eq(outer.data),
                        If(
                            out_fire,
                            *take_both(),
                            NextValue(pend, 1),
                            NextValue(pend_level, inner.data),
                            NextValue(kept, 0),
                        ),
                    ),
                )
                .Elif(
                    ik == Kind.STOP,  # this outer coordinate's fiber is empty: drop both
                    If(
                        inner.data == 0,
                        *take_both(),
                    )
                    .Elif(
                        kept,
                        *take_both(),
                        NextValue(pend_level, inner.data),
                        NextValue(kept, 0),
                        NextState("OSTOP"),
                    )
                    .Elif(pend, *emit_pend())
                    .Else(
                        *take_both(),
                        NextValue(pend, 1),
                        NextValue(pend_level, inner.data),
                        NextState("OSTOP"),
                    ),
                )
                .Else(  # a non-empty fiber: flush the held stop, then pass the coordinate
                    If(pend, *emit_pend()).Else(
                        oouter.valid.eq(1),
                        oouter.kind.eq(Kind.VAL),
                        oouter.data.eq(outer.data),
                        outer.ready.eq(oouter.ready),
                        If(out_fire, NextValue(kept, 1), NextState("INFIBER")),
                    ),
                ),
            ),
        )
        fsm.act(
            "INFIBER",
            If(
                inner.valid,
                If(
                    ik == Kind.STOP,
                    inner.ready.eq(1),
                    NextValue(pend, 1),
                    NextValue(pend_level, inner.data),
                    If(inner.data != 0, NextValue(kept, 0), NextState("OSTOP")).Else(
                        NextState("UNIT")
                    ),
                ).Else(
                    oinner.valid.eq(1),
                    oinner.kind.eq(ik),
                    oinner.data.eq(inner.data),
                    inner.ready.eq(oinner.ready),
                ),
            ),
        )
        fsm.act(
            "OSTOP",  # the outer stop that matches the inner stop just taken
            If(
                outer.valid,
                oouter.valid.eq(1),
                oouter.kind.eq(ok),
                oouter.data.eq(outer.data),
                outer.ready.eq(oouter.ready),
                If(out_fire, NextState("UNIT")),
            ),
        )


def model(outer: list[Token], inner: list[Token]) -> tuple[list[Token], list[Token]]:
    """Token-level reference: the same held-stop rules, one token at a time."""
    oo: list[Token] = []
    oi: list[Token] = []
    pend: int | None = None
    kept = False
    j = 0

    def flush() -> None:
        nonlocal pend
        if pend is not None:
            oi.append(Stop(pend))
            pend = None

    k = 0
    while k < len(outer):
        o = outer[k]
        k += 1
        if isinstance(o, Done):
            flush()
            oo.append(DONE)
            oi.append(DONE)
            j += 1
            kept = False
            continue
        if isinstance(o, Stop):  # bare: its inner partner is a bare stop
            flush()
            oo.append(o)
            pend = inner[j].level  # type: ignore[union-attr]
            j += 1
            kept = False
            continue
        first = inner[j]
        if isinstance(first, Stop):  # empty fiber: drop o
            j += 1
            if first.level == 0:
                continue
            if kept:
                pend = first.level
            else:
                flush()
                pend = first.level
            kept = False
            oo.append(outer[k])  # the matching outer stop
            k += 1
            continue
        flush()
        oo.append(o)
        kept = True
        while isinstance(inner[j], Val):
            oi.append(inner[j])
            j += 1
        stop = inner[j]
        j += 1
        pend = stop.level  # type: ignore[union-attr]
        if pend >= 1:
            kept = False
            oo.append(outer[k])
            k += 1
    return oo, oi
