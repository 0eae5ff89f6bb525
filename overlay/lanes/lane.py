"""The SpMV / SpMM lane: one CSR tile from the tile buffer, accumulated into the y / C buffer.

A lane runs the kernel set {SpMV, SpMM} on one tile at a time, selected at run time by its
``mode`` configuration word (one bitstream, many kernels: docs/architecture.md). For every
local row ``r`` with a non-empty segment ``seg[r] .. seg[r+1]-1`` and every column ``c < k``
(``k = 1`` for SpMV) it computes, in exactly the order of ``docs/jobs.md`` / ``docs/emulator.md``::

    acc = y[r, c]                                  # the row's current value in the y buffer
    for q in seg[r] .. seg[r+1]-1:                 # increasing column order
        acc = add(acc, mul(val[q], x[crd[q], c]))  # each rounded as the ALU rounds; no FMA
    y[r, c] = acc

Rows with an empty segment are not touched. Arithmetic is the overlay ALU's, pipelined
(:mod:`fiberflow.overlay.lanes.pipe_arith`, bit-identical to
:func:`fiberflow.overlay.lanes.fp32.fp_mul` / :func:`~fiberflow.overlay.lanes.fp32.fp_add`:
subnormals flushed, canonical NaN; int32 wraps), so the result is bit-exact with the emulator.

Structure (``docs/overlay.md``, section "Lane")::

    tile port --arbiter--> seg reader --\\
                      \\--> crd reader ---> row sequencer -> A item -> B index -> C address
                       \\-> val reader --/                 -> D read -> E fields -> multiplier
      -> interleaved accumulator (queues, pick, adder) -> write queue -> y port

* Three sequential element readers (``_SeqReader``) share the lane's one tile-buffer read port
  (one port, so the tile buffer stays a two-port block RAM: DMA on one side, lane on the other).
  Each keeps a few bus words in a LiteX ``stream.SyncFIFO`` and hands out 16- or 32-bit fields;
  the segment reader hands out row lengths instead (``seg[r+1] - seg[r]`` and flags, computed
  as its words arrive), so starting a row needs no subtract or compare in the sequencer.
  The SAM compressed scanner (``overlay/primitives/scanner.py``) reads seg and crd through two
  private 32-bit ports with 2 set-up cycles per fiber; here the arrays are walked once, front to
  back, so a streaming reader over wide words needs a third of the port bandwidth and no per-row
  set-up reads. That is why the scanner is not used here.
* The row sequencer is the SAM graph of SpMV/SpMM (dense row scan, compressed column scan,
  B-row repeat over ``c``) flattened into one counter FSM, because every stream in it moves in
  lock step: a token-level graph of scanner, repeater, ALU and reducer would need a fork/join
  per edge for the same schedule. It gives each chain (row ``r``, column ``c``: one running
  sum) an accumulator context: a row's ``k`` chains take consecutive contexts. Its decisions
  are ANDs of flip-flops (the room of the next context is registered with it; whether the next
  row can start in the cycle of this row's last item is registered from the segment reader),
  which keeps the sequencer within 7 LUT levels.
* The front of the back end is a fixed-latency pipeline without backpressure (every memory it
  touches is the lane's own, with block-RAM timing), with one add or multiply per stage so
  that no register-to-register path is deep: A registers the item, B forms ``crd * k`` and
  ``x_base + c``, C their sum as the x address (and reads y for a chain's first item), D
  receives the words, E selects the fields; then the pipelined multiplier.
* The adder is pipelined too, so a running sum could use it only once per adder latency + 1
  cycles. The :class:`~fiberflow.overlay.lanes.interleave.InterleavedAccumulator` queues each
  chain's products in its context's queue and, in every cycle, gives the adder the next
  product of a context whose previous sum is back (rotating priority), each chain's adds in
  order: the sequential sum above, bit for bit. The sequencer reserves queue room as it
  issues, and waits when a chain's queue is full. Finished sums go into a 16-entry write
  queue (LiteX ``stream.SyncFIFO``) that writes them to y in cycles where stage C reads no y.
* Throughput: one item per cycle while the contexts' queues have room, for SpMV and SpMM
  alike. The sums of one chain are sequential, so a chain of ``n`` products needs ``n`` turns
  of ``latency + 1`` cycles (:attr:`Lane.turn`, 5 with the fp32 adder) after its first
  product: a tile's last rows leave a tail of about that many cycles, and a lone long row runs
  at one product per turn; a row longer than its context's queue (``QUEUE_DEPTH``) holds up
  the rows behind it. A column tile bounds a row's length in a tile to the tile's columns.
  Limits: the one y port does a read and a write per row and column, so rows of one nonzero
  run at 1/2 per cycle; on a 64-bit bus, 32-bit coordinates need 8 tile bytes per nonzero, all
  of the port.

Configuration words (:data:`CONFIG_WORDS`, byte offsets into the lane's buffers); they must
stay constant while the lane is busy:

=====  ==========  ===============================================================
word   name        meaning
=====  ==========  ===============================================================
0      seg_base    byte offset of the tile's segment array (u32) in the tile buffer
1      crd_base    byte offset of the coordinate array (u16 or u32)
2      val_base    byte offset of the value array (4-byte words)
3      rows        the tile's row extent (segment array has ``rows + 1`` entries)
4      mode        bits 0-1 kernel (1 SpMV, 2 SpMM), bits 8-9 dtype (1 fp32, 2 int32),
                   bits 16-18 coordinate bytes (2 or 4): the job and image codes
5      k           columns of B and C for SpMM (1 .. max_k); ignored for SpMV (k = 1)
6      x_base      byte offset of x[0] (or B's row 0) of the tile's slice in the x buffer,
                   modulo the buffer's size (x addresses wrap: a window of the slice
                   loaded at the buffer's start puts x[0] "before" it)
7      y_base      byte offset of y[0] (or C's row 0) of the tile's rows in the y buffer
=====  ==========  ===============================================================

Offsets must be aligned to their element size (4 bytes; 2 for u16 coordinates) and lie
inside their buffer, or the lane ends at once with ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from itertools import pairwise
from operator import and_, or_

import numpy as np
from litex.soc.interconnect import stream
from migen import Array, C, Cat, If, Module, Mux, Replicate, ResetInserter, Signal
from migen.fhdl import verilog

from fiberflow.host.formats import dtypes
from fiberflow.host.images import job
from fiberflow.overlay.lanes.interleave import InterleavedAccumulator
from fiberflow.overlay.lanes.pipe_arith import PipeFpAdd, PipeFpMul, PipeIntMul

__all__ = [
    "CONFIG_WORDS",
    "DTYPE_CODES",
    "KERNEL_CODES",
    "Lane",
    "mode_word",
]

CONFIG_WORDS = ("seg_base", "crd_base", "val_base", "rows", "mode", "k", "x_base", "y_base")
KERNEL_CODES = dict(job.KERNELS)  # the job descriptor's kernel codes
DTYPE_CODES = {  # the image's dtype codes
    "fp32": dtypes.CODES[np.dtype(np.float32)],
    "int32": dtypes.CODES[np.dtype(np.int32)],
}


def mode_word(kernel: str, dtype: str, coord_bytes: int) -> int:
    """The ``mode`` configuration word."""
    return KERNEL_CODES[kernel] | DTYPE_CODES[dtype] << 8 | coord_bytes << 16


def _log2(n: int) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


QUEUE_DEPTH = 64  # products queued per accumulator context (docs/overlay.md, "Throughput")


class _IntAdd(Module):
    """Wrapping 32-bit add, one register: a single carry chain fits a stage."""

    latency = 1

    def __init__(self) -> None:
        self.a, self.b, self.r = Signal(32), Signal(32), Signal(32)
        self.sync += self.r.eq(self.a + self.b)


class _Selected(Module):
    """One of several pipelined two-operand units, chosen by ``is_int`` (held constant while
    in use): all are built, the shorter ones' results delayed to the longest latency, so the
    choice never changes the timing."""

    def __init__(self, units: Sequence[tuple[str, type]], is_int: Signal) -> None:
        self.a, self.b, self.r = Signal(32), Signal(32), Signal(32)
        built = {}
        for name, cls in units:
            u = cls()
            setattr(self.submodules, name, u)
            self.comb += [u.a.eq(self.a), u.b.eq(self.b)]
            built[name] = u
        self.latency = max(u.latency for u in built.values())
        outs = {}
        for name, u in built.items():
            r = u.r
            for i in range(self.latency - u.latency):
                d = Signal(32, name=f"{name}_pad{i}")
                self.sync += d.eq(r)
                r = d
            outs[name] = r
        if len(outs) == 2:
            self.comb += self.r.eq(Mux(is_int, outs["int32"], outs["fp32"]))
        else:
            (only,) = outs.values()
            self.comb += self.r.eq(only)


class _SeqReader(Module):
    """Consecutive 16- or 32-bit elements from a wide memory, one per cycle.

    ``restart`` (with ``base``, a byte address, and ``half``: 16-bit elements) empties the
    buffer and starts reading at ``base``; while ``enable`` the reader requests words
    (``req``/``adr``) as long as its FIFO has room for them; ``gnt`` says the lane took the
    request, and the word arrives on ``dat`` ``latency`` cycles later. The lane's are three:
    the granted address goes into a register before it is routed to the block RAM, and the
    buffer's output into one before any logic reads it (see :class:`Lane`). Requests are
    counted against the FIFO's room with every cycle in flight. ``valid``/``data``/``pop``
    hand out elements; popping the last element of a word frees it.

    With ``deltas`` (32-bit elements only), the reader hands out, instead of ``data``, each
    element minus the one before it: ``delta`` (32 bits), ``d_zero`` (equal), ``d_one`` (one
    more) and ``d_neg`` (smaller, unsigned). They are computed as a word arrives and kept in the
    FIFO instead of the word, so a consumer decides on the difference of consecutive elements
    from flip-flops, without a subtract or compare in its own cycle. The first element after
    ``restart`` has no predecessor: its fields are meaningless.
    """

    def __init__(self, bus_bits: int, adr_bits: int, latency: int, deltas: bool = False) -> None:
        nb = bus_bits // 8
        nh = nb // 2  # 16-bit fields per word
        hb = _log2(nh)
        self.restart, self.enable, self.half = Signal(), Signal(), Signal()
        self.base = Signal(hb + adr_bits)  # in 16-bit units
        self.req, self.gnt = Signal(), Signal()
        self.adr = Signal(adr_bits)
        self.dat = Signal(bus_bits)
        self.valid, self.pop = Signal(), Signal()
        self.data = Signal(32)
        self.delta = Signal(32)
        self.d_zero, self.d_one, self.d_neg = Signal(), Signal(), Signal()

        # # #

        # Buffered: the head word and its valid flag come from flip-flops, not from a LUT RAM
        # read and a level compare, because both feed the sequencer's issue decision.
        nf = nb // 4  # 32-bit fields per word
        if deltas:
            layout = [("delta", 32 * nf), ("d_zero", nf), ("d_one", nf), ("d_neg", nf)]
        else:
            layout = [("data", bus_bits)]
        # Room for the words in flight and two more, so a reader alone keeps up with a word per
        # cycle (with one fewer, SpMV at 8 per row fell from 0.97 to 0.91 per cycle).
        depth = latency + 2
        fifo = ResetInserter()(stream.SyncFIFO(layout, depth, buffered=True))
        self.submodules.fifo = fifo
        # granted 1, 2, ... latency cycles ago; the last one's word is on `dat` now
        inflight = [Signal(name=f"inflight{i}") for i in range(latency)]
        arrived = inflight[-1]
        hidx = Signal(hb)  # 16-bit field of the head word where the next element starts
        src = fifo.source
        step = Mux(self.half, 1, 2)
        last_in_word = Signal()
        self.comb += [
            fifo.reset.eq(self.restart),
            self.req.eq(self.enable & ~self.restart & (fifo.level + sum(inflight) < depth)),
            fifo.sink.valid.eq(arrived),
            # Requests are counted against the FIFO's room (level + in flight), so a word that
            # arrives always fits: its sink's ready is never needed.
            Signal(name="fifo_ready_unused").eq(fifo.sink.ready),
            self.valid.eq(src.valid),
            last_in_word.eq(hidx + step == nh),
            src.ready.eq(self.pop & last_in_word),
        ]
        if deltas:
            prev = Signal(32)  # the last field of the previous word to arrive
            fields = [self.dat[32 * i : 32 * i + 32] for i in range(nf)]
            diffs = []
            for f, b in zip(fields, [prev, *fields[:-1]], strict=True):
                d = Signal(33)  # bit 32: the borrow (f < b)
                self.comb += d.eq(f - b)
                diffs.append(d)
            self.sync += If(arrived, prev.eq(fields[-1]))
            at = hidx[1:]
            self.comb += [
                fifo.sink.delta.eq(Cat(*(d[:32] for d in diffs))),
                fifo.sink.d_zero.eq(Cat(*(d == 0 for d in diffs))),
                fifo.sink.d_one.eq(Cat(*(d == 1 for d in diffs))),
                fifo.sink.d_neg.eq(Cat(*(d[32] for d in diffs))),
                self.delta.eq(Array(src.delta[32 * i : 32 * i + 32] for i in range(nf))[at]),
                self.d_zero.eq(Array(src.d_zero[i] for i in range(nf))[at]),
                self.d_one.eq(Array(src.d_one[i] for i in range(nf))[at]),
                self.d_neg.eq(Array(src.d_neg[i] for i in range(nf))[at]),
            ]
        else:
            halves = Array(src.data[16 * i : 16 * i + 16] for i in range(nh))
            fulls = Array(src.data[32 * i : 32 * i + 32] for i in range(nh // 2))
            self.comb += [
                fifo.sink.data.eq(self.dat),
                self.data.eq(Mux(self.half, halves[hidx], fulls[hidx[1:]])),
            ]
        self.sync += [
            If(
                self.restart,
                *[f.eq(0) for f in inflight],
                self.adr.eq(self.base[hb : hb + adr_bits]),
                hidx.eq(self.base[:hb]),
            ).Else(
                inflight[0].eq(self.gnt),
                *[b.eq(a) for a, b in pairwise(inflight)],
                If(self.gnt, self.adr.eq(self.adr + 1)),
                If(self.pop, hidx.eq(Mux(last_in_word, 0, hidx + step))),
            )
        ]


class Lane(Module):
    """The SpMV / SpMM datapath on one CSR tile (see the module docstring for the schedule).

    Parameters
    ----------
    value_types : sequence of {"fp32", "int32"}
        Arithmetic built in; ``mode``'s dtype picks one at run time.
    bus_bits : {64, 128}
        Word width of the tile, x and y buffers (the DMA bus width).
    tile_depth, x_depth, y_depth : int
        Words of ``bus_bits`` in each buffer (powers of two): the address widths.
    max_k : int
        Largest SpMM ``k`` (accumulator registers); 1 builds an SpMV-only lane.
    kernels : sequence of {"spmv", "spmm"}
        Kernels built in; ``mode``'s kernel picks one at run time.

    Attributes
    ----------
    cfg : list of Signal(32), in
        The configuration words, in the order of :data:`CONFIG_WORDS` (also attributes
        ``cfg_<name>``). Hold them constant while ``busy``.
    start : Signal(), in
        One-cycle start pulse: clears ``done`` and ``error`` and starts the tile (a running
        lane starts over).
    busy : Signal(), out
        From the cycle after ``start`` until ``done``.
    done : Signal(), out
        The tile's results are all written to the y buffer; held until the next ``start``.
    error : Signal(), out
        With ``done``: the configuration asked for something this lane was not built with
        (kernel, dtype, coordinate width, ``k`` of 0 or above ``max_k``), set reserved ``mode``
        bits, gave a misaligned offset or one outside its buffer (then nothing is read or
        written); or the segment array decreased (rows before it may be updated).
    stall : Signal(), out
        Busy but blocked: waiting for tile-buffer words (the port is shared or not granted)
        or for the y port (a write-back collides with the read of a row's first value).
    tile_adr : Signal(tile_depth bits), out
        Tile-buffer read address (bus words), from a register.
    tile_dat_r : Signal(bus_bits), in
        ``tile[tile_adr]`` of the previous cycle (block-RAM read timing).
    tile_en : Signal(), in
        The tile port is the lane's in the next cycle: a request made now is granted, and its
        address is on ``tile_adr`` then (tie to 1 if the port is not shared).
    x_adr : Signal(x_depth bits), out ; x_dat_r : Signal(bus_bits), in
        x / B-slice buffer read port, block-RAM timing.
    y_adr : Signal(y_depth bits), out ; y_dat_r : Signal(bus_bits), in
        y / C buffer read-write port: read data of the previous cycle's address ...
    y_dat_w : Signal(bus_bits), out ; y_we : Signal(bus_bits // 8), out
        ... and a write with byte enables (the 32-bit result replicated over the word; only
        its 4 bytes enabled). Reads and writes never share a cycle, so the port's
        read-during-write mode does not matter.
    """

    def __init__(
        self,
        value_types: Sequence[str] = ("fp32",),
        bus_bits: int = 64,
        tile_depth: int = 512,
        x_depth: int = 512,
        y_depth: int = 512,
        max_k: int = 8,
        kernels: Sequence[str] = ("spmv", "spmm"),
    ) -> None:
        if bus_bits not in (64, 128):
            raise ValueError(f"bus_bits must be 64 or 128, not {bus_bits!r}")
        if not value_types or set(value_types) - set(DTYPE_CODES):
            raise ValueError(f"value_types must be some of {sorted(DTYPE_CODES)}")
        if not kernels or set(kernels) - set(KERNEL_CODES):
            raise ValueError(f"kernels must be some of {sorted(KERNEL_CODES)}")
        if not 1 <= max_k <= 64:
            raise ValueError(f"max_k must be 1..64, not {max_k!r}")
        self.params = dict(
            value_types=tuple(value_types),
            bus_bits=bus_bits,
            tile_depth=tile_depth,
            x_depth=x_depth,
            y_depth=y_depth,
            max_k=max_k,
            kernels=tuple(kernels),
        )
        self.value_types = tuple(value_types)
        nb = bus_bits // 8
        sw = _log2(nb // 4)  # 32-bit words per bus word, log2
        ta, xa, ya = _log2(tile_depth), _log2(x_depth), _log2(y_depth)
        xw, yw = xa + sw, ya + sw  # 32-bit word index widths
        tb = ta + _log2(nb)  # tile-buffer byte address width

        self.cfg = [Signal(32, name=f"cfg_{n}") for n in CONFIG_WORDS]
        for n, s in zip(CONFIG_WORDS, self.cfg, strict=True):
            setattr(self, f"cfg_{n}", s)
        self.start = Signal(name="start")
        self.busy = Signal(name="busy")
        self.done = Signal(name="done")
        self.error = Signal(name="error")
        self.stall = Signal(name="stall")
        self.tile_adr = Signal(ta, name="tile_adr")
        self.tile_dat_r = Signal(bus_bits, name="tile_dat_r")
        self.tile_en = Signal(name="tile_en")
        self.x_adr = Signal(xa, name="x_adr")
        self.x_dat_r = Signal(bus_bits, name="x_dat_r")
        self.y_adr = Signal(ya, name="y_adr")
        self.y_dat_r = Signal(bus_bits, name="y_dat_r")
        self.y_dat_w = Signal(bus_bits, name="y_dat_w")
        self.y_we = Signal(nb, name="y_we")

        # # #

        seg_base, crd_base, val_base, rows, mode, k, x_base, y_base = self.cfg
        kernel, dtype, cbytes = mode[0:2], mode[8:10], mode[16:19]
        is_spmm = Signal()
        k_eff = Signal(max=max_k + 1)
        # The checks are registered one by one, and the lane looks at them in its first cycle
        # after start (CHECK): neither the configuration's compares nor their AND are then in
        # front of the state register.
        checks = [
            reduce(or_, [kernel == KERNEL_CODES[n] for n in kernels]),
            reduce(or_, [dtype == DTYPE_CODES[n] for n in value_types]),
            (cbytes == 2) | (cbytes == 4),
            Cat(mode[2:8], mode[10:16], mode[19:32]) == 0,  # reserved bits
            Cat(seg_base[:2], val_base[:2], crd_base[0], x_base[:2], y_base[:2]) == 0,
            ~cbytes[2] | ~crd_base[1],  # u32 coordinates are 4-byte aligned
            # offsets inside their buffers
            Cat(seg_base[tb:], crd_base[tb:], val_base[tb:]) == 0,
            Cat(x_base[2 + xw :], y_base[2 + yw :]) == 0,
            ~is_spmm | ((k != 0) & (k <= max_k)),
        ]
        passed = [Signal(name=f"check{i}") for i in range(len(checks))]
        self.sync += [p.eq(c) for p, c in zip(passed, checks, strict=True)]
        ok_r = Signal()
        self.comb += [
            is_spmm.eq(kernel == KERNEL_CODES["spmm"]),
            k_eff.eq(Mux(is_spmm, k[: len(k_eff)], 1)),
            ok_r.eq(reduce(and_, passed)),
        ]

        # -- tile readers on one port, fixed priority seg > crd > val (seg is needed least
        # often; a reader stops asking once its FIFO is full, so none starves) --
        # The segment reader hands out each row's length (seg[r + 1] - seg[r]) with flags, so
        # the sequencer starts a row without a subtract or compare in its cycle.
        # A word arrives three cycles after its grant: the address register below, the block
        # RAM, tile_q.
        seg, crd, val = (_SeqReader(bus_bits, ta, latency=3, deltas=i == 0) for i in range(3))
        tile_q = Signal(bus_bits, reset_less=True)  # the tile port's word, for all three
        self.sync += tile_q.eq(self.tile_dat_r)
        self.submodules.seg_rd, self.submodules.crd_rd, self.submodules.val_rd = seg, crd, val
        # One-hot states (IDLE is all zeros), so a state test is one flip-flop, not a compare.
        IDLE, SEG0, ROW, NZ, DRAIN, CHECK = 0, 1, 2, 4, 8, 16
        state = Signal(5)
        in_seg0, in_row, in_nz, in_drain, in_check = (state[i] for i in range(5))
        # state != IDLE, kept in a flip-flop of its own (set with the start, cleared with
        # every move to IDLE): the shell selects each of the lane's buffer ports with it, and
        # from the OR of the state bits that select and the buffers' address routing, spread
        # over the die, shared a cycle (the four-lane shell's slowest paths into block RAM
        # addresses on the placed ECP5 proxy).
        busy = Signal()
        for rd, base in ((seg, seg_base), (crd, crd_base), (val, val_base)):
            self.comb += [
                rd.restart.eq(self.start),
                rd.enable.eq(busy & ~in_check),
                rd.base.eq(base[1:tb]),
                rd.dat.eq(tile_q),
            ]
        self.comb += [
            seg.half.eq(0),
            crd.half.eq(cbytes == 2),
            val.half.eq(0),
            seg.gnt.eq(self.tile_en & seg.req),
            crd.gnt.eq(self.tile_en & crd.req & ~seg.req),
            val.gnt.eq(self.tile_en & val.req & ~seg.req & ~crd.req),
        ]
        # The granted address goes to the port from a register: the readers' requests, their
        # priority and address multiplexer, the shell's port select and the routing to a block
        # RAM that may sit across the die did not fit one cycle (the four-lane shell's slowest
        # path on the placed ECP5 proxy, 18 ns). It costs 3 cycles per tile, not throughput.
        self.sync += self.tile_adr.eq(Mux(seg.req, seg.adr, Mux(crd.req, crd.adr, val.adr)))

        # -- row sequencer (front end) --
        # Rows left (rows - r for local row r) and two flags kept with it, so that the
        # sequencer tests flip-flops rather than compare 32-bit counts in its busiest path.
        left = Signal(32)
        more, more2 = Signal(), Signal()  # left != 0, left >= 2
        rem = Signal(32)  # nonzeros of the row not yet fully issued
        rem1 = Signal()  # rem == 1, kept with rem: the row-end test is one flip-flop
        c = Signal(max=max(max_k, 2))
        firstq = Signal()  # issuing the row's first nonzero
        yrow = Signal(yw)  # 32-bit word index of y[r, 0]
        emit = Signal()
        last_c = Signal()
        rows_left = Signal()
        pipe_empty = Signal()

        is_int = Signal()  # int32 arithmetic, held for the tile
        mul, accu = self._arithmetic(value_types, is_int, max_k, yw)
        # The chain (row, column) of the next item to issue goes to accumulator context `ctx`;
        # a row's k chains take k consecutive contexts from `rowctx`, and the next row's start
        # at `nextrow` (rowctx + k) (docs/overlay.md, "Lane"). One-hot, so that the room test
        # is an AND-OR of flip-flops.
        n_ctx = self.contexts
        cb = _log2(n_ctx)
        ctx, rowctx, nextrow = (Signal(n_ctx, name=n) for n in ("ctx", "rowctx", "nextrow"))
        # `go`: ctx's queue has room (registered: the room of the context ctx will hold next
        # cycle, set with it), so that the issue decision is an AND of flip-flops.
        go = Signal()

        def room(onehot: object) -> object:
            return Cat(*accu.room) & onehot != 0

        def rotl(x: Signal, n: object) -> object:
            return Cat(x[(j - n) % n_ctx] for j in range(n_ctx))

        kq = Signal(max=max_k + 1)  # k_eff, held for the tile
        k1 = Signal()  # k_eff == 1

        # Finished sums wait in a write queue for cycles in which no y is read (only a row's
        # first item reads y), so write-backs never hold up the next row's reads.
        wq_depth = 16
        wq = stream.SyncFIFO([("adr", yw), ("dat", 32)], wq_depth)
        self.submodules.wq = wq
        # A sum can leave the adder up to window - 1 cycles after its term is picked; the
        # flag is registered (one push more to allow for), so no compare precedes the pick.
        wq_room = Signal()
        self.sync += wq_room.eq(wq.level <= wq_depth - accu.window - 1)
        chain = Signal()  # the row's last item, and the next row can start right away
        row_end = Signal()
        # The next row can start in the cycle of this row's last item: there is a next row, its
        # length is here, and it is neither empty nor negative. Registered from the reader's
        # head, and only if no segment end is taken in this cycle (the head then moves on): a
        # row of one item, which took its segment end in the cycle before, goes through ROW
        # instead (a cycle more, which the y port's read and write per row take anyway).
        can_chain = Signal()
        self.sync += can_chain.eq(more2 & seg.valid & ~seg.d_zero & ~seg.d_neg & ~seg.pop)
        # last_c & rem1 (the row's last item), kept with them so the row end is one flip-flop.
        lastq = Signal()
        self.comb += [
            rows_left.eq(more),
            emit.eq(in_nz & crd.valid & val.valid & go),
            crd.pop.eq(emit & last_c),
            val.pop.eq(emit & last_c),
            row_end.eq(emit & lastq),
            chain.eq(row_end & can_chain),
            seg.pop.eq(((in_seg0 | (in_row & rows_left)) & seg.valid) | chain),
            accu.reserve.eq(emit),
            accu.reserve_sel.eq(ctx),
            self.busy.eq(busy),
            self.stall.eq((in_nz & ~emit) | ((in_seg0 | (in_row & rows_left)) & ~seg.valid)),
        ]
        next_row = [left.eq(left - 1), more.eq(left != 1), more2.eq(left > 2)]
        start_row = [rem.eq(seg.delta), rem1.eq(seg.d_one), lastq.eq(k1 & seg.d_one), firstq.eq(1)]
        # ctx unchanged unless set below (with its `go`)
        self.sync += go.eq(room(ctx))
        self.sync += If(
            self.start,
            state.eq(CHECK),
            busy.eq(1),
            self.done.eq(0),
            self.error.eq(0),
            left.eq(rows),
            more.eq(rows != 0),
            more2.eq(rows > 1),
            c.eq(0),
            last_c.eq(k_eff == 1),
            k1.eq(k_eff == 1),
            ctx.eq(1),
            go.eq(1),  # the accumulator is reset with start
            rowctx.eq(1),
            nextrow.eq(C(1, n_ctx) << k_eff[:cb]),  # one-hot of k mod contexts
            kq.eq(k_eff),
            *([is_int.eq(dtype == DTYPE_CODES["int32"])] if len(value_types) == 2 else []),
            yrow.eq(y_base[2 : 2 + yw]),
        ).Else(
            If(
                in_check,
                If(ok_r, state.eq(SEG0)).Else(
                    state.eq(IDLE), busy.eq(0), self.done.eq(1), self.error.eq(1)
                ),
            )
            .Elif(
                in_seg0,
                If(seg.valid, state.eq(ROW)),  # seg[0]: only the rows' lengths matter
            )
            .Elif(
                in_row,
                If(~rows_left, state.eq(DRAIN)).Elif(
                    seg.valid,
                    If(seg.d_zero, *next_row, yrow.eq(yrow + kq))
                    .Elif(seg.d_neg, self.error.eq(1), state.eq(DRAIN))
                    .Else(*start_row, c.eq(0), state.eq(NZ)),
                ),
            )
            .Elif(
                in_nz,
                If(
                    emit,
                    If(
                        last_c,
                        c.eq(0),
                        last_c.eq(k1),
                        ctx.eq(rowctx),
                        go.eq(room(rowctx)),
                        firstq.eq(0),
                        rem.eq(rem - 1),
                        rem1.eq(rem == 2),
                        lastq.eq(k1 & (rem == 2)),
                        If(
                            rem1,
                            *next_row,
                            yrow.eq(yrow + kq),
                            rowctx.eq(nextrow),
                            ctx.eq(nextrow),
                            go.eq(room(nextrow)),
                            nextrow.eq(Array(rotl(nextrow, i) for i in range(max_k + 1))[kq]),
                            # as in ROW, without spending a cycle there
                            If(chain, *start_row).Else(state.eq(ROW)),
                        ),
                    ).Else(
                        c.eq(c + 1),
                        last_c.eq(c + 2 == kq),
                        lastq.eq((c + 2 == kq) & rem1),
                        ctx.eq(rotl(ctx, 1)),
                        go.eq(room(rotl(ctx, 1))),
                    ),
                ),
            )
            .Elif(
                in_drain,
                If(pipe_empty, state.eq(IDLE), busy.eq(0), self.done.eq(1)),
            )
        )

        # -- back end: A register the item, B index product, C x/y address, D read, E fields,
        # then the multiplier and the interleaved accumulator (docs/overlay.md, "Lane") --
        words = nb // 4

        def field(word: Signal, idx: Signal) -> object:
            return Array(word[32 * i : 32 * i + 32] for i in range(words))[idx]

        def stage(sig: object, width: int, name: str) -> Signal:
            reg = Signal(width, name=name)
            self.sync += reg.eq(sig)
            return reg

        def advance(item: dict[str, Signal], tag: str) -> dict[str, Signal]:
            """The item's fields one stage later."""
            return {k: stage(f, len(f), f"{k}{tag}") for k, f in item.items()}

        # Coordinates are local to the x slice (the packer writes and checks them so), so
        # only the slice's index bits are decoded.
        self.comb += Signal(32 - xw, name="crd_high_unused").eq(crd.data[xw:])
        ctx_bin = Signal(cb)
        self.comb += [If(ctx[j], ctx_bin.eq(j)) for j in range(n_ctx)]
        # The fields every stage carries: valid, chain's first/last item, context, value and
        # the y word index of the chain's result.
        item = {
            "v": stage(emit & ~self.start, 1, "vA"),
            "first": stage(firstq, 1, "firstA"),
            "last": stage(rem1, 1, "lastA"),
            "ctx": stage(ctx_bin, cb, "ctxA"),
            "val": stage(val.data, 32, "valA"),
            "ya": stage(yrow + c, yw, "yaA"),
        }
        cA, crdA = stage(c, len(c), "cA"), stage(crd.data[:xw], xw, "crdA")
        # B: the item's x row times k and the slice base plus column, each one add or multiply
        item = advance(item, "B")
        xrowB = stage(crdA * kq if max_k > 1 else crdA, xw, "xrowB")
        xbcB = stage(x_base[2 : 2 + xw] + cA, xw, "xbcB")
        # C: the x and y addresses (y only for a chain's first item)
        item = advance(item, "C")
        xaC, yaC = stage(xrowB + xbcB, xw, "xaC"), item["ya"]
        readC = Signal()
        self.comb += readC.eq(item["v"] & item["first"])
        # D: the words arrive; E: their 32-bit fields
        item = advance(item, "D")
        xfD = stage(xaC[:sw], max(sw, 1), "xfD")
        xvalE = stage(field(self.x_dat_r, xfD), 32, "xvalE")
        y0E = stage(field(self.y_dat_r, item["ya"][:sw]), 32, "y0E")
        item = advance(item, "E")
        valE = item.pop("val")
        self.comb += [mul.a.eq(valE), mul.b.eq(xvalE)]
        # The fields and y's first value wait beside the multiplier.
        item["y0"] = y0E
        for i in range(mul.latency):
            item = advance(item, f"M{i}")
        # The product is registered once more, so the multiplier's last stage (normalising and
        # rounding) does not feed the queue memory's write port in the same cycle.
        item = advance(item, "P")
        termP = stage(mul.r, 32, "termP")
        self.comb += [
            accu.in_valid.eq(item["v"]),
            accu.in_first.eq(item["first"]),
            accu.in_last.eq(item["last"]),
            accu.in_ctx.eq(item["ctx"]),
            accu.in_tag.eq(item["ya"]),
            accu.in_init.eq(item["y0"]),
            accu.in_term.eq(termP),
            accu.out_ok.eq(wq_room),
            wq.sink.valid.eq(accu.out_valid),
            # out_ok keeps room for every sum in the adder, so a push always fits: the
            # sink's ready is never needed.
            Signal(name="wq_ready_unused").eq(wq.sink.ready),
            wq.sink.adr.eq(accu.out_tag),
            wq.sink.dat.eq(accu.out_sum),
        ]
        # Every item is reserved in the accumulator when it is issued and counted there until
        # the adder has it, so the accumulator's idle covers the stages in between.
        self.comb += pipe_empty.eq(accu.idle & ~wq.source.valid)

        enables = Array(C(0xF << (4 * i), nb) for i in range(words))
        self.comb += [
            self.x_adr.eq(xaC[sw:]),
            wq.source.ready.eq(~readC),
            self.y_adr.eq(Mux(readC, yaC[sw:], wq.source.adr[sw:])),
            self.y_dat_w.eq(Replicate(wq.source.dat, words)),
            self.y_we.eq(Mux(wq.source.valid & ~readC, enables[wq.source.adr[:sw]], 0)),
        ]

    def _arithmetic(
        self, value_types: Sequence[str], is_int: Signal, max_k: int, tag_bits: int
    ) -> tuple[Module, InterleavedAccumulator]:
        """The multiplier and the interleaved accumulator for the built value types; with
        both, ``is_int`` picks one (their latencies are padded to match). The accumulator has
        a context per chain that can be in flight: at least ``max_k`` (a row's chains) and
        more than the adder's latency (so the adder is never waited for)."""
        muls, adds = [], []
        if "fp32" in value_types:
            muls.append(("fp32", PipeFpMul))
            adds.append(("fp32", PipeFpAdd))
        if "int32" in value_types:
            muls.append(("int32", PipeIntMul))
            adds.append(("int32", _IntAdd))
        self.submodules.mul = mul = _Selected(muls, is_int)
        add = _Selected(adds, is_int)
        self.contexts = 1 << (max(max_k, add.latency + 1) - 1).bit_length()
        accu = InterleavedAccumulator(add, self.contexts, QUEUE_DEPTH, tag_bits)
        self.turn = accu.turn  # cycles per add of a lone chain
        self.submodules.accu = accu = ResetInserter()(accu)
        self.comb += accu.reset.eq(self.start)
        return mul, accu

    def connect(self, tile_port: object, x_port: object, y_port: object) -> list:
        """Statements wiring the lane to Migen ``Memory`` ports of its three buffers: ``tile_port``
        and ``x_port`` read ports, ``y_port`` a write-capable port with ``we_granularity=8``.
        Add them to ``comb``; drive :attr:`tile_en` separately (1 if the port is the lane's)."""
        return [
            tile_port.adr.eq(self.tile_adr),  # type: ignore[attr-defined]
            self.tile_dat_r.eq(tile_port.dat_r),  # type: ignore[attr-defined]
            x_port.adr.eq(self.x_adr),  # type: ignore[attr-defined]
            self.x_dat_r.eq(x_port.dat_r),  # type: ignore[attr-defined]
            y_port.adr.eq(self.y_adr),  # type: ignore[attr-defined]
            self.y_dat_r.eq(y_port.dat_r),  # type: ignore[attr-defined]
            y_port.dat_w.eq(self.y_dat_w),  # type: ignore[attr-defined]
            y_port.we.eq(self.y_we),  # type: ignore[attr-defined]
        ]

    def ios(self) -> set[Signal]:
        return {
            *self.cfg,
            self.start,
            self.busy,
            self.done,
            self.error,
            self.stall,
            self.tile_adr,
            self.tile_dat_r,
            self.tile_en,
            self.x_adr,
            self.x_dat_r,
            self.y_adr,
            self.y_dat_r,
            self.y_dat_w,
            self.y_we,
        }

    def to_verilog(self, name: str = "lane") -> str:
        """The lane as one Verilog module ``name`` (clock ``sys_clk``, reset ``sys_rst``)."""
        return str(verilog.convert(self, ios=self.ios(), name=name))
