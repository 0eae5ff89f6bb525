"""A reset in the middle of a burst: the DMA engines drain what they have on the bus before they
are reset, so no beat of an aborted transfer reaches a later one.

The DDR model hangs after a chosen number of data beats, so the job's watchdog and the host's
reset land inside a read burst or a write burst; once the reset has healed the DDR, the engines
drain and the next job must be exact. The model also checks every reset itself
(``RtlShell.stale_transfers``: no burst left on a port when the host releases the reset, no
beat or write response moved afterwards for a burst issued before it).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.errors import DeviceError, DeviceTimeoutError
from fiberflow.overlay import regmap
from fiberflow.overlay.regmap import HOST

pytestmark = pytest.mark.rtl

rtl = pytest.importorskip("fiberflow.host.devices.rtl")
top = pytest.importorskip("fiberflow.overlay.shell.top")

from test_rtl_device import same_bits  # noqa: E402

COPY = next(c.value for c in regmap.OPCODES if c.name == "COPY")
CTRL = HOST.offset("CTRL")
DRAINED = HOST.reg("CTRL").field("DRAINED").mask
CPU_RESET = HOST.reg("CTRL").field("CPU_RESET").mask
BEAT = 8  # bytes per beat of the default 64-bit bus
DESCRIPTOR_BEATS = 32 // BEAT  # the firmware reads the job descriptor first
COPY_BYTES = 1024  # one tile: the firmware reads it all, then writes it all


@pytest.fixture(scope="module")
def shell():  # type: ignore[no-untyped-def]
    s = rtl.RtlShell(top.ShellConfig(kernels=()))
    s.load_firmware()
    yield s
    s.close()


def copy_job(s, src, dst, nbytes, timeout=0):  # type: ignore[no-untyped-def]
    job = s.alloc(32)
    job.view(np.uint32)[:] = [regmap.JOB_MAGIC, COPY, src.address, dst.address, nbytes, 0, 0,
                              timeout]  # fmt: skip
    return job


def run_copy(s, seed):  # type: ignore[no-untyped-def]
    """A copy job, checked to be exact: (source, destination) after it ran."""
    src, dst = s.alloc(COPY_BYTES), s.alloc(COPY_BYTES)
    src.array[:] = np.random.default_rng(seed).integers(1, 256, COPY_BYTES, dtype=np.uint8)
    job = copy_job(s, src, dst, COPY_BYTES)
    s.wait(s.submit(job), max_cycles=500_000)
    s.free(job)
    assert np.array_equal(dst.array, src.array)
    return src, dst


@pytest.mark.parametrize(
    "beats, where",
    [
        (DESCRIPTOR_BEATS + 16 + 5, "read"),  # 5 beats into the second read burst
        (DESCRIPTOR_BEATS + COPY_BYTES // BEAT + 16 + 5, "write"),  # and of the write bursts
    ],
)
@pytest.mark.parametrize("by", ["firmware", "host"])
def test_a_reset_mid_burst_leaves_nothing_for_the_next_job(shell, beats, where, by) -> None:  # type: ignore[no-untyped-def]
    """The job ends in the firmware's DMA watchdog (it drops its queue, the transfer still
    runs) or in the host's timeout (the firmware still waits on the transfer)."""
    s = shell
    stale, protocol = s.stale_transfers, s.protocol_errors
    src, dst = s.alloc(COPY_BYTES), s.alloc(COPY_BYTES)
    src.array[:] = np.random.default_rng(1).integers(1, 256, COPY_BYTES, dtype=np.uint8)
    job = copy_job(s, src, dst, COPY_BYTES, timeout=5_000 if by == "firmware" else 0)
    s.hang_ddr_after(beats)
    error = DeviceError if by == "firmware" else DeviceTimeoutError
    with pytest.raises(error, match="DMA_TIMEOUT" if by == "firmware" else "did not finish"):
        s.wait(s.submit(job), max_cycles=500_000 if by == "firmware" else 20_000)
    # The DDR model: nothing left in flight when the host released the reset.
    assert s.stale_transfers == stale
    # The aborted copy's destination holds what it held or the copy's own bytes: the drain's
    # owed write beats carry no strobes, and no later job's data lands here.
    done = dst.array != 0
    assert np.array_equal(dst.array[done], src.array[done])
    if where == "read":
        assert not done.any()
    # Jobs after the reset are exact, and the DDR model saw no beat cross the reset.
    for seed in (2, 3):
        src2, dst2 = run_copy(s, seed)
        s.free(src2), s.free(dst2)
    assert np.array_equal(dst.array[done], src.array[done]) and (dst.array[~done] == 0).all()
    assert s.stale_transfers == stale
    assert s.protocol_errors == protocol
    for b in (src, dst, job):
        s.free(b)


def test_drained_is_set_only_while_the_engines_are_held(shell) -> None:  # type: ignore[no-untyped-def]
    s = shell
    assert s.read_reg(CTRL) & DRAINED == 0  # running
    s.write_reg(CTRL, CPU_RESET)
    assert s.poll(CTRL, DRAINED, DRAINED, 1000) is not None
    s.load_firmware()
    assert s.read_reg(CTRL) & (DRAINED | CPU_RESET) == 0
    run_copy(s, 4)


def test_an_engine_that_cannot_drain_is_named(shell) -> None:  # type: ignore[no-untyped-def]
    s = shell
    src, dst = s.alloc(COPY_BYTES), s.alloc(COPY_BYTES)
    job = copy_job(s, src, dst, COPY_BYTES, timeout=100_000)
    s.submit(job)
    s.hang_ddr_after(DESCRIPTOR_BEATS + 7)
    s.step(2_000)
    s.write_reg(CTRL, CPU_RESET)  # the DDR stays hung: the engine cannot finish its burst
    with pytest.raises(DeviceError, match=r"DMA engine\(s\) 0 \(AXI port m_axi0\) did not"):
        s.driver._hold()
    s.reset()  # heals the DDR: the engine drains and the shell runs again
    run_copy(s, 5)


# -- the rtl device: an SpMV cut short, then SpMV bit for bit with the emulator --------------


@pytest.fixture(scope="module")
def dev():  # type: ignore[no-untyped-def]
    d = ff.open("rtl")
    yield d
    d.close()


@pytest.mark.parametrize("part", ["read", "write"])
def test_spmv_after_a_reset_mid_burst_equals_the_emulator(dev, part) -> None:  # type: ignore[no-untyped-def]
    emu = ff.open("emu")
    A = sp.csr_array(sp.random_array((600, 500), density=0.02, rng=3, dtype=np.float32))
    x = np.random.default_rng(4).standard_normal(500).astype(np.float32)
    want = ff.spmv(A, x, device=emu)
    h = dev.put(A)
    assert same_bits(ff.spmv(h, x, device=dev), want)
    c = dev.shell.counters()
    beats = c.dma_bytes // BEAT
    # A read burst early in the job, or one of the last write bursts (y goes out last).
    dev.inject("hang_ddr", after_beats=37 if part == "read" else beats - 11)
    stale = dev.shell.stale_transfers
    with pytest.raises(DeviceError):
        ff.spmv(h, x, device=dev, timeout=30)
    for seed in (5, 6):
        x2 = np.random.default_rng(seed).standard_normal(500).astype(np.float32)
        assert same_bits(ff.spmv(h, x2, device=dev, timeout=30), ff.spmv(A, x2, device=emu))
    assert dev.shell.stale_transfers == stale
    h.free()
