"""The rtl device: bit-exact with the emulator on every test matrix, statistics from the
hardware counters, and faults that end in a clear FiberflowError after which the next call
succeeds. (tests/test_kernels.py runs the device-parametrized kernel tests on rtl as well.)
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import job as jobs

pytestmark = pytest.mark.rtl
pytest.importorskip("fiberflow.host.devices.rtl")

import by_hand  # noqa: E402
from test_kernels import CASES  # noqa: E402


@pytest.fixture(scope="module")
def rtl():  # type: ignore[no-untyped-def]
    dev = ff.open("rtl", dtype=("float32", "int32"))
    yield dev
    dev.close()


@pytest.fixture(scope="module")
def emu():  # type: ignore[no-untyped-def]
    return ff.open("emu")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("case", CASES)
def test_float32_bits_equal_the_emulator(rtl, emu, case: str) -> None:  # type: ignore[no-untyped-def]
    A = CASES[case]()
    r = np.random.default_rng(11)
    x = (r.standard_normal(A.shape[1]) * 1e3).astype(np.float32)
    assert same_bits(ff.spmv(A, x, device=rtl), ff.spmv(A, x, device=emu))
    B = r.standard_normal((A.shape[1], 3)).astype(np.float32)
    assert same_bits(ff.spmm(A, B, device=rtl), ff.spmm(A, B, device=emu))


@pytest.mark.parametrize("case", CASES)
def test_int32_bits_equal_the_emulator(rtl, emu, case: str) -> None:  # type: ignore[no-untyped-def]
    r = np.random.default_rng(12)
    A = sp.csr_array(CASES[case]())
    A.data = r.integers(-(2**31), 2**31, A.nnz).astype(np.int64)
    A = sp.csr_array(A.astype(np.int32))
    x = r.integers(-(2**31), 2**31, A.shape[1]).astype(np.int32)
    assert same_bits(ff.spmv(A, x, device=rtl), ff.spmv(A, x, device=emu))
    B = r.integers(-1000, 1000, (A.shape[1], 2)).astype(np.int32)
    assert same_bits(ff.spmm(A, B, device=rtl), ff.spmm(A, B, device=emu))


def test_unaligned_tiles_and_accumulate(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    """Odd tile shapes put y blocks and x slices off the bus beat (read-modify-write of the
    shared beats); ACCUMULATE loads y. A resident matrix run twice gives the same bits."""
    A = CASES["power law"]()
    x = np.random.default_rng(13).standard_normal(A.shape[1]).astype(np.float32)
    h = rtl.put(A, tile=(3, 5))
    y1 = ff.spmv(h, x, device=rtl)
    assert same_bits(y1, ff.spmv(A, x, device=emu, tile=(3, 5)))
    assert same_bits(ff.spmv(h, x, device=rtl), y1)
    # ACCUMULATE: y starts from given values (descriptor flag, driven directly).
    y0 = np.random.default_rng(14).standard_normal(A.shape[0]).astype(np.float32)
    got = run_accumulate(rtl, h, x, y0)
    he = emu.put(A, tile=(3, 5))
    want = run_accumulate(emu, he, x, y0)
    assert same_bits(got, want)
    h.free()


def run_accumulate(dev, h, x, y0):  # type: ignore[no-untyped-def]
    # 6.5M cycles at tile 3 x 5: 15-30 s on a busy machine
    return by_hand.run_with_flags(dev, h, x, jobs.FLAG_ACCUMULATE, y0, timeout=120)


def test_stats_come_from_the_counters(rtl) -> None:  # type: ignore[no-untyped-def]
    A = CASES["random"]()
    ff.spmv(A, np.ones(A.shape[1], np.float32), device=rtl)
    s, c = rtl.last_stats, rtl.last_counters
    assert not s.estimated and s.device == "rtl"
    assert s.cycles == c.job_cycles > 0
    assert s.dma_bytes == c.dma_bytes >= A.nnz * 6
    assert s.tiles == c.tiles_done and s.nnz == A.nnz
    assert s.lane_busy_cycles == c.lane_busy and sum(c.lane_busy) >= A.nnz
    assert 0 < s.efficiency <= 1


# -- faults -----------------------------------------------------------------------------------

A_F = CASES["random"]()
X_F = np.random.default_rng(15).standard_normal(A_F.shape[1]).astype(np.float32)


def recovers(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    assert same_bits(ff.spmv(A_F, X_F, device=rtl), ff.spmv(A_F, X_F, device=emu))


def test_dma_error_response(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    h = rtl.put(A_F)
    rtl.inject("dma_error", h.buffer)
    # The first transfer that touches the image (its header) fails, and is named.
    with pytest.raises(ff.DeviceError, match=rf"DMA_READ.*SLVERR.*DDR {h.buffer.address:#x}\)"):
        ff.spmv(h, X_F, device=rtl, timeout=20)
    rtl.inject(None)
    assert same_bits(ff.spmv(h, X_F, device=rtl), ff.spmv(A_F, X_F, device=emu))
    h.free()


@pytest.mark.parametrize(
    ("fault", "match"),
    [("hang_lanes", "LANE_TIMEOUT"), ("hang_ddr", "DMA_TIMEOUT")],
)
def test_watchdogs(rtl, emu, fault: str, match: str) -> None:  # type: ignore[no-untyped-def]
    rtl.inject(fault)
    with pytest.raises(ff.DeviceError, match=match):
        ff.spmv(A_F, X_F, device=rtl, timeout=30)
    recovers(rtl, emu)  # the reset after the failed job cleared the fault


def test_firmware_that_does_not_answer(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    rtl.inject("hang_cpu")
    with pytest.raises(ff.DeviceTimeoutError, match="heartbeat stopped"):
        ff.spmv(A_F, X_F, device=rtl, timeout=1.0)
    recovers(rtl, emu)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, 0x12345678, "BAD_MAGIC"),
        (4, 7, "BAD_JOB.*info 0x4"),  # version
        (6, 9, "BAD_JOB.*info 0x6"),  # kernel
        (10, 3, "BAD_LANES"),
        (64, 8, "BAD_JOB.*info 0x40"),  # x_row_bytes
    ],
)
def test_malformed_descriptor(rtl, emu, offset: int, value: int, match: str) -> None:  # type: ignore[no-untyped-def]
    h = rtl.put(A_F)
    width = 4 if offset in (0, 64) else 2 if offset in (4, 10) else 1

    def damage(desc: np.ndarray) -> None:
        desc[offset : offset + width] = np.frombuffer(value.to_bytes(width, "little"), np.uint8)

    with pytest.raises(ff.DeviceError, match=match):
        by_hand.run_spmv(rtl, h, X_F, A_F.shape[0], damage)
    h.free()
    recovers(rtl, emu)


def test_malformed_tile_while_transfers_are_queued(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    """A tile found wrong deep in the walk, with other lanes' transfers queued (its directory
    entry's nvals does not fit its size: the firmware configures the lane from the entry, so
    it checks that the tile's sections end where the entry says): the firmware drops the
    queue (the running transfer completes), reports BAD_IMAGE, and the next call succeeds.
    (The job is submitted by hand: ff.spmv would find the image's CRC wrong on the host and
    never ring the doorbell.)"""
    h = rtl.put(A_F, tile=(16, A_F.shape[1]))
    data, dir_offset = by_hand.writable_image(h)
    n = len(jobs.Directory.from_bytes(data).nvals)
    assert n >= 8
    entry = dir_offset + 32 * (n - 1)  # the last tile's directory entry: nvals at 12
    nvals = int(data[entry + 12 : entry + 16].view("<u4")[0])
    data[entry + 12 : entry + 16] = np.frombuffer((nvals + 8).to_bytes(4, "little"), np.uint8)
    with pytest.raises(ff.DeviceError, match="BAD_IMAGE"):
        by_hand.run_spmv(rtl, h, X_F, A_F.shape[0])
    h.free()
    recovers(rtl, emu)


def test_tile_too_big_for_the_buffers(rtl, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The host refuses the tile before packing; past the host's check, the firmware
    refuses it too."""
    A = sp.csr_array(sp.random_array((50, 9000), density=0.05, rng=0, dtype=np.float32))
    with pytest.raises(ff.TileShapeError, match=r"the largest tile is tile=\(4096, 8192\)"):
        ff.spmv(A, np.ones(9000, np.float32), device=rtl, tile=(50, 9000))
    with monkeypatch.context() as m:
        m.setattr(rtl, "check_tile", lambda *a, **k: None)
        m.setattr(rtl, "check_image", lambda *a, **k: None)
        with pytest.raises(ff.DeviceError, match="TOO_BIG"):
            ff.spmv(A, np.ones(9000, np.float32), device=rtl, tile=(50, 9000))
    assert ff.spmv(A, np.ones(9000, np.float32), device=rtl).shape == (50,)


def test_spmm_wider_than_the_buffers_runs_in_column_blocks(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    """Tiles as wide as the x buffer holds for SpMV: an SpMM with k = 5 runs as column blocks
    of B, with the same bits."""
    A = sp.csr_array(sp.random_array((300, 8000), density=0.01, rng=1, dtype=np.float32))
    h = rtl.put(A)
    assert h.tile[1] * 4 * 5 > rtl.config.x_bytes
    B = np.random.default_rng(16).standard_normal((8000, 5)).astype(np.float32)
    C = ff.spmm(h, B, device=rtl)
    assert same_bits(C, ff.spmm(A, B, device=emu))
    assert rtl.last_stats.work == 5 * A.nnz and rtl.last_stats.kernel == "spmm"


def test_other_overlay_shapes(emu) -> None:  # type: ignore[no-untyped-def]
    """3 lanes on 2 DMA engines, a 128-bit bus and small buffers: many column tiles, windows
    of the tile list and directory refilled often, y blocks sharing 16-byte beats."""
    dev = ff.open(
        "rtl", lanes=3, dma_engines=2, bus_bits=128, tile_bytes=4096, x_bytes=1024,
        y_bytes=1024, max_k=4, dtype=("float32", "int32"),
    )  # fmt: skip
    try:
        r = np.random.default_rng(17)
        for case in ["power law", "empty rows", "wider than a 16-bit tile", "banded"]:
            A = CASES[case]()
            x = r.standard_normal(A.shape[1]).astype(np.float32)
            assert same_bits(ff.spmv(A, x, device=dev), ff.spmv(A, x, device=emu))
            for tile in [(5, 7), (3, 64)]:
                y = ff.spmv(A, x, device=dev, tile=tile)
                assert same_bits(y, ff.spmv(A, x, device=emu, tile=tile))
            B = r.standard_normal((A.shape[1], 6)).astype(np.float32)  # k > max_k: blocks
            assert same_bits(ff.spmm(A, B, device=dev), ff.spmm(A, B, device=emu))
    finally:
        dev.close()


@pytest.mark.slow
def test_large_matrices_bit_exact(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    r = np.random.default_rng(18)
    for m, n, density in [(20_000, 20_000, 0.0006), (3_000, 70_000, 0.002)]:
        A = sp.csr_array(sp.random_array((m, n), density=density, rng=r, dtype=np.float32))
        x = r.standard_normal(n).astype(np.float32)
        assert same_bits(ff.spmv(A, x, device=rtl), ff.spmv(A, x, device=emu))
        B = r.standard_normal((n, 3)).astype(np.float32)
        assert same_bits(ff.spmm(A, B, device=rtl), ff.spmm(A, B, device=emu))


def test_schedule_that_splits_a_row_tile_is_refused(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    h = rtl.put(A_F, tile=(16, 50))
    table, tiles = h.schedule(rtl.lanes, 1)
    bad_table = np.array([[0, 1], [1, len(tiles) - 1], [len(tiles), 0], [len(tiles), 0]])
    xb, yb = rtl.alloc(X_F.nbytes), rtl.alloc(4 * A_F.shape[0])
    jb = rtl.alloc(jobs.descriptor_bytes(len(table), len(tiles)))
    jobs.write_descriptor(
        jb.array, kernel="spmv", dtype=h.dtype, m=A_F.shape[0], n=A_F.shape[1], k=1,
        a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address, y_addr=yb.address,
        lane_table=bad_table, tile_list=np.arange(len(tiles)),
    )  # fmt: skip
    with pytest.raises(ff.DeviceError, match="row tile is split"):
        rtl.submit(jb)
    for b in (xb, yb, jb):
        rtl.free(b)
    h.free()
    recovers(rtl, emu)


def test_covered_jobs_write_every_row_and_others_are_zeroed(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    """COVERED (every row tile has a tile): the device writes no zeros first, and every row of
    y is still written; a matrix with an empty row band gets zeros there without the flag."""
    junk = np.full(A_F.shape[0], np.nan, np.float32)
    h = rtl.put(A_F, tile=(16, 50))
    assert h.covered
    want = ff.spmv(A_F, X_F, device=emu, tile=(16, 50))
    assert same_bits(by_hand.run_with_flags(rtl, h, X_F, jobs.FLAG_COVERED, junk), want)
    assert same_bits(
        by_hand.run_with_flags(emu, emu.put(A_F, tile=(16, 50)), X_F, jobs.FLAG_COVERED, junk), want
    )
    holes = sp.csr_array(A_F.toarray() * (np.arange(A_F.shape[0]) >= 40)[:, None])
    hh = rtl.put(holes, tile=(16, 50))  # row tiles 0 and 1 have no tile
    assert not hh.covered
    got = by_hand.run_with_flags(rtl, hh, X_F, 0, junk)
    assert not got[:32].any() and same_bits(got, ff.spmv(holes, X_F, device=emu, tile=(16, 50)))
    # A COVERED flag that is not true: the host refuses it, and so does the firmware.
    with pytest.raises(ff.DeviceError, match="COVERED"):
        by_hand.run_with_flags(rtl, hh, X_F, jobs.FLAG_COVERED, junk)
    both = jobs.FLAG_COVERED | jobs.FLAG_ACCUMULATE  # they exclude each other
    with pytest.raises(ff.DeviceError, match=r"BAD_JOB.*info 0x9\)"):
        by_hand.run_with_flags(rtl, hh, X_F, both, junk)
    with pytest.raises(ff.DeviceError, match="flag this device lacks"):
        by_hand.run_with_flags(emu, emu.put(holes, tile=(16, 50)), X_F, both, junk)
    for dev in (rtl, emu):
        with pytest.raises(ff.DeviceError, match="COVERED"):
            by_hand.run_with_flags(dev, dev.put(holes, tile=(16, 50)), X_F, jobs.FLAG_COVERED, junk)
    hh.free()
    h.free()
    recovers(rtl, emu)


def test_the_firmware_checks_covered_itself(rtl, emu, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    holes = sp.csr_array(A_F.toarray() * (np.arange(A_F.shape[0]) >= 40)[:, None])
    hh = rtl.put(holes, tile=(16, 50))
    # the host's own check passes: it counts only the row tiles that have tiles
    monkeypatch.setattr(jobs, "grid_rows", lambda d, m: len(np.unique(d.row_tile)))
    junk = np.full(A_F.shape[0], np.nan, np.float32)
    with pytest.raises(ff.DeviceError, match="BAD_SCHEDULE"):
        by_hand.run_with_flags(rtl, hh, X_F, jobs.FLAG_COVERED, junk)
    monkeypatch.undo()
    hh.free()
    recovers(rtl, emu)
