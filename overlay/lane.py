"""The SpMV / SpMM lane: one CSR tile from the tile buffer, accumulated into the y / C buffer.

A lane runs the kernel set {SpMV, SpMM} on one tile at a time, selected at run time by its
``mode`` configuration word (one bitstream, many kernels: docs/architecture.md). For every
local row ``r`` with a non-empty segment ``seg[r] .. seg[r+1]-1`` and every column ``c < k``
(``k = 1`` for SpMV) it computes, in exactly the order of ``docs/jobs.md`` / ``docs/emulator.md``::

    acc = y[r, c]                                  # the row's current value in the y buffer
    for q in seg[r] .. seg[r+1]-1:                 # increasing column order
        acc = add(acc, mul(val[q], x[crd[q], c]))  # each rounded as the ALU rounds; no FMA
    y[r, c] = acc

Rows with an empty segment are not touched. Arithmetic is the overlay ALU's
(:func:`fiberflow.overlay.fp32.fp_mul` / :func:`~fiberflow.overlay.fp32.fp_add`, subnormals
flushed, canonical NaN; int32 wraps), so the result is bit-exact with the emulator.

Structure (``docs/overlay.md``, section "Lane")::

    tile port --arbiter--> seg reader --\\
                      \\--> crd reader ---> row sequencer -> S1 x/y read -> S2 fields -> S3 mul
                       \\-> val reader --/                 -> S4 add -> write queue -> y port

* Three sequential element readers (``_SeqReader``) share the lane's one tile-buffer read port
  (one port, so the tile buffer stays a two-port block RAM: DMA on one side, lane on the other).
  Each keeps a few bus words in a LiteX ``stream.SyncFIFO`` and hands out 16- or 32-bit fields.
  The SAM compressed scanner (``overlay/scanner.py``) reads seg and crd through two private
  32-bit ports with 2 set-up cycles per fiber; here the arrays are walked once, front to back,
  so a streaming reader over wide words needs a third of the port bandwidth and no per-row
  set-up reads. That is why the scanner is not used here.
* The row sequencer is the SAM graph of SpMV/SpMM (dense row scan, compressed column scan,
  B-row repeat over ``c``) flattened into one counter FSM, because every stream in it moves in
  lock step: a token-level graph of scanner, repeater, ALU and reducer would need a fork/join
  per edge for the same schedule.
* The back end is a fixed-latency pipeline without backpressure (every memory it touches is
  the lane's own, with block-RAM timing): S1 reads x (every item) and y (a row's first
  nonzero only), S2 selects the 32-bit fields, S3 multiplies, S4 adds into one of ``max_k``
  accumulator registers. A row's finished sums go into a 16-entry write queue (LiteX
  ``stream.SyncFIFO``) that writes them to y in cycles where S1 reads no y, so write-backs
  never hold up the next row; the sequencer stops issuing while the queue could overflow.
* Throughput: the add in S4 is the ALU's combinational adder between two registers, the same
  register-to-register path as in :class:`~fiberflow.overlay.alu.Alu` (whose latency of 2 is
  one input and one output register around it), plus the operand select (the y value for a
  row's first product, else accumulator ``c``, a ``max_k``-way mux). The running sum feeds
  back from the S4 register into the adder, so consecutive products of one row are added on
  consecutive cycles: one multiply-add per cycle for SpMV and SpMM alike, in the sequential
  order. The next row's segment end is taken in the cycle of the row's last nonzero, so rows
  follow each other without a gap; an empty row costs one cycle. Limits: the one y port does
  a read and a write per row and column, so rows of one nonzero run at 1/2 per cycle; on a
  64-bit bus, 32-bit coordinates need 8 tile bytes per nonzero, all of the port.

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
6      x_base      byte offset of x[0] (or B's row 0) of the tile's slice in the x buffer
7      y_base      byte offset of y[0] (or C's row 0) of the tile's rows in the y buffer
=====  ==========  ===============================================================

Offsets must be aligned to their element size (4 bytes; 2 for u16 coordinates) and lie
inside their buffer, or the lane ends at once with ``error``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from operator import or_

import numpy as np
from litex.soc.interconnect import stream
from migen import Array, C, Cat, If, Module, Mux, Replicate, ResetInserter, Signal
from migen.fhdl import verilog

from fiberflow.host import dtypes, job
from fiberflow.overlay import fp32

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


class _SeqReader(Module):
    """Consecutive 16- or 32-bit elements from a wide memory, one per cycle.

    ``restart`` (with ``base``, a byte address, and ``half``: 16-bit elements) empties the
    buffer and starts reading at ``base``; while ``enable`` the reader requests words
    (``req``/``adr``) as long as its FIFO has room for them; ``gnt`` says the port took the
    request, and the word arrives on ``dat`` one cycle later. ``valid``/``data``/``pop`` hand
    out elements; popping the last element of a word frees it.
    """

    def __init__(self, bus_bits: int, adr_bits: int, depth: int = 4) -> None:
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

        # # #

        fifo = ResetInserter()(stream.SyncFIFO([("data", bus_bits)], depth))
        self.submodules.fifo = fifo
        inflight = Signal()
        hidx = Signal(hb)  # 16-bit field of the head word where the next element starts
        head = fifo.source.data
        halves = Array(head[16 * i : 16 * i + 16] for i in range(nh))
        fulls = Array(head[32 * i : 32 * i + 32] for i in range(nh // 2))
        step = Mux(self.half, 1, 2)
        last_in_word = Signal()
        self.comb += [
            fifo.reset.eq(self.restart),
            self.req.eq(self.enable & ~self.restart & (fifo.level + inflight < depth)),
            fifo.sink.valid.eq(inflight),
            fifo.sink.data.eq(self.dat),
            # Requests are counted against the FIFO's room (level + inflight), so a word that
            # arrives always fits: its sink's ready is never needed.
            Signal(name="fifo_ready_unused").eq(fifo.sink.ready),
            self.valid.eq(fifo.source.valid),
            self.data.eq(Mux(self.half, halves[hidx], fulls[hidx[1:]])),
            last_in_word.eq(hidx + step == nh),
            fifo.source.ready.eq(self.pop & last_in_word),
        ]
        self.sync += [
            If(
                self.restart,
                inflight.eq(0),
                self.adr.eq(self.base[hb : hb + adr_bits]),
                hidx.eq(self.base[:hb]),
            ).Else(
                inflight.eq(self.gnt),
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
        Tile-buffer read address (bus words).
    tile_dat_r : Signal(bus_bits), in
        ``tile[tile_adr]`` of the previous cycle (block-RAM read timing).
    tile_en : Signal(), in
        The tile port is the lane's in this cycle (tie to 1 if it is not shared).
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
        ok = Signal()
        self.comb += [
            is_spmm.eq(kernel == KERNEL_CODES["spmm"]),
            k_eff.eq(Mux(is_spmm, k[: len(k_eff)], 1)),
            ok.eq(
                reduce(or_, [kernel == KERNEL_CODES[n] for n in kernels])
                & reduce(or_, [dtype == DTYPE_CODES[n] for n in value_types])
                & ((cbytes == 2) | (cbytes == 4))
                & (Cat(mode[2:8], mode[10:16], mode[19:32]) == 0)  # reserved bits
                & (Cat(seg_base[:2], val_base[:2], crd_base[0], x_base[:2], y_base[:2]) == 0)
                & (~cbytes[2] | ~crd_base[1])  # u32 coordinates are 4-byte aligned
                # offsets inside their buffers
                & (Cat(seg_base[tb:], crd_base[tb:], val_base[tb:]) == 0)
                & (Cat(x_base[2 + xw :], y_base[2 + yw :]) == 0)
                & (~is_spmm | ((k != 0) & (k <= max_k)))
            ),
        ]

        # -- tile readers on one port, fixed priority seg > crd > val (seg is needed least
        # often; a reader stops asking once its FIFO is full, so none starves) --
        seg, crd, val = (_SeqReader(bus_bits, ta) for _ in range(3))
        self.submodules.seg_rd, self.submodules.crd_rd, self.submodules.val_rd = seg, crd, val
        IDLE, SEG0, ROW, NZ, DRAIN = range(5)
        state = Signal(3)
        running = Signal()
        self.comb += running.eq(state != IDLE)
        for rd, base in ((seg, seg_base), (crd, crd_base), (val, val_base)):
            self.comb += [
                rd.restart.eq(self.start),
                rd.enable.eq(running),
                rd.base.eq(base[1:tb]),
                rd.dat.eq(self.tile_dat_r),
            ]
        self.comb += [
            seg.half.eq(0),
            crd.half.eq(cbytes == 2),
            val.half.eq(0),
            seg.gnt.eq(self.tile_en & seg.req),
            crd.gnt.eq(self.tile_en & crd.req & ~seg.req),
            val.gnt.eq(self.tile_en & val.req & ~seg.req & ~crd.req),
            self.tile_adr.eq(Mux(seg.req, seg.adr, Mux(crd.req, crd.adr, val.adr))),
        ]

        # -- row sequencer (front end) --
        r = Signal(32)  # local row
        cur = Signal(32)  # seg[r]
        rem = Signal(32)  # nonzeros of the row not yet fully issued
        c = Signal(max=max(max_k, 2))
        firstq = Signal()  # issuing the row's first nonzero
        yrow = Signal(yw)  # 32-bit word index of y[r, 0]
        emit = Signal()
        last_c = Signal()
        rows_left = Signal()

        # Pipeline registers (stage n holds what entered it at the last clock edge).
        def regs(names: str, width: int = 1) -> list[Signal]:
            return [Signal(width, name=n) for n in names.split()]

        v1, first1, last1, v2, first2, last2 = regs("v1 first1 last1 v2 first2 last2")
        v3, first3, last3, v4, first4, last4 = regs("v3 first3 last3 v4 first4 last4")
        cw = max(max_k - 1, 1).bit_length()
        c1, c2, c3, c4 = regs("c1 c2 c3 c4", cw)
        val1, val2, val3 = regs("val1 val2 val3", 32)
        (xa1,) = regs("xa1", xw)
        ya1, ya2, ya3, ya4 = regs("ya1 ya2 ya3 ya4", yw)
        (xf2,) = regs("xf2", max(sw, 1))
        xval3, y03, prod4, y04 = regs("xval3 y03 prod4 y04", 32)

        # Finished sums wait in a write queue for cycles in which S1 reads no y (only a row's
        # first nonzero reads y), so write-backs never hold up the next row's reads. The
        # front end keeps room in it for every item in flight (S1..S4).
        wq_depth = 16
        wq = stream.SyncFIFO([("adr", yw), ("dat", 32)], wq_depth)
        self.submodules.wq = wq
        room = Signal()
        chain = Signal()  # the row's last item, and the next row can start right away
        row_end = Signal()
        self.comb += [
            rows_left.eq(r != rows),
            last_c.eq(c == k_eff - 1),
            room.eq(wq.level <= wq_depth - 5),
            emit.eq((state == NZ) & crd.valid & val.valid & room),
            crd.pop.eq(emit & last_c),
            val.pop.eq(emit & last_c),
            row_end.eq(emit & last_c & (rem == 1)),
            chain.eq(row_end & (r + 1 != rows) & seg.valid & (seg.data > cur)),
            seg.pop.eq((((state == SEG0) | ((state == ROW) & rows_left)) & seg.valid) | chain),
            self.busy.eq(running),
            self.stall.eq(
                ((state == NZ) & ~emit)
                | (((state == SEG0) | ((state == ROW) & rows_left)) & ~seg.valid)
            ),
        ]
        pipe_empty = ~(v1 | v2 | v3 | v4 | wq.source.valid)
        self.sync += If(
            self.start,
            state.eq(Mux(ok, SEG0, IDLE)),
            self.done.eq(~ok),
            self.error.eq(~ok),
            r.eq(0),
            c.eq(0),
            yrow.eq(y_base[2 : 2 + yw]),
        ).Else(
            If(
                state == SEG0,
                If(seg.valid, cur.eq(seg.data), state.eq(ROW)),
            )
            .Elif(
                state == ROW,
                If(~rows_left, state.eq(DRAIN)).Elif(
                    seg.valid,
                    If(seg.data == cur, r.eq(r + 1), yrow.eq(yrow + k_eff))
                    .Elif(seg.data < cur, self.error.eq(1), state.eq(DRAIN))
                    .Else(
                        rem.eq(seg.data - cur),
                        cur.eq(seg.data),
                        firstq.eq(1),
                        c.eq(0),
                        state.eq(NZ),
                    ),
                ),
            )
            .Elif(
                state == NZ,
                If(
                    emit,
                    If(
                        last_c,
                        c.eq(0),
                        firstq.eq(0),
                        rem.eq(rem - 1),
                        If(
                            rem == 1,
                            r.eq(r + 1),
                            yrow.eq(yrow + k_eff),
                            If(
                                chain,  # as in ROW, without spending a cycle there
                                rem.eq(seg.data - cur),
                                cur.eq(seg.data),
                                firstq.eq(1),
                            ).Else(state.eq(ROW)),
                        ),
                    ).Else(c.eq(c + 1)),
                ),
            )
            .Elif(
                state == DRAIN,
                If(pipe_empty, state.eq(IDLE), self.done.eq(1)),
            )
        )

        # -- back end: S1 read x and y, S2 pick fields, S3 multiply, S4 add, S5 write y --
        words = nb // 4

        def field(word: Signal, idx: Signal) -> object:
            return Array(word[32 * i : 32 * i + 32] for i in range(words))[idx]

        # Coordinates are local to the x slice (the packer writes and checks them so), so
        # only the slice's index bits are decoded.
        self.comb += Signal(32 - xw, name="crd_high_unused").eq(crd.data[xw:])
        self.sync += [
            v1.eq(emit & ~self.start),
            first1.eq(firstq),
            last1.eq(rem == 1),
            c1.eq(c),
            val1.eq(val.data),
            xa1.eq(x_base[2 : 2 + xw] + crd.data[:xw] * k_eff + c),
            ya1.eq(yrow + c),
            # S2
            v2.eq(v1),
            first2.eq(first1),
            last2.eq(last1),
            c2.eq(c1),
            val2.eq(val1),
            xf2.eq(xa1[:sw]),
            ya2.eq(ya1),
            # S3
            v3.eq(v2),
            first3.eq(first2),
            last3.eq(last2),
            c3.eq(c2),
            val3.eq(val2),
            xval3.eq(field(self.x_dat_r, xf2)),
            y03.eq(field(self.y_dat_r, ya2[:sw])),
            ya3.eq(ya2),
            # S4
            v4.eq(v3),
            first4.eq(first3),
            last4.eq(last3),
            c4.eq(c3),
            y04.eq(y03),
            ya4.eq(ya3),
        ]
        acc = Array(Signal(32, name=f"acc{i}") for i in range(max_k))
        acc_in, prod, total = Signal(32), Signal(32), Signal(32)
        self.comb += acc_in.eq(Mux(first4, y04, acc[c4]))
        ops = {}  # value type -> (product of S3, sum of S4)
        if "int32" in value_types:
            imul, iadd = Signal(32), Signal(32)
            self.comb += [imul.eq(val3 * xval3), iadd.eq(acc_in + prod4)]  # low 32 bits: wrap
            ops["int32"] = (imul, iadd)
        if "fp32" in value_types:
            ops["fp32"] = (fp32.fp_mul(self, val3, xval3), fp32.fp_add(self, acc_in, prod4))
        if len(ops) == 2:
            is_int = Signal()
            self.comb += [
                is_int.eq(dtype == DTYPE_CODES["int32"]),
                prod.eq(Mux(is_int, ops["int32"][0], ops["fp32"][0])),
                total.eq(Mux(is_int, ops["int32"][1], ops["fp32"][1])),
            ]
        else:
            ((p_op, s_op),) = ops.values()
            self.comb += [prod.eq(p_op), total.eq(s_op)]
        self.sync += prod4.eq(prod)
        self.sync += [If(v4 & (c4 == i), acc[i].eq(total)) for i in range(max_k)]
        self.comb += [
            wq.sink.valid.eq(v4 & last4),
            # The front end stops issuing while the queue lacks room for the words in flight
            # (``room``), so a push always fits: the sink's ready is never needed.
            Signal(name="wq_ready_unused").eq(wq.sink.ready),
            wq.sink.adr.eq(ya4),
            wq.sink.dat.eq(total),
        ]

        enables = Array(C(0xF << (4 * i), nb) for i in range(words))
        self.comb += [
            self.x_adr.eq(xa1[sw:]),
            wq.source.ready.eq(~(v1 & first1)),
            self.y_adr.eq(Mux(wq.source.ready, wq.source.adr[sw:], ya1[sw:])),
            self.y_dat_w.eq(Replicate(wq.source.dat, words)),
            self.y_we.eq(Mux(wq.source.valid & wq.source.ready, enables[wq.source.adr[:sw]], 0)),
        ]

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
