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

from fiberflow.overlay.interleave import InterleavedAccumulator

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


def _run(latency: int, contexts: int, depth: int, k: int, seed: int, p_ok: float) -> None:
    rng = random.Random(seed)
    dut = InterleavedAccumulator(_Affine(latency), contexts, depth, tag_bits=8)
    rows = _chains(rng, 12, k, contexts)
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

    def bench():  # type: ignore[no-untyped-def]
        pipe = [None] * delay
        i, cycles, last_ctx = 0, 0, None
        while len(got) < len(want) or not (yield dut.idle):
            cycles += 1
            assert cycles < 20_000, "accumulator stuck"
            arriving = pipe.pop(0)
            issue = None
            if i < len(items) and rng.random() < 0.9:
                ctx = items[i][0]
                # The simulator applies this bench's writes a cycle late, so `room` does not
                # yet count the previous cycle's reservation: skip a second one in a row to
                # the same context (the lane reserves in the cycle it reads `room`).
                if (yield dut.room[ctx]) and ctx != last_ctx:
                    issue = items[i]
                    i += 1
            last_ctx = issue[0] if issue else None
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


@pytest.mark.parametrize(
    "latency, contexts, depth, k",
    [(1, 2, 2, 1), (5, 8, 4, 1), (5, 8, 32, 3), (5, 8, 8, 8), (7, 8, 2, 2)],
)
def test_sums_in_order_under_random_arrivals_and_backpressure(
    latency: int, contexts: int, depth: int, k: int
) -> None:
    _run(latency, contexts, depth, k, seed=latency * 100 + depth + k, p_ok=0.7)


def test_contexts_must_exceed_the_adder_latency() -> None:
    with pytest.raises(ValueError, match="exceed the adder latency"):
        InterleavedAccumulator(_Affine(8), 8, 16, 8)
