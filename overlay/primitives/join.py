"""Two-way intersecter and unioner (SAM joiners).

Ports: sinks ``crd0``, ``ref0``, ``crd1``, ``ref1`` (each side's coordinate stream and the
reference stream that travels with it, same shape); sources ``crd``, ``oref0``, ``oref1``.

Both sides must have the same stop structure (they are fibers at the same level of two
tensors). Within a fiber, coordinates ascend.

* Intersecter: emits ``(c, r0, r1)`` for coordinates present on both sides and drops the rest.
* Unioner: emits every coordinate of either side; the missing side's reference is ``EMPTY``.
* A stop or done on both sides is emitted once, on all three outputs.

Timing: combinational join, no latency; one token per cycle for every emitted token. The
intersecter spends one cycle per dropped coordinate (it consumes one side without output).
"""

from __future__ import annotations

from migen import If, Signal

from fiberflow.overlay.primitives.primitive import Primitive, eager_fork
from fiberflow.overlay.primitives.stream import EMPTY, Kind, Token, Val


class _Join(Primitive):
    def __init__(self, union: bool) -> None:
        super().__init__()
        crd0, ref0, crd1, ref1 = (self.sink(n) for n in ("crd0", "ref0", "crd1", "ref1"))
        crd, oref0, oref1 = (self.source(n) for n in ("crd", "oref0", "oref1"))
        # # #
        ov, ofire = Signal(), Signal()
        take0, take1 = Signal(), Signal()  # consume side 0 / side 1 this cycle
        eager_fork(self, ov, ofire, [crd, oref0, oref1])
        self.comb += [
            crd0.ready.eq(take0),
            ref0.ready.eq(take0),
            crd1.ready.eq(take1),
            ref1.ready.eq(take1),
        ]
        h0, h1 = crd0.valid & ref0.valid, crd1.valid & ref1.valid
        v0, v1 = crd0.kind == Kind.VAL, crd1.kind == Kind.VAL
        c0, c1 = crd0.data, crd1.data
        only0 = v0 & (~v1 | (c0 < c1))  # side 0 holds the smaller coordinate (or 1 has a stop)
        only1 = v1 & (~v0 | (c1 < c0))

        def out(kind: object, c: object, r0: object, r1: object) -> list:
            return [
                ov.eq(1),
                crd.kind.eq(kind),
                crd.data.eq(c),
                oref0.kind.eq(r0[0]),
                oref0.data.eq(r0[1]),
                oref1.kind.eq(r1[0]),
                oref1.data.eq(r1[1]),
            ]

        empty = (Kind.EMPTY, 0)
        side0, side1 = (ref0.kind, ref0.data), (ref1.kind, ref1.data)
        if union:
            self.comb += If(
                h0 & h1,
                If(
                    only0,
                    *out(Kind.VAL, c0, side0, empty),
                    take0.eq(ofire),
                )
                .Elif(
                    only1,
                    *out(Kind.VAL, c1, empty, side1),
                    take1.eq(ofire),
                )
                .Else(
                    *out(crd0.kind, c0, side0, side1),
                    take0.eq(ofire),
                    take1.eq(ofire),
                ),
            )
        else:
            self.comb += If(
                h0 & h1,
                If(only0, take0.eq(1))
                .Elif(only1, take1.eq(1))
                .Else(
                    *out(crd0.kind, c0, side0, side1),
                    take0.eq(ofire),
                    take1.eq(ofire),
                ),
            )


class Intersecter(_Join):
    def __init__(self) -> None:
        super().__init__(union=False)


class Unioner(_Join):
    def __init__(self) -> None:
        super().__init__(union=True)


# ---- reference model -----------------------------------------------------------------------


def model(
    crd0: list[Token], ref0: list[Token], crd1: list[Token], ref1: list[Token], union: bool
) -> tuple[list[Token], list[Token], list[Token]]:
    oc: list[Token] = []
    o0: list[Token] = []
    o1: list[Token] = []
    i = j = 0
    while i < len(crd0) and j < len(crd1):
        a, b = crd0[i], crd1[j]
        if isinstance(a, Val) and (not isinstance(b, Val) or a.value < b.value):
            if union:
                oc.append(a)
                o0.append(ref0[i])
                o1.append(EMPTY)
            i += 1
        elif isinstance(b, Val) and (not isinstance(a, Val) or b.value < a.value):
            if union:
                oc.append(b)
                o0.append(EMPTY)
                o1.append(ref1[j])
            j += 1
        else:  # equal coordinates, or stop/done on both sides
            oc.append(a)
            o0.append(ref0[i] if isinstance(a, Val) else a)
            o1.append(ref1[j] if isinstance(a, Val) else a)
            i += 1
            j += 1
    return oc, o0, o1
