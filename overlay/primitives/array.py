"""Value-array reader and writer.

``ArrayReader`` -- sink ``i`` (references); source ``o`` (values); read port ``vals`` (the
name can be chosen, for blocks that hold several readers). ``VAL r``
becomes ``VAL vals[r]``, ``EMPTY`` becomes ``VAL 0`` (the missing side of a union reads as zero),
stops and done pass. Latency 1 cycle, one token per cycle: the address is presented in the cycle
a reference is taken, and held while the output is stalled, so the block RAM's output register
holds the value.

``ArrayWriter`` -- sink ``i`` (values); write port ``vals``. Writes the values of a stream to
``vals[0], vals[1], ...`` in order; stops and ``EMPTY`` are skipped; ``D`` restarts at address 0.
Always ready: one token per cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from migen import If, Mux, Signal

from fiberflow.overlay.primitives.primitive import Primitive, ReadPort, WritePort
from fiberflow.overlay.primitives.stream import Done, Empty, Kind, Token, Val


class ArrayReader(Primitive):
    def __init__(self, port: str = "vals") -> None:
        super().__init__()
        i = self.sink("i")
        o = self.source("o")
        vals = ReadPort(port)
        self.rd_ports.append(vals)
        # # #
        advance = Signal()
        held = Signal(32)
        is_val = Signal()
        data = Signal(32)
        self.comb += [
            advance.eq(~o.valid | o.ready),
            i.ready.eq(advance),
            vals.adr.eq(Mux(advance, i.data, held)),
            o.data.eq(Mux(is_val, vals.dat, data)),
        ]
        self.sync += If(
            advance,
            o.valid.eq(i.valid),
            o.kind.eq(Mux(i.kind == Kind.EMPTY, Kind.VAL, i.kind)),
            is_val.eq(i.kind == Kind.VAL),
            data.eq(Mux(i.kind == Kind.EMPTY, 0, i.data)),
            held.eq(i.data),
        )


class ArrayWriter(Primitive):
    def __init__(self, port: str = "vals") -> None:
        super().__init__()
        i = self.sink("i")
        vals = WritePort(port)
        self.wr_ports.append(vals)
        # # #
        adr = Signal(32)
        take = i.valid & (i.kind == Kind.VAL)
        self.comb += [
            i.ready.eq(1),
            vals.adr.eq(adr),
            vals.dat.eq(i.data),
            vals.we.eq(take),
        ]
        self.sync += If(take, adr.eq(adr + 1)).Elif(i.valid & (i.kind == Kind.DONE), adr.eq(0))


def model_read(refs: list[Token], vals: Sequence[int]) -> list[Token]:
    out: list[Token] = []
    for t in refs:
        if isinstance(t, Val):
            out.append(Val(int(vals[t.value])))
        elif isinstance(t, Empty):
            out.append(Val(0))
        else:
            out.append(t)
    return out


def model_write(tokens: list[Token], size: int) -> np.ndarray:
    mem = np.zeros(size, dtype=np.uint32)
    k = 0
    for t in tokens:
        if isinstance(t, Val):
            mem[k] = t.value
            k += 1
        elif isinstance(t, Done):
            k = 0
    return mem
