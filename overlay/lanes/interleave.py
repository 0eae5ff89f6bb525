"""Interleaved accumulation: many running sums through one pipelined adder, each sum's terms
added one at a time in arrival order.

A pipelined adder takes ``latency`` cycles to produce a sum, so a single running sum could use
it once every ``latency + 1`` cycles (the sum must be back in its register before the next
add reads it). The lane keeps it busy by interleaving independent sums: the products of each
sum (a *chain*: one row of SpMV, one row and column of SpMM) are queued in one of ``contexts``
first-in first-out queues, and in every cycle the adder takes the next term of one context
that has a term queued and no add in flight (its previous sum is back by the time the term
reaches the adder). Among those, the first at or above a position that moves up one context
per cycle is taken, so no context waits more than ``contexts`` cycles once it is eligible
(while ``out_ok``). A lone chain thus gets an add every
``latency + 1`` cycles; with more than ``latency`` chains queued, the adder takes a term in
every cycle.

Why it is hazard-free without comparing contexts: a pick is remembered for the ``latency``
cycles its add is in flight (a shift register of one-hot picks), and a remembered context is
not eligible. Why the order cannot change: each chain lives in one context and its queue is
first-in first-out, so whichever context is picked, a sum receives its own terms in order:
the result is the sequential sum, bit for bit, whatever the timing.

The pick is one stage ahead of the queue read (pick, read, register, add), so the choice
among the contexts, the queue memory's read and the adder's first stage are in different
cycles, each from flip-flops.

The caller assigns chains to contexts and must not start a chain in a context before the
previous chain there has been fully queued (in the lane, chains arrive in row order, so this
holds by construction). Terms arrive from a pipeline that cannot stop, so room is reserved when
a term is *issued* upstream (``reserve``, naming its context), not when it arrives: ``room[j]``
says a term for context ``j`` may be issued in the next cycle.

Each queued term carries the chain's initial value (``init``, used with ``first``: the sum is
``init + t0 + t1 + ...``), whether it is the chain's last term (``last``: the sum is then
emitted on ``out_*`` with the term's ``tag``, the y address in the lane), and the term itself.
The queues share one memory of ``contexts * depth`` entries (one write and one read per cycle),
marked for LUT RAM, so it maps neither to flip-flops nor to the block RAM the buffers need.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from migen import READ_FIRST, Array, Cat, If, Memory, Module, Mux, Signal

__all__ = ["InterleavedAccumulator"]


class _LutMemory(Memory):
    """A ``Memory`` marked for LUT RAM (``ram_style = "distributed"``, which Vivado and yosys
    both honour). The queues are shallow and wide (contexts x depth entries of about 80 bits;
    the lane's 8 x 64 of 78 bits are 208 RAM64M and 234 LUTs in yosys' xc7 mapping): block RAM
    is what the tile, x and y buffers need. The ECP5 timing proxy alone puts these memories in
    block RAM, its LUT RAM being 16 entries deep (``fiberflow.boards.timing``)."""

    @staticmethod
    def emit_verilog(memory: Memory, ns: object, add_data_file: object) -> str:
        return '(* ram_style = "distributed" *)\n' + Memory.emit_verilog(memory, ns, add_data_file)


class InterleavedAccumulator(Module):
    """
    Parameters
    ----------
    adder : Module
        A module with inputs ``a``, ``b`` (Signal(32)), output ``r`` and an
        int ``latency``: ``r`` in cycle ``t + latency`` is the sum of ``a`` and ``b`` presented
        in cycle ``t`` (registered inside; no enable).
    contexts, depth : int
        Queues and entries per queue (powers of two); ``contexts`` must exceed the adder's
        latency (so that the adder can take a term in every cycle).
    tag_bits : int
        Width of the tag carried from a chain's last term to its emitted sum.

    Attributes
    ----------
    reserve : Signal(), in ; reserve_sel : Signal(contexts), in
        A term for the context whose bit is set in ``reserve_sel`` (one-hot) was issued
        upstream; it arrives later on ``in_*``. Only when that context's ``room``.
    room : list of Signal(), out
        Per context: a term may be reserved in the next cycle, whatever is reserved in this
        one (registered, so a caller registers its decision for the next cycle from it).
    in_valid, in_ctx, in_term, in_init, in_first, in_last, in_tag : in
        An arriving term (reserved earlier).
    out_ok : Signal(), in
        The consumer can take every sum that might be emitted in this cycle and the next
        ``window - 1``; while it is low, no term is picked for the adder.
    turn : int
        Fewest cycles between two adds of one chain (``latency + 1``): a lone chain's rate.
    window : int
        Cycles from a pick to its sum on ``out_*``, plus one (``latency + 4``).
    out_valid, out_sum, out_tag : out
        A chain's final sum (one cycle; no backpressure beyond ``out_ok``).
    idle : Signal(), out
        Nothing reserved, queued or in the adder.
    """

    def __init__(self, adder: Module, contexts: int, depth: int, tag_bits: int) -> None:
        self.submodules.add = add = adder
        if contexts <= add.latency:  # (so there are at least two)
            raise ValueError(f"contexts ({contexts}) must exceed the adder latency ({add.latency})")
        if contexts & (contexts - 1) or depth < 1 or depth & (depth - 1):
            raise ValueError(f"contexts ({contexts}) and depth ({depth}) must be powers of two")
        cb, db = contexts.bit_length() - 1, depth.bit_length() - 1
        self.latency = lat = add.latency
        self.turn = lat + 1
        self.window = lat + 4
        self.reserve = Signal()
        self.reserve_sel = Signal(contexts)
        self.room = [Signal(reset=1, name=f"room{j}") for j in range(contexts)]
        self.in_valid, self.in_first, self.in_last = Signal(), Signal(), Signal()
        self.in_ctx = Signal(cb)
        self.in_term, self.in_init = Signal(32), Signal(32)
        self.in_tag = Signal(tag_bits)
        self.out_ok = Signal()
        self.out_valid = Signal()
        self.out_sum = Signal(32)
        self.out_tag = Signal(tag_bits)
        self.idle = Signal(reset=1)

        # # #

        # -- the queues: one memory, context j's entries at j * depth .. (j + 1) * depth - 1 --
        width = 32 + 32 + tag_bits + 2  # term, init, tag, first, last
        mem = _LutMemory(width, contexts * depth)
        # The read port registers the data (not the address), so the LUT RAM's read is in the
        # cycle after the pick and the adder's operands come straight from a register.
        wr, rd = mem.get_port(write_capable=True), mem.get_port(mode=READ_FIRST)
        self.specials += mem, wr, rd
        wrp = [Signal(db, name=f"wrp{j}") for j in range(contexts)]
        rdp = [Signal(db, name=f"rdp{j}") for j in range(contexts)]
        count = [Signal(db + 1, name=f"count{j}") for j in range(contexts)]
        held = [Signal(db + 1, name=f"held{j}") for j in range(contexts)]  # reserved, not taken

        # -- the pick: a context with a term queued and no add in flight, in rotating priority --
        # picked[0] is the previous cycle's pick (one-hot; its queue is read now), picked[i]
        # the one i cycles before that. A context picked in cycle t can be picked again in
        # t + latency + 1: its term then reaches the adder in the cycle its sum is back in acc.
        picked = [Signal(contexts, name=f"picked{i}") for i in range(max(lat - 1, 1))]
        # ready: queued and not picked in the last `latency` cycles (registered, the pick of
        # this cycle included, so that the pick is a function of flip-flops only).
        ready = Signal(contexts)
        # Rotating priority: the contexts at or above a position that moves up one per cycle
        # (`upper`, a thermometer) come first, each part in index order. `beats{j}` (a bit per
        # other context: it comes before context j) is registered for the next position, so
        # the pick is one AND-OR per context: a ready context not beaten by another ready one.
        full = 2**contexts - 1
        upper, upper_next = Signal(contexts, reset=full), Signal(contexts)
        self.comb += upper_next.eq(Mux(upper[-1] & ~upper[-2], full, upper << 1))
        self.sync += upper.eq(upper_next)

        def before(i: int, j: int, u: Signal) -> object:
            return ~(u[j] & ~u[i]) if i < j else u[i] & ~u[j]

        grant = Signal(contexts)  # the pick if out_ok
        picked_now = Signal(contexts)
        for j in range(contexts):
            others = [i for i in range(contexts) if i != j]
            # (at the reset position, the lower contexts come first)
            bj = Signal(contexts - 1, reset=(1 << j) - 1, name=f"beats{j}")
            self.sync += [bj[n].eq(before(i, j, upper_next)) for n, i in enumerate(others)]
            self.comb += grant[j].eq(
                ready[j] & ~reduce(or_, [ready[i] & bj[n] for n, i in enumerate(others)])
            )
        self.comb += picked_now.eq(Mux(self.out_ok, grant, 0))
        sel, sel_v = Signal(cb), Signal()  # picked[0] in binary, and whether there was a pick
        self.sync += [
            picked[0].eq(picked_now),
            sel_v.eq((ready != 0) & self.out_ok),
            *[picked[i].eq(picked[i - 1]) for i in range(1, len(picked))],
            # one-hot to binary: bit b of the index is the OR of the grants with bit b set
            *[
                sel[b].eq(reduce(or_, [grant[j] for j in range(contexts) if j >> b & 1]))
                for b in range(cb)
            ],
        ]
        cooling = picked[: lat - 1]  # earlier picks still in flight one cycle from now
        self.comb += [
            wr.adr.eq(Cat(Array(wrp)[self.in_ctx], self.in_ctx)),
            # The write port's read side is not used (the read port has its own).
            Signal(width, name="wr_dat_r_unused").eq(wr.dat_r),
            wr.dat_w.eq(Cat(self.in_term, self.in_init, self.in_tag, self.in_first, self.in_last)),
            wr.we.eq(self.in_valid),
            rd.adr.eq(Cat(Array(rdp)[sel], sel)),
        ]
        busy_parts = []
        for j in range(contexts):
            put = self.in_valid & (self.in_ctx == j)
            got = picked[0][j]
            res = self.reserve & self.reserve_sel[j]
            count_next = Signal(db + 1, name=f"count_next{j}")
            held_next = Signal(db + 1, name=f"held_next{j}")
            in_flight = reduce(or_, [p[j] for p in cooling], picked_now[j])
            self.comb += [
                count_next.eq(count[j] + put - got),
                held_next.eq(held[j] + res - got),
            ]
            self.sync += [
                If(put, wrp[j].eq(wrp[j] + 1)),
                If(got, rdp[j].eq(rdp[j] + 1)),
                count[j].eq(count_next),
                ready[j].eq((count_next != 0) & ~in_flight),
                held[j].eq(held_next),
                # Room for one more next cycle, whatever is reserved in this one (at most one),
                # so the caller can register its decision for the next cycle without a loop
                # through its own reservation: held < depth - 1, registered with held.
                self.room[j].eq(held_next < depth - 1),
            ]
            busy_parts.append(held[j] != 0)

        # -- the adder loop: the read word is registered once more, and the adder takes it in
        # the cycle after; sums are back `latency` later. That register keeps the memory's
        # read out of the adder's first stage where the queues are block RAM (its slow
        # clock-to-output: the 1-lane shell's routed ECP5 critical path). Every pick is
        # delayed alike, so a context is still picked again no sooner than its sum is back. --
        v_r, ctx_r = Signal(), Signal(cb)  # the read cycle
        v_i, ctx_i = Signal(), Signal(cb)  # the operands' cycle
        word = Signal(width, reset_less=True)
        self.sync += [v_r.eq(sel_v), ctx_r.eq(sel), v_i.eq(v_r), ctx_i.eq(ctx_r), word.eq(rd.dat_r)]
        term, init, tag, first, last = Signal(32), Signal(32), Signal(tag_bits), Signal(), Signal()
        self.comb += Cat(term, init, tag, first, last).eq(word)
        acc = [Signal(32, name=f"acc{j}") for j in range(contexts)]
        self.comb += [
            add.a.eq(Mux(first, init, Array(acc)[ctx_i])),
            add.b.eq(term),
        ]
        # Valid, context, last and tag travel beside the adder's stages.
        v, c, lst, tg = v_i, ctx_i, last, tag
        in_adder = [v_r, v_i]
        for _ in range(lat):
            v2, c2, l2, t2 = Signal(), Signal(len(c)), Signal(), Signal(tag_bits)
            self.sync += [v2.eq(v), c2.eq(c), l2.eq(lst), t2.eq(tg)]
            v, c, lst, tg = v2, c2, l2, t2
            in_adder.append(v)
        self.sync += [If(v & (c == j), acc[j].eq(add.r)) for j in range(contexts)]
        self.comb += [
            self.out_valid.eq(v & lst),
            self.out_sum.eq(add.r),
            self.out_tag.eq(tg),
        ]
        # Idle: nothing held (held counts queued terms too, until their read), reserved, read
        # or in the adder. Registered, so it rises a cycle late, never early.
        self.sync += self.idle.eq(~(Cat(*busy_parts, self.reserve, sel_v, *in_adder) != 0))
