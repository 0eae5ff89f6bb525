"""AXI4-Lite slave front end: turns AXI4-Lite transactions into simple register accesses.

LiteX's ``AXILite2CSR`` would put a CSR bank behind the bus, but CSR banks allocate their own
addresses; the shell's addresses come from ``overlay/regmap.py`` (one source for the host, the
firmware and the docs), so the decode behind this front end is generated from that map instead.
The port itself is LiteX's ``AXILiteInterface``.
"""

from __future__ import annotations

from litex.soc.interconnect.axi import AXILiteInterface
from migen import Cat, If, Module, Mux, Signal

__all__ = ["AXILiteSlave"]


class AXILiteSlave(Module):
    """One transaction at a time; a write takes AW and W together.

    Parameters
    ----------
    address_width : int
        Byte address bits of the AXI4-Lite port.

    Attributes
    ----------
    bus : AXILiteInterface
        The slave port.
    adr : Signal(address_width), out
        Byte address of the access (valid with ``we`` or ``re``).
    we : Signal(), out
        One-cycle write strobe; ``dat_w`` and ``strb`` hold the data and byte enables.
    re : Signal(), out
        One-cycle read strobe. The read data must be on ``dat_r`` in the next cycle.
    dat_r : Signal(32), in
        Read data, sampled the cycle after ``re``.
    """

    def __init__(self, address_width: int = 16) -> None:
        self.bus = bus = AXILiteInterface(data_width=32, address_width=address_width)
        self.adr = Signal(address_width)
        self.we = Signal()
        self.dat_w = Signal(32)
        self.strb = Signal(4)
        self.re = Signal()
        self.dat_r = Signal(32)

        # # #

        # No protection checks: every access is allowed, whatever its AxPROT.
        self.comb += Signal(6, name="axil_prot_unused").eq(Cat(bus.aw.prot, bus.ar.prot))
        writing = Signal()
        self.comb += [
            writing.eq(bus.aw.valid & bus.w.valid & ~bus.b.valid),
            bus.aw.ready.eq(writing),
            bus.w.ready.eq(writing),
            self.we.eq(writing),
            self.dat_w.eq(bus.w.data),
            self.strb.eq(bus.w.strb),
        ]
        self.sync += [
            If(writing, bus.b.valid.eq(1), bus.b.resp.eq(0)).Elif(bus.b.ready, bus.b.valid.eq(0))
        ]

        # Reads: AR accepted when no read is in flight and no write this cycle; data captured
        # the cycle after, and held in r.data until the master takes it.
        pending = Signal()
        reading = Signal()
        self.comb += [
            reading.eq(bus.ar.valid & ~pending & ~bus.r.valid & ~writing),
            bus.ar.ready.eq(reading),
            self.re.eq(reading),
            self.adr.eq(Mux(writing, bus.aw.addr, bus.ar.addr)),
        ]
        self.sync += [
            pending.eq(reading),
            If(pending, bus.r.valid.eq(1), bus.r.data.eq(self.dat_r), bus.r.resp.eq(0)).Elif(
                bus.r.ready, bus.r.valid.eq(0)
            ),
        ]
