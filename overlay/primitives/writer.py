"""Level writers, compressed and dense: a coordinate stream in, a stored level out.

``CompressedWriter`` -- sink ``i`` (coordinates); write ports ``seg`` and ``crd``. Coordinates
are written to ``crd[0], crd[1], ...``; every stop ends one fiber and writes the running count to
``seg[f+1]``; ``seg[0] = 0`` is written once at the start of each stream (one cycle). So
``1 4 S0 S1 0 2 S1 D`` writes ``crd = [1, 4, 0, 2]``, ``seg = [0, 2, 2, 4]``. ``D`` finishes the
level and makes the writer ready for the next stream. One token per cycle.

``DenseWriter`` -- sink ``i`` (coordinates); write port ``info``. A dense level stores no
coordinates; the writer checks nothing and records the level's size, ``max(coordinate) + 1``,
to ``info[0]`` when ``D`` arrives (0 if no coordinate came). One token per cycle.
"""

from __future__ import annotations

import numpy as np
from migen import FSM, If, NextState, NextValue, Signal

from fiberflow.overlay.primitives.primitive import Primitive, WritePort
from fiberflow.overlay.primitives.stream import Done, Kind, Stop, Token, Val


class CompressedWriter(Primitive):
    def __init__(self) -> None:
        super().__init__()
        i = self.sink("i")
        seg, crd = WritePort("seg"), WritePort("crd")
        self.wr_ports += [seg, crd]
        # # #
        k, f = Signal(32), Signal(32)
        self.submodules.fsm = fsm = FSM(reset_state="START")
        fsm.act(
            "START",
            seg.adr.eq(0),
            seg.dat.eq(0),
            seg.we.eq(1),
            NextValue(k, 0),
            NextValue(f, 0),
            NextState("RUN"),
        )
        fsm.act(
            "RUN",
            i.ready.eq(1),
            crd.adr.eq(k),
            crd.dat.eq(i.data),
            seg.adr.eq(f + 1),
            seg.dat.eq(k),
            If(
                i.valid,
                If(i.kind == Kind.VAL, crd.we.eq(1), NextValue(k, k + 1))
                .Elif(i.kind == Kind.STOP, seg.we.eq(1), NextValue(f, f + 1))
                .Elif(i.kind == Kind.DONE, NextState("START")),
            ),
        )


class DenseWriter(Primitive):
    def __init__(self) -> None:
        super().__init__()
        i = self.sink("i")
        info = WritePort("info")
        self.wr_ports.append(info)
        # # #
        size = Signal(32)
        is_val = i.valid & (i.kind == Kind.VAL)
        self.comb += [
            i.ready.eq(1),
            info.adr.eq(0),
            info.dat.eq(size),
            info.we.eq(i.valid & (i.kind == Kind.DONE)),
        ]
        self.sync += If(is_val & (i.data >= size), size.eq(i.data + 1)).Elif(info.we, size.eq(0))


def model_compressed(tokens: list[Token]) -> tuple[np.ndarray, np.ndarray]:
    """(seg, crd) arrays of the last stream in ``tokens``."""
    seg, crd = [0], []
    for t in tokens:
        if isinstance(t, Val):
            crd.append(t.value)
        elif isinstance(t, Stop):
            seg.append(len(crd))
        elif isinstance(t, Done):
            last = (np.array(seg, np.uint32), np.array(crd, np.uint32))
            seg, crd = [0], []
    return last


def model_dense(tokens: list[Token]) -> int:
    size = 0
    for t in tokens:
        if isinstance(t, Val):
            size = max(size, t.value + 1)
        elif isinstance(t, Done):
            last, size = size, 0
    return last
