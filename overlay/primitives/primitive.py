"""What every primitive offers: named stream ports, config inputs, memory ports, and Verilog.

A primitive is a Migen ``Module`` that lists its interface in five attributes, so one harness
generator (:mod:`fiberflow.overlay.sim.simharness`), ``fiberflow lint`` and ``fiberflow bench
primitives`` can drive any of them without per-block code:

* ``sinks`` / ``sources``: token streams in / out (``stream.Endpoint(TOKEN_LAYOUT)``), named;
* ``cfg``: static configuration inputs (``Signal``), held constant while a stream runs;
* ``rd_ports``: synchronous-read memory ports the block drives (``adr`` out, ``dat`` in, data
  one cycle after the address, like a block RAM);
* ``wr_ports``: memory write ports (``adr``, ``dat``, ``we`` out).

Verilog port names are ``<stream>_valid``, ``<stream>_ready``, ``<stream>_payload_data``,
``<stream>_payload_kind``, ``<cfg>``, ``<mem>_adr``, ``<mem>_dat``, ``<mem>_we``.
"""

from __future__ import annotations

from functools import reduce
from operator import and_

from litex.soc.interconnect import stream
from migen import If, Module, Signal
from migen.fhdl import verilog

from fiberflow.overlay.primitives.stream import TOKEN_LAYOUT

__all__ = ["Primitive", "ReadPort", "WritePort", "eager_fork", "token_endpoint"]


def token_endpoint(name: str) -> stream.Endpoint:
    """A token stream endpoint whose Verilog signals start with ``name``."""
    return stream.Endpoint(TOKEN_LAYOUT, name=name)


class ReadPort:
    """A synchronous-read memory port: ``dat`` holds ``mem[adr]`` of the previous cycle."""

    def __init__(self, name: str, adr_width: int = 32, data_width: int = 32) -> None:
        self.name = name
        self.adr = Signal(adr_width, name=f"{name}_adr")
        self.dat = Signal(data_width, name=f"{name}_dat")

    def signals(self) -> list[Signal]:
        return [self.adr, self.dat]


class WritePort:
    """A memory write port: ``mem[adr] <= dat`` at the clock edge when ``we``."""

    def __init__(self, name: str, adr_width: int = 32, data_width: int = 32) -> None:
        self.name = name
        self.adr = Signal(adr_width, name=f"{name}_adr")
        self.dat = Signal(data_width, name=f"{name}_dat")
        self.we = Signal(name=f"{name}_we")

    def signals(self) -> list[Signal]:
        return [self.adr, self.dat, self.we]


class Primitive(Module):
    """Base class: fills the interface lists; subclasses append to them in ``__init__``."""

    def __init__(self) -> None:
        self.sinks: list[stream.Endpoint] = []
        self.sources: list[stream.Endpoint] = []
        self.cfg: list[Signal] = []
        self.rd_ports: list[ReadPort] = []
        self.wr_ports: list[WritePort] = []

    def sink(self, name: str) -> stream.Endpoint:
        ep = token_endpoint(name)
        self.sinks.append(ep)
        return ep

    def source(self, name: str) -> stream.Endpoint:
        ep = token_endpoint(name)
        self.sources.append(ep)
        return ep

    def config(self, name: str, width: int) -> Signal:
        s = Signal(width, name=name)
        self.cfg.append(s)
        return s

    def ios(self) -> set[Signal]:
        sigs: set[Signal] = set(self.cfg)
        for ep in self.sinks + self.sources:
            sigs |= {ep.valid, ep.ready, ep.data, ep.kind}
        for p in self.rd_ports + self.wr_ports:
            sigs |= set(p.signals())
        return sigs

    def to_verilog(self, name: str = "top") -> str:
        """The block as one Verilog module ``name`` (clock ``sys_clk``, reset ``sys_rst``)."""
        # first/last are part of every LiteX endpoint but carry nothing here: tie them low.
        for ep in self.sinks:
            ep.first.reset = 0
            ep.last.reset = 0
        return str(verilog.convert(self, ios=self.ios(), name=name))


def eager_fork(m: Module, valid: Signal, ready: Signal, sources: list[stream.Endpoint]) -> None:
    """Offer one token (already driven on every source's payload) to all ``sources``.

    ``valid`` says the token is there; ``ready`` is driven high in the cycle the last source
    takes it. Sources that took the token early stop asserting valid, so each output sees every
    token exactly once and a slow consumer never stalls a fast one within the same token.
    """
    taken = [Signal() for _ in sources]
    all_ready = reduce(and_, [ep.ready | t for ep, t in zip(sources, taken, strict=True)])
    m.comb += ready.eq(valid & all_ready)
    for ep, t in zip(sources, taken, strict=True):
        m.comb += ep.valid.eq(valid & ~t)
        m.sync += If(valid & all_ready, t.eq(0)).Elif(ep.valid & ep.ready, t.eq(1))
