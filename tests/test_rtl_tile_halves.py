"""An SpMM lane's next tile in the free half of its tile buffer (firmware/ffjb.c, load): when it
and the lane's tile before it each fit half the buffer, its transfer runs while the lane
computes instead of after. On the rtl device: faster where the lanes wait for their tiles, the same
bits as the emulator whatever the mix of sizes, and the emulator's cycles follow."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import job as jobs


@pytest.fixture(scope="module")
def rtl():  # type: ignore[no-untyped-def]
    pytest.importorskip("fiberflow.host.devices.rtl")
    dev = ff.open("rtl")
    yield dev
    dev.close()


def _tile_bytes(A: sp.csr_matrix, tile: tuple[int, int]) -> np.ndarray:
    return jobs.Directory.of(ff.pack(ff.Tensor.from_scipy(A), tile)).nbytes


@pytest.mark.rtl
def test_tiles_of_half_a_buffer_overlap_the_lanes_compute(rtl) -> None:  # type: ignore[no-untyped-def]
    """SpMM with k = 8 and B one slice (held by every lane), so that a lane waits only for
    its next tile: tiles of half the buffer take fewer cycles than tiles that fill it, though
    they are twice as many (with every tile waiting for its lane, 0.98x the cycles;
    0.91x with the halves), and the emulator predicts both within 5%."""
    rng = np.random.default_rng(1)
    A = sp.random(8192, 1000, density=0.008, format="csr", dtype=np.float32, random_state=rng)
    B = rng.standard_normal((1000, 8)).astype(np.float32)
    emu = ff.open("emu", lanes=rtl.lanes)
    half = rtl.config.tile_bytes // 2
    cycles = {}
    for rows, fits in ((256, True), (512, False)):
        assert (_tile_bytes(A, (rows, 1000)) <= half).all() == fits
        y = ff.spmm(rtl.put(A, tile=(rows, 1000)), B, device=rtl)
        want = ff.spmm(A, B, device=emu, tile=(rows, 1000))
        assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
        cycles[fits] = rtl.last_stats.cycles
        assert abs(emu.last_stats.cycles / cycles[fits] - 1) < 0.05
    assert cycles[True] < 0.95 * cycles[False]


@pytest.mark.rtl
@pytest.mark.parametrize("k", [2, 8])
def test_a_mix_of_tile_sizes_keeps_the_bits(rtl, k: int) -> None:  # type: ignore[no-untyped-def]
    """Row tiles of random densities, so that each lane's tiles go in and out of the halves
    (both halves, the whole buffer after a half, a half after the whole): the result is the
    emulator's bit for bit, so no transfer landed in a half the lane was reading."""
    rng = np.random.default_rng(7)
    rows, n = 128, 1000
    blocks = [
        sp.random(rows, n, density=d / n, format="csr", dtype=np.float32, random_state=rng)
        for d in rng.choice([2, 6, 20, 40], size=24)
    ]
    A = sp.vstack(blocks).tocsr()
    sizes = _tile_bytes(A, (rows, n))
    half = rtl.config.tile_bytes // 2
    assert (sizes <= half).any() and (sizes > half).any()
    B = rng.standard_normal((n, k)).astype(np.float32)
    y = ff.spmm(rtl.put(A, tile=(rows, n)), B, device=rtl)
    want = ff.spmm(A, B, device=ff.open("emu", lanes=rtl.lanes), tile=(rows, n))
    assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
