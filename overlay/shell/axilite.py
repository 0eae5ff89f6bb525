"""AXI4-Lite slave front end: turns AXI4-Lite transactions into simple register accesses.

LiteX's ``AXILite2CSR`` would put a CSR bank behind the bus, but CSR banks allocate their own
addresses; the shell's addresses come from ``overlay/regmap.py`` (one source for the host, the
firmware and the docs), so the decode behind this front end is generated from that map instead.
The port itself is LiteX's ``AXILiteInterface``.
"""

from __future__ import annotations

from litex.soc.interconnect.axi import AXILiteInterface
from migen import Cat, If, Module, Signal

__all__ = ["AXILiteSlave"]


class AXILiteSlave(Module):
    """One transaction at a time; a write takes AW and W together.

    The accesses come out two cycles after the handshake, from flip-flops: ``adr`` is set in
    the cycle after the handshake and held, so the decode behind this front end is loaded
    from a register in that cycle and ready with ``we`` / ``re`` in the next; the handshake
    logic is not part of the decode paths. A write is answered on B once it has taken
    effect, a read on R two cycles after ``re``.

    Parameters
    ----------
    address_width : int
        Byte address bits of the AXI4-Lite port.

    Attributes
    ----------
    bus : AXILiteInterface
        The slave port.
    adr : Signal(address_width), out
        Byte address of the access: valid from the cycle before ``we`` or ``re`` until the
        next handshake (decode loaded from it every cycle is ready with the strobe).
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
        # One access in the front end at a time (they share adr): a write is accepted when
        # none is being decoded, done or answered and no read is being decoded; a read when
        # none is in flight and no write is accepted in the same cycle or being decoded.
        writing = Signal()
        reading = Signal()
        w_decode = Signal()  # the cycle after a write's handshake
        r_decode = Signal()
        pending = Signal()  # the cycle after re: dat_r is there
        self.comb += [
            writing.eq(
                bus.aw.valid & bus.w.valid & ~w_decode & ~self.we & ~bus.b.valid & ~r_decode
            ),
            bus.aw.ready.eq(writing),
            bus.w.ready.eq(writing),
            reading.eq(
                bus.ar.valid & ~r_decode & ~self.re & ~pending & ~bus.r.valid & ~writing
                & ~w_decode
            ),
            bus.ar.ready.eq(reading),
        ]  # fmt: skip
        self.sync += [
            w_decode.eq(writing),
            r_decode.eq(reading),
            self.we.eq(w_decode),
            self.re.eq(r_decode),
            If(
                writing,
                self.adr.eq(bus.aw.addr),
                self.dat_w.eq(bus.w.data),
                self.strb.eq(bus.w.strb),
            ).Elif(reading, self.adr.eq(bus.ar.addr)),
            If(self.we, bus.b.valid.eq(1), bus.b.resp.eq(0)).Elif(bus.b.ready, bus.b.valid.eq(0)),
            pending.eq(self.re),
            If(pending, bus.r.valid.eq(1), bus.r.data.eq(self.dat_r), bus.r.resp.eq(0)).Elif(
                bus.r.ready, bus.r.valid.eq(0)
            ),
        ]
