"""DMA engine: runs a queue of transfers between DDR (an AXI4 master port) and its local space
(the on-chip buffers), back to back.

The control CPU pushes transfer commands (DDR address, local address, length, direction)
into a small FIFO and goes on with its work; the engine starts the next command in the cycle
after the last one finished, and counts finished commands, so the CPU waits only for the
transfer whose data it needs. Without the queue the engine idled while the CPU (picorv32, 3-6
cycles per instruction) noticed the end of one transfer and programmed the next.

Bursts are split at 16 beats (the longest AXI3 burst, so Zynq HP ports take them without
conversion) and at 4 KiB boundaries. Up to ``max_outstanding`` bursts are in flight, so the
DDR latency is hidden behind the transfer. Error responses do not stop the transfer (every
burst still completes, as AXI requires); they are reported in ``error`` / ``resp``, and the
engine then stops: it drops the commands queued behind the failed one and ignores new ones
until it is reset, so nothing runs on after a fault.

A reset must not cut a burst in half: the interconnect would still deliver the rest of a read
burst (and a reset engine would take those beats for its next transfer) and still expect the W
beats of every write address sent (and would take the next transfer's data for them, at the
old address). So the shell does not reset an engine outright: it raises ``halt``, and the
engine drains. It issues no new address (one already offered stays offered until taken, as
AXI requires), takes every R beat and drops it, sends the W beats still owed for the write
addresses it issued (the words it already read from its buffer as they are, the rest with no
byte strobes set, so nothing more is written), and takes every B. Once no burst is
outstanding it raises ``drained``, and only then does the shell reset it.

LiteX provides the AXI4 interface (``AXIInterface``) and the FIFOs (``stream.SyncFIFO``). Its
DMA cores (``WishboneDMAReader``/``Writer``, ``AXIStreamDMA``...) either sit on Wishbone or
need the CPU to feed addresses word by word; a tile transfer here is one command for a whole
buffer, so the burst logic is written out.
"""

from __future__ import annotations

from functools import reduce
from itertools import pairwise
from operator import add, or_

from litex.soc.interconnect import stream
from litex.soc.interconnect.axi import AXIInterface
from migen import Array, Cat, If, Module, Mux, Replicate, Signal

__all__ = ["DMAEngine"]

_INCR = 1
_4K = 4096


class DMAEngine(Module):
    """Transfers from a command queue, one after another, in either direction.

    Parameters
    ----------
    bus_bits : int
        AXI4 data width, 64 or 128. Addresses and lengths are multiples of its bytes.
    local_bits : int
        Byte address bits of the local space (the on-chip buffers the shell decodes).
    max_outstanding : int
        AXI bursts in flight at once.
    queue_depth : int
        Commands the queue holds (besides the one running), a power of two.
    lanes : int
        Lanes whose idle flags the engine sees (``lane_idle``), for commands that wait for
        one; 0: no such commands.

    Attributes
    ----------
    axi : AXIInterface
        The master port to DDR.
    ddr_addr, local_addr, length : Signal(32), in
        Byte address in DDR, byte offset in the local space, byte count; taken with ``go``.
    to_ddr : Signal(), in
        Direction: 0 reads DDR into the buffer, 1 writes the buffer to DDR.
    zero : Signal(), in
        With ``to_ddr = 0``: fill the local range with zeros, one word per cycle, no DDR
        access. With ``to_ddr = 1``: write the range out and leave zeros behind (each word is
        cleared in the cycle it is read, so the buffer port must be read-first).
    after_lane, lane : Signal(), Signal(max=lanes), in
        With ``after_lane``, the command waits at the head of the queue until ``lane_idle``
        of lane ``lane`` is set, then runs (the commands behind it wait with it): a buffer a
        lane computes from is loaded, or its results written out, once the lane is done,
        without the CPU in between.
    lane_idle : Signal(lanes), in
        Bit n: lane n is idle (not running, no start pending).
    waiting : Signal(), out
        Registered: no transfer runs, and the head of the queue waits for its lane.
    go : Signal(), in
        Pushes the command onto the queue. Ignored after an error; while the queue is full it
        is refused and sets ``overflow``.
    abort : Signal(), in
        Drops the queued commands; the running transfer still completes.
    halt : Signal(), in
        Drain, to be reset: issue no new burst and finish the ones in flight (see above).
    drained : Signal(), out
        Registered: ``halt`` is set and no burst is in flight or offered; it stays so while
        ``halt`` is set (1 from reset).
    busy : Signal(), out
        A transfer is running or queued.
    active : Signal(), out
        A transfer is running (for the counters).
    full : Signal(), out
        The queue holds ``queue_depth`` commands.
    completed : Signal(16), out
        Transfers finished since reset, modulo 2**16 (a failed one counts; dropped ones do
        not): transfer number ``s`` (the ``s``-th ``go``, from 1) is finished once
        ``completed - s`` (16-bit, signed) is not negative.
    error : Signal(), out
        A transfer got an error response; held until reset. Once the failed transfer has
        finished, ``completed`` is its number.
    err_to_ddr : Signal(), out
        The failed transfer's direction.
    resp : Signal(2), out
        Its first error response (2 SLVERR, 3 DECERR).
    overflow : Signal(), out
        A ``go`` found the queue full (the command was lost); held until reset.
    buf_adr, buf_dat_w, buf_we, buf_dat_r
        The local space port, in bus words, driven from registers. A read's word is on
        ``buf_dat_r`` ``read_latency`` cycles after its address is on ``buf_adr``: 1 for a
        block RAM read straight into the engine, 2 where the shell registers each buffer's
        word before its region multiplexer (overlay/shell/top.py).
    rd_beat, wr_beat, fill_beat : Signal(), out
        A data beat was read / written / a zero word filled this cycle (for the counters).
    """

    def __init__(
        self,
        bus_bits: int = 64,
        local_bits: int = 24,
        max_outstanding: int = 4,
        queue_depth: int = 16,
        read_latency: int = 1,
        lanes: int = 0,
    ) -> None:
        if bus_bits not in (64, 128):
            raise ValueError(f"bus_bits must be 64 or 128, not {bus_bits!r}")
        if queue_depth < 2 or queue_depth & (queue_depth - 1):
            raise ValueError(f"queue_depth must be a power of two >= 2, not {queue_depth!r}")
        if read_latency not in (1, 2):
            raise ValueError(f"read_latency must be 1 or 2, not {read_latency!r}")
        bus_bytes = bus_bits // 8
        shift = bus_bytes.bit_length() - 1
        max_burst = 16

        self.axi = axi = AXIInterface(data_width=bus_bits, address_width=32, id_width=1)
        self.ddr_addr = Signal(32)
        self.local_addr = Signal(32)
        self.length = Signal(32)
        self.to_ddr = Signal()
        self.zero = Signal()
        self.after_lane = Signal()
        self.lane = Signal(max=max(lanes, 2))
        self.lane_idle = Signal(max(lanes, 1))
        self.go = Signal()
        self.waiting = Signal()
        self.abort = Signal()
        self.halt = Signal()
        self.drained = Signal(reset=1)
        self.busy = Signal()
        self.active = Signal()
        self.full = Signal()
        self.completed = Signal(16)
        self.error = Signal()
        self.err_to_ddr = Signal()
        self.resp = Signal(2)
        self.overflow = Signal()
        self.buf_adr = Signal(local_bits - shift)
        self.buf_dat_w = Signal(bus_bits, reset_less=True)
        self.buf_we = Signal()
        self.buf_dat_r = Signal(bus_bits)
        self.rd_beat = Signal()
        self.wr_beat = Signal()
        self.fill_beat = Signal()

        # # #

        # -- the command queue --
        beats_bits = 32 - shift + 1
        queue = stream.SyncFIFO(
            [
                ("ddr", 32 - shift),
                ("local", local_bits - shift),
                ("beats", 32 - shift),
                ("to_ddr", 1),
                ("zero", 1),
                *([("after", 1), ("lane", len(self.lane))] if lanes else []),
            ],
            queue_depth,
            buffered=False,
        )
        self.submodules += queue
        dropping = Signal()  # an abort empties the queue
        start = Signal()
        cmd = queue.source
        # The head may start: it waits for no lane, or its lane is idle. Registered from the
        # head, and 0 in the cycle after the head changed (taken or dropped) or was empty, so
        # it always describes the command at the head; and the lane multiplexer is not in
        # front of everything `start` loads.
        head_ok = Signal()
        if lanes:
            idle = Array(self.lane_idle[n] for n in range(lanes))[cmd.lane]
            self.comb += [queue.sink.after.eq(self.after_lane), queue.sink.lane.eq(self.lane)]
            self.sync += [
                head_ok.eq(cmd.valid & ~cmd.ready & (~cmd.after | idle)),
                self.waiting.eq(cmd.valid & ~self.active & cmd.after & ~idle),
            ]
        else:
            self.comb += [
                head_ok.eq(1),
                Signal(len(self.lane) + len(self.lane_idle) + 1, name="lane_inputs_unused").eq(
                    Cat(self.after_lane, self.lane, self.lane_idle)
                ),
            ]
        # Addresses and lengths are multiples of the bus width (the firmware aligns them), and
        # local addresses lie in the local space: the bits outside are not decoded.
        outside = Cat(self.ddr_addr[:shift], self.length[:shift], self.local_addr[:shift],
                      self.local_addr[local_bits:])  # fmt: skip
        self.comb += Signal(len(outside), name="cmd_bits_unused").eq(outside)
        self.comb += [
            queue.sink.valid.eq(self.go & ~self.error),
            queue.sink.ddr.eq(self.ddr_addr[shift:]),
            queue.sink.local.eq(self.local_addr[shift:local_bits]),
            queue.sink.beats.eq(self.length[shift:]),
            queue.sink.to_ddr.eq(self.to_ddr),
            queue.sink.zero.eq(self.zero),
            self.full.eq(~queue.sink.ready),
            start.eq(cmd.valid & ~self.active & ~self.error & ~dropping & head_ok),
            cmd.ready.eq(start | ((self.error | dropping) & cmd.valid)),
            self.busy.eq(self.active | cmd.valid),
        ]
        self.sync += [
            If(self.go & ~self.error & ~queue.sink.ready, self.overflow.eq(1)),
            If(self.abort, dropping.eq(1)).Elif(~cmd.valid, dropping.eq(0)),
        ]

        # -- the running transfer --
        mode = Signal()  # latched to_ddr
        a_addr = Signal(32)  # next burst address (AR or AW)
        a_left = Signal(beats_bits)  # beats not yet requested
        d_left = Signal(beats_bits)  # beats not yet moved (R received / W sent)
        outstanding = Signal(max=max_outstanding + 1)  # bursts requested, not completed
        filling = Signal()  # latched zero
        local = Signal(local_bits - shift)  # R / fill: where the next word goes
        fetch = Signal(local_bits - shift)  # W: next buffer word to read
        fetch_left = Signal(beats_bits)
        # d_left != 0 and fetch_left != 0, kept in flip-flops beside the counts: the beat
        # strobes, and so the buffers' write enables, do not wait for a 30-bit compare.
        d_more = Signal()
        fetch_more = Signal()
        issued = Signal()  # a buffer read decided last cycle: its address is on buf_adr
        # reads between their address and their word (read_latency - 1 of them)
        landing = [Signal(name=f"landing{i}") for i in range(read_latency - 1)]
        inflight = Signal()  # one whose word is on buf_dat_r
        arrived = Signal()  # one whose word is in `word`
        fetching = [issued, *landing, inflight, arrived]  # each read in flight, in order
        # The word read goes into a register before the W data FIFO: block RAM's slow
        # clock-to-output, the routing back from the engine's buffers (spread over the die)
        # and the region multiplexer are a cycle of their own.
        word = Signal(bus_bits, reset_less=True)
        w_beat = Signal(8)
        # An address was offered last cycle and not taken: it must stay offered, halt or not.
        a_offered = Signal()

        # Burst length: min(a_left, 16, beats to the next 4 KiB boundary). It is worked out
        # in the cycle after a_addr and a_left change and kept in a register (burst, and
        # burst_len = burst - 1 for AXI), so the compares are off the paths from the address
        # handshake: a burst is issued at most every other cycle, far faster than its 16
        # data beats are moved, and a transfer's first one a cycle after it starts.
        next_burst = Signal(max=max_burst + 1)
        to_4k = Signal(13 - shift)
        self.comb += to_4k.eq((_4K - a_addr[:12])[shift:13])
        cap = Signal(max=max_burst + 1)
        self.comb += [
            # (Each value is taken only when it is below 16, so cutting it to 5 bits is exact.)
            cap.eq(Mux(to_4k < max_burst, to_4k[: len(cap)], max_burst)),
            next_burst.eq(Mux(a_left < cap, a_left[: len(next_burst)], cap)),
        ]
        burst = Signal(max=max_burst + 1)
        burst_len = Signal(8)
        burst_ok = Signal()  # burst is that of the current a_addr and a_left
        a_more = Signal()  # a_left is not 0

        lens = stream.SyncFIFO([("len", 8)], max_outstanding, buffered=False)
        # Room for the reads in flight (a word reaches it read_latency + 2 cycles after the
        # read is decided) and a few more, so that W can take a word in every cycle.
        data = stream.SyncFIFO([("data", bus_bits)], 8, buffered=False)
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
            can_issue.eq(
                self.active
                & burst_ok
                & a_more
                & (outstanding < max_outstanding)
                & (~self.halt | a_offered)
            ),
            # Read address channel.
            axi.ar.valid.eq(can_issue & ~mode),
            axi.ar.addr.eq(a_addr),
            axi.ar.len.eq(burst_len),
            axi.ar.size.eq(shift),
            axi.ar.burst.eq(_INCR),
            axi.ar.cache.eq(0b0011),
            ar_fire.eq(axi.ar.valid & axi.ar.ready),
            # Read data channel: always accepted, straight into the buffer (dropped while
            # draining).
            axi.r.ready.eq((self.active & ~mode) | self.halt),
            r_fire.eq(axi.r.valid & axi.r.ready),
            r_last.eq(r_fire & axi.r.last),
            # Write address channel; each burst's length goes to the W side.
            axi.aw.valid.eq(can_issue & mode & lens.sink.ready),
            axi.aw.addr.eq(a_addr),
            axi.aw.len.eq(burst_len),
            axi.aw.size.eq(shift),
            axi.aw.burst.eq(_INCR),
            axi.aw.cache.eq(0b0011),
            aw_fire.eq(axi.aw.valid & axi.aw.ready),
            lens.sink.valid.eq(aw_fire),
            lens.sink.len.eq(burst_len),
            # Buffer reads run ahead of W into a small FIFO (a word reaches it read_latency + 2
            # cycles after its read is decided: the port's register, the buffer's latency,
            # `word`).
            do_fetch.eq(
                self.active
                & mode
                & fetch_more
                & (data.level + reduce(add, fetching) < 8)
                & ~self.halt
            ),
            data.sink.valid.eq(arrived),
            data.sink.data.eq(word),
            # Write data channel: only for bursts whose address was sent. While draining, a
            # beat with no word fetched for it goes out with no strobes; once the last fetch
            # has landed (no fetch starts under halt), so that a beat's strobes never change
            # while it is offered.
            axi.w.valid.eq(
                lens.source.valid & (data.source.valid | (self.halt & ~reduce(or_, fetching)))
            ),
            axi.w.data.eq(data.source.data),
            axi.w.strb.eq(Replicate(data.source.valid, bus_bytes)),
            axi.w.last.eq(w_beat == lens.source.len),
            w_fire.eq(axi.w.valid & axi.w.ready),
            data.source.ready.eq(w_fire),
            lens.source.ready.eq(w_fire & axi.w.last),
            # Write response channel.
            axi.b.ready.eq((self.active & mode) | self.halt),
            b_fire.eq(axi.b.valid & axi.b.ready),
            self.fill_beat.eq(self.active & filling & ~mode & d_more),
            self.rd_beat.eq(r_fire),
            self.wr_beat.eq(w_fire),
        ]

        # One AXI ID (responses come back in order) and no user signals: the response
        # channels' ID and user fields are not looked at. The W data FIFO is filled only
        # while it has room (do_fetch counts its level), so its sink's ready is never needed.
        ignored = Cat(axi.b.id, axi.b.user, axi.r.id, axi.r.user, data.sink.ready)
        self.comb += Signal(len(ignored), name="resp_fields_unused").eq(ignored)
        bad = Signal()
        bad_resp = Signal(2)
        self.comb += [
            If(r_fire & (axi.r.resp != 0), bad.eq(1), bad_resp.eq(axi.r.resp)),
            If(b_fire & (axi.b.resp != 0), bad.eq(1), bad_resp.eq(axi.b.resp)),
        ]
        fill_only = Signal()
        self.comb += fill_only.eq(cmd.zero & ~cmd.to_ddr)
        self.sync += [
            # Buffer port, from flip-flops: R data, a zero fill, or (write-out with zero)
            # clearing the word being read, a cycle after the engine decides it. The port's
            # address, data and enables reach every block RAM of the engine's buffers, spread
            # over the die, and that routing then has a cycle to itself. A transfer completes
            # no sooner than the cycle after its last word's write.
            self.buf_adr.eq(Mux(mode, fetch, local)),
            self.buf_we.eq((r_fire & ~self.halt) | self.fill_beat | (do_fetch & filling)),
            self.buf_dat_w.eq(Mux(filling, 0, axi.r.data)),
            issued.eq(do_fetch),
            *[later.eq(earlier) for earlier, later in pairwise(fetching)],
            word.eq(self.buf_dat_r),
            a_offered.eq((axi.ar.valid & ~axi.ar.ready) | (axi.aw.valid & ~axi.aw.ready)),
            # (An address offered and not taken keeps its valid: see can_issue.)
            self.drained.eq(self.halt & (outstanding == 0) & ~axi.ar.valid & ~axi.aw.valid),
            burst.eq(next_burst),
            burst_len.eq(next_burst - 1),
            a_more.eq(a_left != 0),
            burst_ok.eq(~start & ~ar_fire & ~aw_fire),
            If(
                start,
                mode.eq(cmd.to_ddr),
                filling.eq(cmd.zero),
                a_addr.eq(Cat(Replicate(0, shift), cmd.ddr)),
                a_left.eq(Mux(fill_only, 0, cmd.beats)),
                d_left.eq(cmd.beats),
                fetch_left.eq(cmd.beats),
                d_more.eq(cmd.beats != 0),
                fetch_more.eq(cmd.beats != 0),
                local.eq(cmd.local),
                fetch.eq(cmd.local),
                outstanding.eq(0),
                w_beat.eq(0),
                self.active.eq(cmd.beats != 0),
                If(cmd.beats == 0, self.completed.eq(self.completed + 1)),
            ).Elif(
                self.active,
                If(
                    ar_fire | aw_fire,
                    a_addr.eq(a_addr + (burst << shift)),
                    a_left.eq(a_left - burst),
                ),
                outstanding.eq(outstanding + (ar_fire | aw_fire) - (r_last | b_fire)),
                If(r_fire | self.fill_beat, local.eq(local + 1)),
                If(
                    do_fetch,
                    fetch.eq(fetch + 1),
                    fetch_left.eq(fetch_left - 1),
                    fetch_more.eq(fetch_left != 1),
                ),
                If(w_fire, w_beat.eq(Mux(axi.w.last, 0, w_beat + 1))),
                If(
                    r_fire | w_fire | self.fill_beat,
                    d_left.eq(d_left - 1),
                    d_more.eq(d_left != 1),
                ),
                If(
                    bad & ~self.error,
                    self.error.eq(1),
                    self.err_to_ddr.eq(mode),
                    self.resp.eq(bad_resp),
                ),
                If(
                    (d_left == 0) & (a_left == 0) & (outstanding == 0),
                    self.active.eq(0),
                    self.completed.eq(self.completed + 1),
                ),
            ),
        ]
