"""Sparse vector accumulator: merges the fibers of each group into one sorted fiber
(Gustavson-style row merging: the partial rows ``A(i,k) * B(k,:)`` summed into row ``C(i,:)``).

Ports: sinks ``crd`` (coordinates) and ``val`` (values), same shape; sources ``ocrd``, ``oval``;
config ``op`` (one of ``ADD``, ``MIN``, ``MAX``, ``FADD``, ``FMIN``, ``FMAX``).
Parameter ``size``: coordinates must be below it (the accumulator's capacity, e.g. the tile
width); the model rejects larger ones, the hardware would use the low bits.

Tokens: ``S0`` separates the fibers of a group and is absorbed; a stop ``Sn`` with ``n >= 1``
ends the group: the merged fiber comes out (ascending coordinates, values combined with ``op``
in arrival order; a coordinate seen once keeps its value unchanged), then ``S(n-1)``. ``D`` first
drains anything left, then passes on. Example (ADD): ``crd = 1 5 S0 5 S1 D``,
``val = 10 20 S0 2 S1 D`` -> ``ocrd = 1 5 S0 D``, ``oval = 10 22 S0 D``.

Hardware: a ``size``-entry LUT-RAM of values and an occupancy bitmap. Accumulating takes one
input value per cycle (read-modify-write in one cycle through the RAM's asynchronous read port);
draining finds the lowest occupied coordinate with a priority encoder and emits one coordinate
per cycle, so a group costs (inputs + outputs + 1) cycles, independent of ``size``.
"""

from __future__ import annotations

import numpy as np
from migen import FSM, If, Memory, Mux, NextState, Signal

from fiberflow.overlay.primitives.alu import FOLD_OPS, Op, alu_comb, op_words
from fiberflow.overlay.primitives.primitive import Primitive, eager_fork
from fiberflow.overlay.primitives.stream import DONE, Done, Empty, Kind, Stop, Token, Val


class SparseAccumulator(Primitive):
    def __init__(self, size: int = 64) -> None:
        super().__init__()
        crd, val = self.sink("crd"), self.sink("val")
        ocrd, oval = self.source("ocrd"), self.source("oval")
        op = self.config("op", 4)
        self.size = size
        # # #
        aw = max(1, (size - 1).bit_length())
        mem = Memory(32, size)
        port = mem.get_port(write_capable=True, async_read=True)
        self.specials += [mem, port]
        occ = Signal(size)
        both = crd.valid & val.valid
        take = Signal()
        self.comb += [crd.ready.eq(take), val.ready.eq(take)]
        c = crd.data[:aw]
        seen = Signal()
        v = Signal(32)
        self.comb += [seen.eq((occ >> c)[0]), v.eq(Mux(val.kind == Kind.EMPTY, 0, val.data))]
        if_kind_val = (crd.kind == Kind.VAL) | (crd.kind == Kind.EMPTY)
        summed = alu_comb(self, op, port.dat_r, v, FOLD_OPS)

        # Lowest occupied coordinate (priority encoder; later statements win).
        low = Signal(aw)
        for k in reversed(range(size)):
            self.comb += If(occ[k], low.eq(k))

        ov, ofire = Signal(), Signal()
        eager_fork(self, ov, ofire, [ocrd, oval])
        okind, odata_c, odata_v = Signal(2), Signal(32), Signal(32)
        self.comb += [
            ocrd.kind.eq(okind),
            oval.kind.eq(okind),
            ocrd.data.eq(odata_c),
            oval.data.eq(odata_v),
        ]
        self.submodules.fsm = fsm = FSM(reset_state="ACC")
        fsm.act(
            "ACC",
            port.adr.eq(c),
            port.dat_w.eq(summed),
            If(
                both,
                If(
                    if_kind_val,
                    take.eq(1),
                    port.we.eq(1),
                    If(~seen, port.dat_w.eq(v)),
                )
                .Elif(
                    (crd.kind == Kind.STOP) & (crd.data == 0),
                    take.eq(1),
                )
                .Else(NextState("DRAIN")),
            ),
        )
        fsm.act(
            "DRAIN",
            port.adr.eq(low),
            ov.eq(1),
            If(
                occ != 0,
                okind.eq(Kind.VAL),
                odata_c.eq(low),
                odata_v.eq(port.dat_r),
            ).Else(
                okind.eq(crd.kind),
                odata_c.eq(crd.data - (crd.kind == Kind.STOP)),
                odata_v.eq(crd.data - (crd.kind == Kind.STOP)),
                take.eq(ofire),
                If(ofire, NextState("ACC")),
            ),
        )
        one = Signal(size)
        self.comb += one.eq(1)
        self.sync += [
            If(fsm.ongoing("ACC") & take & if_kind_val, occ.eq(occ | (one << c))),
            If(fsm.ongoing("DRAIN") & ofire & (occ != 0), occ.eq(occ & ~(one << low))),
        ]


def model(crd: list[Token], val: list[Token], op: Op, size: int = 64) -> tuple[list, list]:
    oc: list[Token] = []
    ov: list[Token] = []
    acc: dict[int, int] = {}

    def drain() -> None:
        for k in sorted(acc):
            oc.append(Val(k))
            ov.append(Val(acc[k]))
        acc.clear()

    for c, v in zip(crd, val, strict=True):
        if isinstance(c, (Val, Empty)):
            k = c.value if isinstance(c, Val) else 0
            x = v.value if isinstance(v, Val) else 0
            if k >= size:
                raise ValueError(f"coordinate {k} is outside the accumulator (size {size})")
            acc[k] = int(op_words(op, np.array([acc[k]]), np.array([x]))[0]) if k in acc else x
        elif isinstance(c, Stop) and c.level >= 1:
            drain()
            oc.append(Stop(c.level - 1))
            ov.append(Stop(c.level - 1))
        elif isinstance(c, Done):
            drain()
            oc.append(DONE)
            ov.append(DONE)
    return oc, ov
