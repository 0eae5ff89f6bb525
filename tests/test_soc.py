"""The Migen shell: parameters, ports, and the DMA engine against a Python AXI slave model
with random backpressure (Migen's simulator, no Verilator)."""

from __future__ import annotations

import random

import pytest

migen = pytest.importorskip("migen")

from migen import Memory  # noqa: E402
from migen.sim import passive, run_simulation  # noqa: E402

from fiberflow.overlay.dma import DMAEngine  # noqa: E402
from fiberflow.overlay.top import ShellConfig, verilog  # noqa: E402


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
    bursts: INCR, full width, at most 16 beats, never across 4 KiB, WLAST on the last beat."""

    def __init__(self, axi, mem: bytearray, bus_bytes: int, rng: random.Random) -> None:
        self.axi, self.mem, self.bb, self.rng = axi, mem, bus_bytes, rng
        self.reads: list[list[int]] = []
        self.writes: list[list[int]] = []
        self.bursts = 0

    def _check(self, addr: int, length: int, size: int) -> None:
        assert size == self.bb.bit_length() - 1
        assert length < 16
        assert addr // 4096 == (addr + (length + 1) * self.bb - 1) // 4096, "crosses 4 KiB"
        self.bursts += 1

    def gen(self):
        a, rng = self.axi, self.rng
        w_beat = 0
        b_pending = 0
        while True:
            yield a.ar.ready.eq(rng.random() < 0.6)
            yield a.aw.ready.eq(rng.random() < 0.6)
            yield a.w.ready.eq(bool(self.writes) and rng.random() < 0.6)
            if (yield a.ar.valid) and (yield a.ar.ready):
                addr, length = (yield a.ar.addr), (yield a.ar.len)
                self._check(addr, length, (yield a.ar.size))
                self.reads.append([addr, length + 1, 0])
            if (yield a.aw.valid) and (yield a.aw.ready):
                addr, length = (yield a.aw.addr), (yield a.aw.len)
                self._check(addr, length, (yield a.aw.size))
                self.writes.append([addr, length + 1, 0])
            if (yield a.w.valid) and (yield a.w.ready):
                addr, beats, _ = self.writes[0]
                data = yield a.w.data
                off = addr + w_beat * self.bb
                self.mem[off : off + self.bb] = data.to_bytes(self.bb, "little")
                w_beat += 1
                assert (yield a.w.last) == (w_beat == beats)
                if w_beat == beats:
                    self.writes.pop(0)
                    w_beat = 0
                    b_pending += 1
            # (A testbench's writes take effect at the next clock edge, like sync logic.)
            if (yield a.b.valid) and (yield a.b.ready):
                b_pending -= 1
            yield a.b.valid.eq(b_pending > 0)
            # Read data: keep valid until taken.
            if (yield a.r.valid) and (yield a.r.ready):
                self.reads[0][2] += 1
                if self.reads[0][2] == self.reads[0][1]:
                    self.reads.pop(0)
                yield a.r.valid.eq(0)
            elif not (yield a.r.valid) and self.reads and rng.random() < 0.7:
                addr, beats, done = self.reads[0]
                off = addr + done * self.bb
                yield a.r.data.eq(int.from_bytes(self.mem[off : off + self.bb], "little"))
                yield a.r.last.eq(done == beats - 1)
                yield a.r.resp.eq(0)
                yield a.r.valid.eq(1)
            yield


@pytest.mark.parametrize(("bus_bits", "seed"), [(64, 1), (128, 2)])
def test_dma_round_trip_matches_the_model(bus_bits: int, seed: int) -> None:
    bb = bus_bits // 8
    rng = random.Random(seed)
    mem = bytearray(rng.randbytes(3 * 4096))
    dma = DMAEngine(bus_bits)
    buf = Memory(bus_bits, 64)
    port = buf.get_port(write_capable=True)
    dma.specials += buf, port
    dma.comb += [
        port.adr.eq(dma.buf_adr),
        port.we.eq(dma.buf_we),
        port.dat_w.eq(dma.buf_dat_w),
        dma.buf_dat_r.eq(port.dat_r),
    ]
    slave = AxiSlaveModel(dma.axi, mem, bb, rng)
    src, length, dst = 4096 - 5 * bb, 40 * bb, 2 * 4096 - 3 * bb  # both cross a 4 KiB line
    expected = bytes(mem[src : src + length])

    def transfer(ddr, to_ddr, zero=0, local=2 * bb, nbytes=length):
        yield dma.ddr_addr.eq(ddr)
        yield dma.local_addr.eq(local)
        yield dma.length.eq(nbytes)
        yield dma.to_ddr.eq(to_ddr)
        yield dma.zero.eq(zero)
        yield dma.go.eq(1)
        yield
        yield dma.go.eq(0)
        for _ in range(3000):
            yield
            if not (yield dma.busy):
                break
        assert (yield dma.done) and not (yield dma.error)

    def master():
        yield from transfer(src, 0)
        yield from transfer(dst, 1)
        # Zero-fill 3 words in the middle of the buffer, then write the buffer out again.
        bursts = slave.bursts
        yield from transfer(0, 0, zero=1, local=5 * bb, nbytes=3 * bb)
        assert slave.bursts == bursts  # no DDR access
        yield from transfer(4096, 1)

    run_simulation(dma, [master(), passive(slave.gen)()])
    assert bytes(mem[dst : dst + length]) == expected
    filled = expected[: 3 * bb] + bytes(3 * bb) + expected[6 * bb :]
    assert bytes(mem[4096 : 4096 + length]) == filled
    assert slave.bursts >= 2 * 3  # split at 16 beats and at 4 KiB
    assert not slave.reads and not slave.writes
