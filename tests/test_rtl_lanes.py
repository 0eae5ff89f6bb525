"""The shell with real SpMV/SpMM lanes in its seats: one tile at a time through DMA, the lane
and DMA again, driven by the firmware's bring-up jobs (DMA, LANE_RUN), checked bit for bit
against the lane's reference model (which the lane's own tests hold to the emulator).

These tests sequence one tile the way the firmware's job walker does (tile and x slice into
the lane's buffers, y block in, configure, run, y block out), one bring-up job at a time; the
walker itself is tested through the rtl device (tests/test_rtl_device.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fiberflow.errors import DeviceError
from fiberflow.overlay import regmap

pytestmark = pytest.mark.rtl

rtl = pytest.importorskip("fiberflow.host.devices.rtl")
top = pytest.importorskip("fiberflow.overlay.shell.top")
lane_sim = pytest.importorskip("fiberflow.overlay.sim.lane_sim")
lane_mod = pytest.importorskip("fiberflow.overlay.lanes.lane")

OP = {c.name: c.value for c in regmap.OPCODES}
TO_DDR = regmap.CPU.reg("DMA_CTRL").field("TO_DDR").mask
ZERO = regmap.CPU.reg("DMA_CTRL").field("ZERO").mask
CFG = top.ShellConfig(lanes=4, dma_engines=2, kernels=("spmv", "spmm"), value_type="fp32")


@pytest.fixture(scope="module")
def shell():
    s = rtl.RtlShell(CFG)
    s.load_firmware()
    yield s
    s.close()


def run_job(s, opcode, src=0, dst=0, length=0, arg0=0, arg1=0, timeout=0):
    job = s.alloc(32)
    job.view(np.uint32)[:] = [regmap.JOB_MAGIC, opcode, src, dst, length, arg0, arg1, timeout]
    try:
        return s.wait(s.submit(job), max_cycles=2_000_000)
    finally:
        s.free(job)


def to_ddr(s, data: bytes):
    buf = s.alloc(len(data) + 16)
    buf.array[: len(data)] = np.frombuffer(data, np.uint8)
    return buf, -(-len(data) // 16) * 16


def local(region: int, offset: int = 0) -> int:
    return region << regmap.LOCAL_REGION_SHIFT | offset


def run_tile(s, lane, t, xs, y0, kernel, k):
    """One tile on one lane, sequenced as the firmware will; returns the y block's bits."""
    e, rt, rx, ry = CFG.lane_regions(lane)
    bufs = []
    for data, region in ((t.data, rt), (xs.tobytes(), rx), (y0.tobytes(), ry)):
        buf, n = to_ddr(s, data)
        bufs.append(buf)
        run_job(s, OP["DMA"], buf.address, local(region), n, arg0=e)
    words = t.config(0, 0, 0, kernel, k)
    cfg = np.array([words[n] for n in lane_mod.CONFIG_WORDS], np.uint32)
    cbuf, _ = to_ddr(s, cfg.tobytes())
    s.clear_counters()
    run_job(s, OP["LANE_RUN"], cbuf.address, arg0=lane)
    busy = s.counters().lane_busy
    out = s.alloc(y0.nbytes + 16)
    run_job(s, OP["DMA"], out.address, local(ry), -(-y0.nbytes // 16) * 16, e, TO_DDR)
    got = out.view(np.uint32, y0.size).reshape(y0.shape).copy()
    for b in [*bufs, cbuf, out]:
        s.free(b)
    return got, busy


def matrix(rng, m, n, dtype):
    A = sp.random(m, n, density=0.25, format="csr", random_state=rng)
    if dtype == np.int32:
        A.data = rng.integers(-1000, 1000, A.nnz).astype(np.float64)
    return sp.csr_array(A.astype(dtype))


@pytest.mark.parametrize(
    ("lane", "kernel", "k", "dtype"),
    [(0, "spmv", 1, np.float32), (3, "spmv", 1, np.float32), (1, "spmm", 3, np.float32)],
)
def test_one_tile_through_dma_and_lane(shell, lane, kernel, k, dtype) -> None:
    import fiberflow as ff

    rng = np.random.default_rng(lane * 10 + k)
    A = matrix(rng, 40, 30, dtype)
    img = ff.pack(ff.Tensor.from_scipy(A), tile=(64, 64))
    t = lane_sim.tile_operands(img, 0)
    X = rng.standard_normal((30, k)).astype(np.float32)
    xs = X.view(np.uint32)
    y0 = rng.standard_normal((40, k)).astype(np.float32).view(np.uint32)  # accumulate onto
    got, busy = run_tile(shell, lane, t, xs, y0, kernel, k)
    want = lane_sim.reference(t, xs, y0)
    assert np.array_equal(got, want)
    assert busy[lane] >= A.nnz * k and all(b == 0 for i, b in enumerate(busy) if i != lane)
    # And close to scipy (float32 sums of float32 products, in row order).
    ref = A.toarray().astype(np.float64) @ X + y0.view(np.float32)
    assert np.allclose(got.view(np.float32), ref, rtol=1e-4, atol=1e-4)


def test_lane_refusing_its_configuration_is_an_error(shell) -> None:
    cfg = np.zeros(8, np.uint32)
    cfg[4] = lane_mod.mode_word("spmm", "fp32", 2)  # k = 0: refused
    buf, _ = to_ddr(shell, cfg.tobytes())
    with pytest.raises(DeviceError, match="LANE_ERROR"):
        run_job(shell, OP["LANE_RUN"], buf.address, arg0=2)
    run_job(shell, OP["NOP"])


def test_lane_run_timeout_reports_the_lane_done_mask(shell) -> None:
    """LANE_TIMEOUT's ERROR_INFO is the LANE_DONE register (docs/registers.md): the held lane's
    bit is clear, those of lanes that finished a tile just before are set (the lane's own
    status word, BUSY = bit 0, would not set bit 3)."""
    import fiberflow as ff

    rng = np.random.default_rng(5)
    img = ff.pack(ff.Tensor.from_scipy(matrix(rng, 40, 30, np.float32)), tile=(64, 64))
    t = lane_sim.tile_operands(img, 0)
    e, rt, _, _ = CFG.lane_regions(2)
    buf, n = to_ddr(shell, t.data)
    run_job(shell, OP["DMA"], buf.address, local(rt), n, arg0=e)
    words = t.config(0, 0, 0, "spmv", 1)
    cfg, _ = to_ddr(shell, np.array([words[w] for w in lane_mod.CONFIG_WORDS], np.uint32).tobytes())
    xs = rng.standard_normal(30).astype(np.float32).view(np.uint32)
    for lane in (0, 3):  # done
        run_tile(shell, lane, t, xs, np.zeros(40, np.uint32), "spmv", 1)
    shell.hold_lanes(True)
    try:
        with pytest.raises(DeviceError, match=r"LANE_TIMEOUT.*\(info 0x([0-9a-f]+)\)") as err:
            run_job(shell, OP["LANE_RUN"], cfg.address, arg0=2, timeout=20_000)
    finally:
        shell.hold_lanes(False)
    info = int(str(err.value).rsplit("info 0x", 1)[1].split(")")[0], 16)
    assert info & 0b1001 == 0b1001 and not info & 0b0100
    shell.free(buf)
    shell.free(cfg)
    run_job(shell, OP["NOP"])


def test_zero_fill_and_regions_of_each_engine(shell) -> None:
    for lane in (0, 1):
        e, _, _, ry = CFG.lane_regions(lane)
        data = np.arange(64, dtype=np.uint32)
        src, n = to_ddr(shell, data.tobytes())
        run_job(shell, OP["DMA"], src.address, local(ry), n, arg0=e)
        run_job(shell, OP["DMA"], 0, local(ry, 64), 64, e, ZERO)
        out = shell.alloc(n)
        run_job(shell, OP["DMA"], out.address, local(ry), n, e, TO_DDR)
        want = data.copy()
        want[16:32] = 0
        assert np.array_equal(out.view(np.uint32, 64), want)
