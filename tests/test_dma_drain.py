"""The DMA engine's drain (``halt`` / ``drained``, overlay/shell/dma.py) in Migen's simulator:
halted at random moments while reads and writes run under random backpressure, it finishes every
burst it started with the AXI rules kept (no new address; every R beat taken up to RLAST; the
owed W beats sent, with WLAST on the right beat and no strobes unless the word is the one
meant for that address; every B taken; no payload changes while offered), says ``drained``,
and after a reset runs new transfers exactly."""

from __future__ import annotations

import random

import pytest

migen = pytest.importorskip("migen")

from migen import Memory, Module, ResetInserter, Signal  # noqa: E402
from migen.sim import passive, run_simulation  # noqa: E402
from test_soc import WORDS, engine  # noqa: E402

HALF = WORDS // 2  # reads land in the buffer's low half, writes come from the high


class Bench(Module):
    """An engine reset as the shell resets it: ``halt`` drains it, and it is held in reset
    from the cycle after ``drained`` until ``halt`` falls."""

    def __init__(self, dma, buf: Memory) -> None:
        self.submodules.dma = dma = ResetInserter()(dma)
        self.halt = Signal()
        self.held = Signal()
        self.buf = buf
        self.comb += [dma.halt.eq(self.halt), dma.reset.eq(self.held)]
        self.sync += self.held.eq(self.halt & dma.drained)


class Slave:
    """DDR behind the engine's AXI port, with random gaps on every channel. Honours WSTRB,
    checks WLAST, that a strobe is all or nothing, and that no valid payload changes before
    its handshake; counts new addresses issued while ``halted``."""

    def __init__(self, axi, mem: bytearray, bb: int, rng: random.Random) -> None:
        self.axi, self.mem, self.bb, self.rng = axi, mem, bb, rng
        self.reads: list[list[int]] = []  # [addr, beats, done]
        self.writes: list[list[int]] = []
        self.b_pending = 0
        self.halted = False
        self.allowed: set[str] = set()  # addresses offered before the halt: they still go out
        self.issued_halted = 0
        self.empty_beats = 0
        self.offered: dict[str, tuple[int, ...]] = {}

    def halt(self) -> None:
        self.halted = True
        self.allowed = {c for c in self.offered if c in ("ar", "aw")}

    def _issued(self, name: str) -> None:
        if self.halted:
            if name in self.allowed:
                self.allowed.discard(name)
            else:
                self.issued_halted += 1

    def gen(self):
        a, rng, bb = self.axi, self.rng, self.bb
        w_beat = 0
        offered = self.offered
        channels = {
            "ar": (a.ar, ("addr", "len")),
            "aw": (a.aw, ("addr", "len")),
            "w": (a.w, ("data", "strb", "last")),
        }
        while True:
            yield a.ar.ready.eq(rng.random() < 0.5)
            yield a.aw.ready.eq(rng.random() < 0.5)
            yield a.w.ready.eq(bool(self.writes) and rng.random() < 0.5)
            fired = {}
            for name, (ch, fields) in channels.items():
                if (yield ch.valid):
                    values = []
                    for f in fields:
                        values.append((yield getattr(ch, f)))
                    payload = tuple(values)
                    if name in offered:
                        assert offered[name] == payload, f"{name} changed while offered"
                    fired[name] = bool((yield ch.ready))
                    offered[name] = payload
                    if fired[name]:
                        del offered[name]
                else:
                    assert name not in offered, f"{name} valid dropped before its handshake"
            if fired.get("ar"):
                self._issued("ar")
                self.reads.append([(yield a.ar.addr), (yield a.ar.len) + 1, 0])
            if fired.get("aw"):
                self._issued("aw")
                self.writes.append([(yield a.aw.addr), (yield a.aw.len) + 1])
            if fired.get("w"):
                addr, beats = self.writes[0]
                strb = yield a.w.strb
                assert strb in (0, (1 << bb) - 1), f"partial strobes {strb:#x}"
                if strb:
                    off = addr + w_beat * bb
                    self.mem[off : off + bb] = (yield a.w.data).to_bytes(bb, "little")
                else:
                    self.empty_beats += 1
                w_beat += 1
                assert (yield a.w.last) == (w_beat == beats), "WLAST on the wrong beat"
                if w_beat == beats:
                    self.writes.pop(0)
                    w_beat = 0
                    self.b_pending += 1
            if (yield a.b.valid) and (yield a.b.ready):
                self.b_pending -= 1
            yield a.b.valid.eq(self.b_pending > 0 and rng.random() < 0.6)
            yield a.b.resp.eq(0)
            if (yield a.r.valid) and (yield a.r.ready):
                self.reads[0][2] += 1
                if self.reads[0][2] == self.reads[0][1]:
                    self.reads.pop(0)
                yield a.r.valid.eq(0)
            elif not (yield a.r.valid) and self.reads and rng.random() < 0.6:
                addr, beats, done = self.reads[0]
                off = addr + done * bb
                yield a.r.data.eq(int.from_bytes(self.mem[off : off + bb], "little"))
                yield a.r.last.eq(done == beats - 1)
                yield a.r.resp.eq(0)
                yield a.r.valid.eq(1)
            yield


def commands(rng: random.Random, bb: int, n: int) -> list[tuple[int, int, int, int]]:
    """(ddr, local, bytes, to_ddr). Reads from the low 8 KiB of DDR into the buffer's low half;
    writes of the buffer's high half to the next 8 KiB, DDR word j always from buffer word
    HALF + j % HALF, so any word a write changes has one right value."""
    out = []
    for _ in range(n):
        beats = rng.randrange(1, HALF + 1)
        if rng.random() < 0.5:
            out.append((rng.randrange(0, 8192 // bb - beats) * bb, 0, beats * bb, 0))
        else:
            j = rng.randrange(0, 8192 // bb - HALF)
            j -= j % HALF
            j += rng.randrange(0, HALF - beats + 1)
            out.append((8192 + j * bb, (HALF + j % HALF) * bb, beats * bb, 1))
    return out


def push(dma, ddr: int, local: int, nbytes: int, to_ddr: int):
    for _ in range(10_000):
        if not (yield dma.full):
            break
        yield
    yield dma.ddr_addr.eq(ddr)
    yield dma.local_addr.eq(local)
    yield dma.length.eq(nbytes)
    yield dma.to_ddr.eq(to_ddr)
    yield dma.zero.eq(0)
    yield dma.go.eq(1)
    yield
    yield dma.go.eq(0)
    yield


@pytest.mark.parametrize(("bus_bits", "seed"), [(64, 1), (64, 2), (128, 3), (64, 4), (128, 5)])
def test_a_halt_at_a_random_moment_drains_every_burst(bus_bits: int, seed: int) -> None:
    bb = bus_bits // 8
    rng = random.Random(seed)
    mem = bytearray(rng.randbytes(3 * 8192))
    original = bytes(mem)
    dma, buf, _ = engine(bus_bits, rng, mem)  # its slave model is replaced by Slave below
    bench = Bench(dma, buf)
    dma = bench.dma
    slave = Slave(dma.axi, mem, bb, rng)
    seen = {"halts": 0, "mid_burst": 0}

    def mid_burst() -> bool:
        return any(0 < r[2] for r in slave.reads) or bool(slave.writes)

    def master():
        words = [rng.getrandbits(bus_bits) for _ in range(WORDS)]
        for w in range(WORDS):
            yield bench.buf[w].eq(words[w])
        yield
        for _ in range(6):  # each round: transfers, cut short at a random moment
            for cmd in commands(rng, bb, 6):
                yield from push(dma, *cmd)
            for _ in range(rng.randrange(0, 200)):
                yield
            seen["mid_burst"] += mid_burst()
            yield bench.halt.eq(1)
            yield  # the engine sees halt from this cycle on
            slave.halt()
            for _ in range(2000):
                yield
                if (yield bench.held):
                    break
            else:
                raise AssertionError("the engine never drained")
            assert (yield dma.drained)
            assert not slave.reads and not slave.writes and slave.b_pending == 0
            for _ in range(20):  # held: nothing moves
                yield
                assert not (yield dma.axi.ar.valid) and not (yield dma.axi.aw.valid)
                assert not (yield dma.axi.w.valid)
            seen["halts"] += 1
            yield bench.halt.eq(0)
            slave.halted = False
            for _ in range(3):  # halt falls, then held, then the engine's own drained
                yield
            assert not (yield dma.drained) and not (yield dma.busy)
        # The words the writes changed hold the value meant for them, the others their own.
        for j in range(8192 // bb):
            off = 8192 + j * bb
            got = int.from_bytes(mem[off : off + bb], "little")
            if got != int.from_bytes(original[off : off + bb], "little"):
                assert got == words[HALF + j % HALF], f"DDR word {j} of the write region"
        # After the resets: a read and a write are exact.
        yield from push(dma, 4096, 0, HALF * bb, 0)
        yield from push(dma, 2 * 8192, HALF * bb, HALF * bb, 1)
        for _ in range(5000):
            yield
            if not (yield dma.busy):
                break
        for w in range(HALF):
            off = 4096 + w * bb
            assert (yield bench.buf[w]) == int.from_bytes(mem[off : off + bb], "little")
            off = 2 * 8192 + w * bb
            assert int.from_bytes(mem[off : off + bb], "little") == words[HALF + w]

    run_simulation(bench, [master(), passive(slave.gen)()])
    assert seen["halts"] == 6
    assert slave.issued_halted == 0  # no address first offered after the halt
    assert seen["mid_burst"] >= 3, seen  # most halts land inside a burst
