"""DMA engine: moves bursts between DDR (an AXI4 master port) and an on-chip tile buffer.

Bursts are split at 16 beats (the longest AXI3 burst, so Zynq HP ports take them without
conversion) and at 4 KiB boundaries. Up to ``max_outstanding`` bursts are in flight, so the
DDR latency is hidden behind the transfer. Error responses do not stop the transfer (every
burst still completes, as AXI requires); they are reported in ``error`` / ``resp``.

LiteX provides the AXI4 interface (``AXIInterface``) and the FIFOs (``stream.SyncFIFO``). Its
DMA cores (``WishboneDMAReader``/``Writer``, ``AXIStreamDMA``...) either sit on Wishbone or
need the CPU to feed addresses word by word; a tile transfer here is one command for a whole
buffer, so the burst logic is written out.
"""

from __future__ import annotations

from litex.soc.interconnect import stream
from litex.soc.interconnect.axi import AXIInterface
from migen import Cat, If, Module, Mux, Replicate, Signal

__all__ = ["DMAEngine"]

_INCR = 1
_4K = 4096


class DMAEngine(Module):
    """One transfer at a time, in either direction.

    Parameters
    ----------
    bus_bits : int
        AXI4 data width, 64 or 128. Addresses and lengths are multiples of its bytes.
    local_bits : int
        Byte address bits of the local space (the on-chip buffers the shell decodes).

    Attributes
    ----------
    axi : AXIInterface
        The master port to DDR.
    ddr_addr, local_addr, length : Signal(32), in
        Byte address in DDR, byte offset in the tile buffer, byte count; sampled with ``go``.
    to_ddr : Signal(), in
        Direction: 0 reads DDR into the buffer, 1 writes the buffer to DDR.
    zero : Signal(), in
        With ``to_ddr = 0``: fill the local range with zeros, one word per cycle, no DDR access.
    go : Signal(), in
        Starts a transfer (ignored while ``busy``).
    busy, done, error : Signal(), out
        ``done`` and ``error`` are cleared by ``go``. A zero length finishes at once.
    resp : Signal(2), out
        The first error response of the transfer (2 SLVERR, 3 DECERR).
    buf_adr, buf_dat_w, buf_we, buf_dat_r
        The local space port, in bus words (synchronous read, one cycle).
    rd_beat, wr_beat, fill_beat : Signal(), out
        A data beat was read / written / a zero word filled this cycle (for the counters).
    """

    def __init__(self, bus_bits: int = 64, local_bits: int = 24, max_outstanding: int = 4) -> None:
        if bus_bits not in (64, 128):
            raise ValueError(f"bus_bits must be 64 or 128, not {bus_bits!r}")
        bus_bytes = bus_bits // 8
        shift = bus_bytes.bit_length() - 1
        max_burst = 16

        self.axi = axi = AXIInterface(data_width=bus_bits, address_width=32, id_width=1)
        self.ddr_addr = Signal(32)
        self.local_addr = Signal(32)
        self.length = Signal(32)
        self.to_ddr = Signal()
        self.zero = Signal()
        self.go = Signal()
        self.busy = Signal()
        self.done = Signal()
        self.error = Signal()
        self.resp = Signal(2)
        self.buf_adr = Signal(local_bits - shift)
        self.buf_dat_w = Signal(bus_bits)
        self.buf_we = Signal()
        self.buf_dat_r = Signal(bus_bits)
        self.rd_beat = Signal()
        self.wr_beat = Signal()
        self.fill_beat = Signal()

        # # #

        beats_bits = 32 - shift + 1
        mode = Signal()  # latched to_ddr
        a_addr = Signal(32)  # next burst address (AR or AW)
        a_left = Signal(beats_bits)  # beats not yet requested
        d_left = Signal(beats_bits)  # beats not yet moved (R received / W sent)
        outstanding = Signal(max=max_outstanding + 1)  # bursts requested, not completed
        filling = Signal()  # latched zero
        local = Signal(local_bits - shift)  # R / fill: where the next word goes
        fetch = Signal(local_bits - shift)  # W: next buffer word to read
        fetch_left = Signal(beats_bits)
        inflight = Signal()  # a buffer read issued last cycle
        w_beat = Signal(8)

        # Burst length: min(a_left, 16, beats to the next 4 KiB boundary).
        burst = Signal(max=max_burst + 1)
        to_4k = Signal(13 - shift)
        self.comb += to_4k.eq((_4K - a_addr[:12])[shift:13])
        cap = Signal(max=max_burst + 1)
        self.comb += [
            cap.eq(Mux(to_4k < max_burst, to_4k, max_burst)),
            burst.eq(Mux(a_left < cap, a_left, cap)),
        ]

        lens = stream.SyncFIFO([("len", 8)], max_outstanding, buffered=False)
        data = stream.SyncFIFO([("data", bus_bits)], 4, buffered=False)
        self.submodules += lens, data

        ar_fire = Signal()
        aw_fire = Signal()
        r_fire = Signal()
        w_fire = Signal()
        b_fire = Signal()
        r_last = Signal()
        can_issue = Signal()
        do_fetch = Signal()
        self.comb += [
            can_issue.eq(self.busy & (a_left != 0) & (outstanding < max_outstanding)),
            # Read address channel.
            axi.ar.valid.eq(can_issue & ~mode),
            axi.ar.addr.eq(a_addr),
            axi.ar.len.eq(burst - 1),
            axi.ar.size.eq(shift),
            axi.ar.burst.eq(_INCR),
            axi.ar.cache.eq(0b0011),
            ar_fire.eq(axi.ar.valid & axi.ar.ready),
            # Read data channel: always accepted, straight into the buffer.
            axi.r.ready.eq(self.busy & ~mode),
            r_fire.eq(axi.r.valid & axi.r.ready),
            r_last.eq(r_fire & axi.r.last),
            # Write address channel; each burst's length goes to the W side.
            axi.aw.valid.eq(can_issue & mode & lens.sink.ready),
            axi.aw.addr.eq(a_addr),
            axi.aw.len.eq(burst - 1),
            axi.aw.size.eq(shift),
            axi.aw.burst.eq(_INCR),
            axi.aw.cache.eq(0b0011),
            aw_fire.eq(axi.aw.valid & axi.aw.ready),
            lens.sink.valid.eq(aw_fire),
            lens.sink.len.eq(burst - 1),
            # Buffer reads run ahead of W into a small FIFO (the buffer has one cycle latency).
            do_fetch.eq(self.busy & mode & (fetch_left != 0) & (data.level + inflight < 4)),
            data.sink.valid.eq(inflight),
            data.sink.data.eq(self.buf_dat_r),
            # Write data channel: only for bursts whose address was sent.
            axi.w.valid.eq(data.source.valid & lens.source.valid),
            axi.w.data.eq(data.source.data),
            axi.w.strb.eq(Replicate(1, bus_bytes)),
            axi.w.last.eq(w_beat == lens.source.len),
            w_fire.eq(axi.w.valid & axi.w.ready),
            data.source.ready.eq(w_fire),
            lens.source.ready.eq(w_fire & axi.w.last),
            # Write response channel.
            axi.b.ready.eq(self.busy & mode),
            b_fire.eq(axi.b.valid & axi.b.ready),
            # Buffer port.
            self.buf_adr.eq(Mux(mode, fetch, local)),
            self.fill_beat.eq(self.busy & filling & (d_left != 0)),
            self.buf_we.eq(r_fire | self.fill_beat),
            self.buf_dat_w.eq(Mux(filling, 0, axi.r.data)),
            self.rd_beat.eq(r_fire),
            self.wr_beat.eq(w_fire),
        ]

        bad = Signal()
        bad_resp = Signal(2)
        self.comb += [
            If(r_fire & (axi.r.resp != 0), bad.eq(1), bad_resp.eq(axi.r.resp)),
            If(b_fire & (axi.b.resp != 0), bad.eq(1), bad_resp.eq(axi.b.resp)),
        ]
        beats = Signal(beats_bits)
        self.comb += beats.eq(self.length[shift:])
        self.sync += [
            inflight.eq(do_fetch),
            If(
                self.go & ~self.busy,
                mode.eq(self.to_ddr),
                filling.eq(self.zero & ~self.to_ddr),
                a_addr.eq(Cat(Replicate(0, shift), self.ddr_addr[shift:])),
                a_left.eq(Mux(self.zero & ~self.to_ddr, 0, beats)),
                d_left.eq(beats),
                fetch_left.eq(beats),
                local.eq(self.local_addr[shift:local_bits]),
                fetch.eq(self.local_addr[shift:local_bits]),
                outstanding.eq(0),
                w_beat.eq(0),
                self.busy.eq(beats != 0),
                self.done.eq(beats == 0),
                self.error.eq(0),
                self.resp.eq(0),
            ).Elif(
                self.busy,
                If(
                    ar_fire | aw_fire,
                    a_addr.eq(a_addr + (burst << shift)),
                    a_left.eq(a_left - burst),
                ),
                outstanding.eq(outstanding + (ar_fire | aw_fire) - (r_last | b_fire)),
                If(r_fire | self.fill_beat, local.eq(local + 1)),
                If(do_fetch, fetch.eq(fetch + 1), fetch_left.eq(fetch_left - 1)),
                If(w_fire, w_beat.eq(Mux(axi.w.last, 0, w_beat + 1))),
                If(r_fire | w_fire | self.fill_beat, d_left.eq(d_left - 1)),
                If(bad & ~self.error, self.error.eq(1), self.resp.eq(bad_resp)),
                If(
                    (d_left == 0) & (a_left == 0) & (outstanding == 0),
                    self.busy.eq(0),
                    self.done.eq(1),
                ),
            ),
        ]
