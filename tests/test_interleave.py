"""The interleaved accumulator on its own, in Migen's simulator, against a Python model.

The adder is replaced by an order-sensitive pipelined operation, ``3 * a + b`` (mod 2**32), so
a term added out of order, twice or not at all changes the sum. Chains of random lengths go to
contexts as the lane assigns them (a group of ``k`` chains per row on consecutive contexts);
terms are reserved only when ``room`` allows, arrive a fixed pipeline delay later, and
``out_ok`` drops at random (the write queue filling up).
"""

from __future__ import annotations

import random

import pytest
from migen import Module, Signal, run_simulation

from fiberflow.overlay.lanes.interleave import InterleavedAccumulator

MASK = 0xFFFFFFFF


class _Affine(Module):
    """``r = 3 * a + b`` after ``latency`` cycles: an order-sensitive stand-in for the adder."""

    def __init__(self, latency: int) -> None:
        self.latency = latency
        self.a, self.b, self.r = Signal(32), Signal(32), Signal(32)
        v = Signal(32)
        self.comb += v.eq(self.a * 3 + self.b)
        for _ in range(latency):
            nxt = Signal(32)
            self.sync += nxt.eq(v)
            v = nxt
        self.comb += self.r.eq(v)


def _chains(rng: random.Random, rows: int, k: int, contexts: int) -> list[tuple]:
    """(context, init, terms, tag) per chain, in the order the lane issues their terms."""
    out, ctx = [], 0
    for r in range(rows):
        n = rng.choice([1, 1, 2, 3, 5, 8, 13, 30])
        row = []
        for c in range(k):
            terms = [rng.getrandbits(32) for _ in range(n)]
            row.append(((ctx + c) % contexts, rng.getrandbits(32), terms, (r * k + c) & 0xFF))
        out.append(row)
        ctx = (ctx + k) % contexts
    return out


def _run(
    latency: int,
    contexts: int,
    depth: int,
    rows: list[list[tuple]],
    rng: random.Random,
    p_ok: float,
    p_issue: float = 0.9,
) -> int:
    """Run the chains of ``rows`` (as :func:`_chains` gives them) through an accumulator,
    check every emitted sum against the model, and return the cycles it took."""
    dut = InterleavedAccumulator(_Affine(latency), contexts, depth, tag_bits=8)
    # The lane's item order: for each row, term q of every chain c, c fastest.
    items = []
    for row in rows:
        for q in range(len(row[0][2])):
            for ctx, init, terms, tag in row:
                items.append((ctx, terms[q], init, q == 0, q == len(terms) - 1, tag))
    want = {}
    for row in rows:
        for _, init, terms, tag in row:
            acc = init
            for t in terms:
                acc = (3 * acc + t) & MASK
            want[tag] = acc
    delay = 4  # cycles from reservation to arrival, as the lane's stages A..E and multiplier
    got: dict[int, int] = {}
    cycles = 0

    def bench():  # type: ignore[no-untyped-def]
        nonlocal cycles
        pipe = [None] * delay
        i = 0
        while len(got) < len(want) or not (yield dut.idle):
            cycles += 1
            assert cycles < 20_000, "accumulator stuck"
            arriving = pipe.pop(0)
            issue = None
            # `room` says a term may be reserved in the next cycle, which is when the
            # simulator applies this bench's writes: terms of one chain can go back to back.
            if i < len(items) and rng.random() < p_issue and (yield dut.room[items[i][0]]):
                issue = items[i]
                i += 1
            pipe.append(issue)
            yield dut.reserve.eq(issue is not None)
            yield dut.reserve_sel.eq(1 << issue[0] if issue else 0)
            yield dut.in_valid.eq(arriving is not None)
            if arriving:
                ctx, term, init, first, last, tag = arriving
                yield dut.in_ctx.eq(ctx)
                yield dut.in_term.eq(term)
                yield dut.in_init.eq(init)
                yield dut.in_first.eq(first)
                yield dut.in_last.eq(last)
                yield dut.in_tag.eq(tag)
            yield dut.out_ok.eq(rng.random() < p_ok)
            yield
            if (yield dut.out_valid):
                tag = yield dut.out_tag
                assert tag not in got, f"chain {tag} emitted twice"
                got[tag] = yield dut.out_sum
        assert i == len(items)

    run_simulation(dut, bench())
    assert got == want
    return cycles


@pytest.mark.parametrize(
    "latency, contexts, depth, k",
    [(1, 2, 2, 1), (5, 8, 4, 1), (5, 8, 32, 3), (5, 8, 8, 8), (7, 8, 2, 2)],
)
def test_sums_in_order_under_random_arrivals_and_backpressure(
    latency: int, contexts: int, depth: int, k: int
) -> None:
    rng = random.Random(latency * 100 + depth + k)
    _run(latency, contexts, depth, _chains(rng, 12, k, contexts), rng, p_ok=0.7)


def _long(rng: random.Random, n: int, ctx: int = 0, tag: int = 0) -> list[tuple]:
    """A row of one chain of n terms."""
    return [(ctx, rng.getrandbits(32), [rng.getrandbits(32) for _ in range(n)], tag)]


@pytest.mark.parametrize("latency", [1, 4, 5])
def test_a_lone_chain_gets_an_add_every_latency_plus_one_cycles(latency: int) -> None:
    """One long chain, its terms arriving back to back: each add waits for the previous sum
    (the result is the model's, so no add read a stale sum) and no longer. A fixed
    round-robin over the 8 contexts would take 8 cycles per term."""
    rng = random.Random(latency)
    n = 60
    cycles = _run(latency, 8, 8, [_long(rng, n)], rng, p_ok=1.0, p_issue=1.0)
    assert n * (latency + 1) <= cycles <= n * (latency + 1) + 20


def test_long_chains_side_by_side_share_the_adder() -> None:
    """Long chains in several contexts at once, with short rows between them, and the write
    side blocking at random: the sums are the model's, and two chains together take about
    the time of one (each waits only for its own sums)."""
    rng = random.Random(3)
    latency, n = 4, 40
    # a row of two chains (SpMM, k = 2: their terms alternate), then short rows
    pair = _long(rng, n, ctx=0, tag=0) + _long(rng, n, ctx=1, tag=1)
    rows = [pair] + [_long(rng, 1 + j % 3, ctx=2 + j % 6, tag=2 + j) for j in range(12)]
    _run(latency, 8, 8, rows, rng, p_ok=0.6)
    two = _run(latency, 8, 64, [pair], rng, p_ok=1.0, p_issue=1.0)
    assert two <= n * (latency + 1) + 20


def test_contexts_must_exceed_the_adder_latency() -> None:
    with pytest.raises(ValueError, match="exceed the adder latency"):
        InterleavedAccumulator(_Affine(8), 8, 16, 8)
