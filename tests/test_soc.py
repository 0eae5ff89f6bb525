"""The Migen shell: parameters, ports, and the DMA engine against a Python AXI slave model
with random backpressure (Migen's simulator, no Verilator)."""

from __future__ import annotations

import random

import pytest

migen = pytest.importorskip("migen")

from migen import Memory  # noqa: E402
from migen.fhdl.specials import READ_FIRST  # noqa: E402
from migen.sim import passive, run_simulation  # noqa: E402

from fiberflow.overlay.shell.dma import DMAEngine  # noqa: E402
from fiberflow.overlay.shell.top import ShellConfig, verilog  # noqa: E402


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lanes": 0},
        {"lanes": 17},
        {"bus_bits": 32},
        {"value_type": "fp16"},
        {"dma_engines": 5},
        {"tile_bytes": 3000},
    ],
)
def test_bad_parameters_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        ShellConfig(**kwargs)


def test_ports_follow_the_parameters() -> None:
    text = verilog(ShellConfig(bus_bits=128, dma_engines=2, lanes=2))["fiberflow_shell.v"]
    head = text[: text.index(");")]
    assert "input [15:0] s_axil_awaddr" in head
    assert "output [127:0] m_axi1_wdata" in head and "input [127:0] m_axi0_rdata" in head
    assert "m_axi2_" not in head
    assert "input stall_cpu" in head and "picorv32" in text


class AxiSlaveModel:
    """A memory behind an AXI4 slave port, with random ready/valid gaps, checking the master's
    bursts: INCR, full width, at most 16 beats, never across 4 KiB, WLAST on the last beat.
    Bursts touching ``bad`` (a byte range) answer SLVERR; ``stall`` holds AR and AW off."""

    def __init__(self, axi, mem: bytearray, bus_bytes: int, rng: random.Random) -> None:
        self.axi, self.mem, self.bb, self.rng = axi, mem, bus_bytes, rng
        self.reads: list[list[int]] = []
        self.writes: list[list[int]] = []
        self.bursts = 0
        self.bad = (0, 0)
        self.stall = False

    def _check(self, addr: int, length: int, size: int) -> int:
        assert size == self.bb.bit_length() - 1
        assert length < 16
        end = addr + (length + 1) * self.bb
        assert addr // 4096 == (end - 1) // 4096, "crosses 4 KiB"
        self.bursts += 1
        return 2 if addr < self.bad[1] and self.bad[0] < end else 0

    def gen(self):
        a, rng = self.axi, self.rng
        w_beat = 0
        b_pending: list[int] = []
        while True:
            yield a.ar.ready.eq(not self.stall and rng.random() < 0.6)
            yield a.aw.ready.eq(not self.stall and rng.random() < 0.6)
            yield a.w.ready.eq(bool(self.writes) and rng.random() < 0.6)
            if (yield a.ar.valid) and (yield a.ar.ready):
                addr, length = (yield a.ar.addr), (yield a.ar.len)
                resp = self._check(addr, length, (yield a.ar.size))
                self.reads.append([addr, length + 1, 0, resp])
            if (yield a.aw.valid) and (yield a.aw.ready):
                addr, length = (yield a.aw.addr), (yield a.aw.len)
                resp = self._check(addr, length, (yield a.aw.size))
                self.writes.append([addr, length + 1, 0, resp])
            if (yield a.w.valid) and (yield a.w.ready):
                addr, beats, _, resp = self.writes[0]
                data = yield a.w.data
                off = addr + w_beat * self.bb
                if not resp:
                    self.mem[off : off + self.bb] = data.to_bytes(self.bb, "little")
                w_beat += 1
                assert (yield a.w.last) == (w_beat == beats)
                if w_beat == beats:
                    self.writes.pop(0)
                    w_beat = 0
                    b_pending.append(resp)
            # (A testbench's writes take effect at the next clock edge, like sync logic.)
            if (yield a.b.valid) and (yield a.b.ready):
                b_pending.pop(0)
            yield a.b.valid.eq(bool(b_pending) and rng.random() < 0.7)
            yield a.b.resp.eq(b_pending[0] if b_pending else 0)
            # Read data: keep valid until taken.
            if (yield a.r.valid) and (yield a.r.ready):
                self.reads[0][2] += 1
                if self.reads[0][2] == self.reads[0][1]:
                    self.reads.pop(0)
                yield a.r.valid.eq(0)
            elif not (yield a.r.valid) and self.reads and rng.random() < 0.7:
                addr, beats, done, resp = self.reads[0]
                off = addr + done * self.bb
                yield a.r.data.eq(int.from_bytes(self.mem[off : off + self.bb], "little"))
                yield a.r.last.eq(done == beats - 1)
                yield a.r.resp.eq(resp)
                yield a.r.valid.eq(1)
            yield


WORDS = 64  # local buffer of the testbench, in bus words


def engine(bus_bits: int, rng: random.Random, mem: bytearray, depth: int = 4, lanes: int = 0):
    """A DMA engine on a read-first buffer of WORDS bus words, and its AXI slave model."""
    dma = DMAEngine(bus_bits, queue_depth=depth, lanes=lanes)
    buf = Memory(bus_bits, WORDS)
    port = buf.get_port(write_capable=True, mode=READ_FIRST)
    dma.specials += buf, port
    dma.comb += [
        port.adr.eq(dma.buf_adr),
        port.we.eq(dma.buf_we),
        port.dat_w.eq(dma.buf_dat_w),
        dma.buf_dat_r.eq(port.dat_r),
    ]
    return dma, buf, AxiSlaveModel(dma.axi, mem, bus_bits // 8, rng)


class QueueModel:
    """The reference: commands run one after another, in the order they were queued."""

    def __init__(self, mem: bytearray, bus_bytes: int) -> None:
        self.mem, self.bb = mem, bus_bytes
        self.buf = [0] * WORDS

    def run(self, ddr: int, local: int, nbytes: int, to_ddr: int, zero: int) -> None:
        bb, w0 = self.bb, local // self.bb
        for w in range(nbytes // bb):
            a = ddr + w * bb
            if to_ddr:
                self.mem[a : a + bb] = self.buf[w0 + w].to_bytes(bb, "little")
                if zero:
                    self.buf[w0 + w] = 0
            else:
                self.buf[w0 + w] = 0 if zero else int.from_bytes(self.mem[a : a + bb], "little")


def push(dma, ddr: int, local: int, nbytes: int, to_ddr: int = 0, zero: int = 0):
    """Queue one command; returns once the engine has taken it (its status shows it)."""
    yield dma.ddr_addr.eq(ddr)
    yield dma.local_addr.eq(local)
    yield dma.length.eq(nbytes)
    yield dma.to_ddr.eq(to_ddr)
    yield dma.zero.eq(zero)
    yield dma.go.eq(1)
    yield
    yield dma.go.eq(0)
    yield


def wait_idle(dma, cycles: int = 20_000):
    for _ in range(cycles):
        yield
        if not (yield dma.busy):
            return
    raise AssertionError(f"the engine is still busy after {cycles} cycles")


def random_command(rng: random.Random, bb: int, ddr_bytes: int) -> tuple[int, ...]:
    """(ddr, local, bytes, to_ddr, zero): reads, writes, zero fills and write-outs that
    clear, of 0 to 40 beats, often across a 4 KiB line."""
    beats = rng.choice([0, 1, rng.randrange(1, 17), rng.randrange(17, 41)])
    local = rng.randrange(0, WORDS - beats + 1) * bb
    if rng.random() < 0.5:
        ddr = 4096 * rng.randrange(1, ddr_bytes // 4096) - rng.randrange(0, beats + 1) * bb
    else:
        ddr = rng.randrange(0, (ddr_bytes - beats * bb) // bb + 1) * bb
    to_ddr = rng.random() < 0.5
    zero = rng.random() < 0.3
    return ddr, local, beats * bb, int(to_ddr), int(zero)


@pytest.mark.parametrize(("bus_bits", "seed"), [(64, 1), (128, 2), (64, 3)])
def test_dma_queue_matches_the_model(bus_bits: int, seed: int) -> None:
    """Random commands queued at random moments (sometimes until the queue is full), under
    random backpressure: DDR and the buffer end as the in-order reference leaves them, and
    the completion count follows every command."""
    bb = bus_bits // 8
    rng = random.Random(seed)
    mem = bytearray(rng.randbytes(3 * 4096))
    dma, buf, slave = engine(bus_bits, rng, mem)
    model = QueueModel(bytearray(mem), bb)
    commands = [random_command(rng, bb, len(mem)) for _ in range(60)]
    seen = {"full": 0, "max_level": 0}

    def master():
        queued = 0
        for cmd in commands:
            for _ in range(rng.choice([0, 0, 0, 1, 5, 60])):
                yield
            for _ in range(5000):
                if not (yield dma.full):
                    break
                seen["full"] += 1
                yield
            else:
                raise AssertionError("the queue never drained")
            yield from push(dma, *cmd)
            model.run(*cmd)
            queued += 1
            done = yield dma.completed
            assert 0 <= queued - done <= 4 + 1  # queue depth + the running transfer
            seen["max_level"] = max(seen["max_level"], queued - done)
        yield from wait_idle(dma, 50_000)
        assert (yield dma.completed) == len(commands)
        assert not (yield dma.error) and not (yield dma.overflow)
        for w in range(WORDS):
            assert (yield buf[w]) == model.buf[w], f"buffer word {w}"

    run_simulation(dma, [master(), passive(slave.gen)()])
    assert mem == model.mem
    assert not slave.reads and not slave.writes
    assert seen["full"] and seen["max_level"] == 5  # the queue did fill up


@pytest.mark.parametrize("seed", [6, 7])
def test_dma_after_lane_waits_for_its_lane(seed: int) -> None:
    """Commands that wait for a lane (AFTER_LANE), among others, while three lanes go busy and
    idle at random: every command still runs in order with the reference's result, none
    starts unless its lane was idle in the cycle before, and WAITING says when the engine
    holds one back."""
    bb = 8
    rng = random.Random(seed)
    mem = bytearray(rng.randbytes(3 * 4096))
    dma, buf, slave = engine(64, rng, mem, lanes=3)
    model = QueueModel(bytearray(mem), bb)
    commands = [(*random_command(rng, bb, len(mem)), rng.choice([-1, 0, 1, 2])) for _ in range(40)]
    log = {"idle": [], "starts": [], "waiting": 0}

    def lanes():
        idle = 0b111
        for _ in range(40_000):
            if rng.random() < 0.01:
                idle ^= 1 << rng.randrange(3)
            yield dma.lane_idle.eq(idle)
            log["idle"].append(idle)
            yield

    def watch():
        was_active, done = 0, 0
        for cycle in range(40_000):
            active, completed = (yield dma.active), (yield dma.completed)
            # A start: the engine turned active, or a zero-length command finished at once.
            if (active and not was_active) or (completed != done and not was_active):
                log["starts"].append(cycle)
            log["waiting"] += yield dma.waiting
            was_active, done = active, completed
            yield

    def master():
        for *cmd, lane in commands:
            for _ in range(rng.choice([0, 0, 5, 60])):
                yield
            while (yield dma.full):
                yield
            yield dma.after_lane.eq(lane >= 0)
            yield dma.lane.eq(max(lane, 0))
            yield from push(dma, *cmd)
            model.run(*cmd)
        yield dma.after_lane.eq(0)
        for _ in range(30_000):
            if (yield dma.completed) == len(commands):
                break
            yield
        assert (yield dma.completed) == len(commands), "the queue never drained"
        for w in range(WORDS):
            assert (yield buf[w]) == model.buf[w], f"buffer word {w}"

    run_simulation(dma, [master(), passive(lanes)(), passive(watch)(), passive(slave.gen)()])
    assert mem == model.mem
    assert len(log["starts"]) == len(commands)
    for (*_, lane), start in zip(commands, log["starts"], strict=True):
        # (the start is seen a cycle after it was decided, from the lanes of the cycle before)
        assert lane < 0 or log["idle"][start - 2] >> lane & 1, (lane, start)
    assert log["waiting"] > 0


def test_dma_error_stops_the_engine_and_names_the_transfer() -> None:
    bb = 8
    rng = random.Random(4)
    mem = bytearray(rng.randbytes(3 * 4096))
    dma, buf, slave = engine(64, rng, mem)
    slave.bad = (4096 + 64, 4096 + 72)  # one beat of the second transfer's source

    def master():
        yield from push(dma, 0, 0, 32 * bb)  # 1: fine
        yield from push(dma, 4096, 0, 20 * bb)  # 2: SLVERR on one burst
        yield from push(dma, 2 * 4096, 32 * bb, 8 * bb)  # 3: dropped
        yield from wait_idle(dma)
        assert (yield dma.error) and (yield dma.resp) == 2 and not (yield dma.err_to_ddr)
        assert (yield dma.completed) == 2  # the failed transfer finished, the next did not
        assert (yield buf[32]) == 0
        yield from push(dma, 0, 32 * bb, 8 * bb)  # ignored until reset
        for _ in range(100):
            yield
        assert (yield dma.completed) == 2 and not (yield dma.busy) and (yield buf[32]) == 0

    run_simulation(dma, [master(), passive(slave.gen)()])
    assert not slave.reads and not slave.writes  # every burst issued was completed


def test_dma_write_error_and_abort() -> None:
    bb = 8
    rng = random.Random(5)
    mem = bytearray(rng.randbytes(3 * 4096))
    dma, _, slave = engine(64, rng, mem)

    def master():
        slave.stall = True  # the first transfer waits for its address
        yield from push(dma, 0, 0, 16 * bb)
        for _ in range(5):
            yield from push(dma, 4096, 0, 16 * bb, to_ddr=1)
        assert (yield dma.full) and (yield dma.overflow)  # 1 running + 4 queued; one lost
        yield dma.abort.eq(1)
        yield
        yield dma.abort.eq(0)
        slave.stall = False
        yield from wait_idle(dma)
        assert (yield dma.completed) == 1 and not (yield dma.error)
        assert bytes(mem[4096 : 4096 + 16 * bb]) == before  # the writes were dropped
        # The engine takes new commands after an abort; a failing write names its direction.
        slave.bad = (2 * 4096, 2 * 4096 + 8)
        yield from push(dma, 2 * 4096, 0, 4 * bb, to_ddr=1)
        yield from wait_idle(dma)
        assert (yield dma.completed) == 2
        assert (yield dma.error) and (yield dma.err_to_ddr) and (yield dma.resp) == 2

    before = bytes(mem[4096 : 4096 + 16 * bb])
    run_simulation(dma, [master(), passive(slave.gen)()])
