"""Each tile's column window: recorded in the directory by both packers, checked by every
reader, and used by the firmware to load only the part of x a tile reads when x is cut into
several slices (docs/dma-image.md, docs/firmware.md)."""

from __future__ import annotations

import by_hand
import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench.counted import poisson
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import job as jobs


def windows(img: di.DmaImage) -> np.ndarray:
    h = img.data[: di.HEADER.itemsize].view(di.HEADER)[0]
    return di.extents_of(img.data, int(h["dir_offset"]), int(h["n_tiles"]))


def reseal(data: np.ndarray) -> np.ndarray:
    di.seal(data)
    return data


@pytest.mark.parametrize("impl", ["c", "numpy"])
@pytest.mark.parametrize(("shape", "tile", "density"), [
    ((300, 500), (100, 128), 0.02), ((64, 70000), (8, 65536), 0.001),
    ((1000, 900), (37, 50), 0.01), ((5, 5), (5, 5), 0.3),
])  # fmt: skip
def test_packers_record_each_tiles_column_window(impl: str, shape, tile, density) -> None:  # type: ignore[no-untyped-def]
    A = sp.random_array(shape, density=density, format="coo", rng=3, dtype=np.float32)
    img = ff.pack(ff.Tensor.from_scipy(A), tile, impl=impl)
    d = jobs.Directory.of(img)
    want = {}
    for r, c in zip(A.row.tolist(), A.col.tolist(), strict=True):
        key = (r // tile[0], c // tile[1])
        lo, hi = want.get(key, (c % tile[1], c % tile[1] + 1))
        want[key] = (min(lo, c % tile[1]), max(hi, c % tile[1] + 1))
    got = {
        (int(i), int(j)): (int(lo), int(hi))
        for i, j, lo, hi in zip(d.row_tile, d.col_tile, d.x_lo, d.x_hi, strict=True)
    }
    assert got == want


@pytest.mark.parametrize("impl", ["c", "numpy"])
@pytest.mark.parametrize(("fmt", "coord_bits"), [("ss", 16), ("ds", 32), ("ss", 32)])
def test_windows_in_every_2d_layout(impl: str, fmt: str, coord_bits: int) -> None:
    """DCSR (the C packer's general walk) and 32-bit coordinates: the same windows as CSR's."""
    A = sp.random_array((300, 900), density=0.02, format="csr", rng=4, dtype=np.float32)
    tile = (64, 200)
    got = windows(ff.pack(ff.Tensor.from_scipy(A, fmt), tile, coord_bits=coord_bits, impl=impl))
    want = windows(ff.pack(ff.Tensor.from_scipy(A, "ds"), tile, impl="numpy"))
    np.testing.assert_array_equal(got, want)


def test_only_2d_images_with_a_compressed_level_1_record_windows() -> None:
    A = sp.random_array((40, 40), density=0.2, format="csr", rng=1, dtype=np.float32)
    dense = ff.pack(ff.Tensor.from_numpy(A.toarray()), 16)  # "dd": nothing to record
    assert not windows(dense).any()
    csc = ff.pack(ff.Tensor.from_scipy(A, "ds:1,0"), 16)  # its level 1 holds the rows
    assert (windows(csc)[:, 1] > 0).all()


def test_unpack_accepts_unrecorded_windows_and_refuses_wrong_ones() -> None:
    A = sp.random_array((200, 300), density=0.05, format="csr", rng=4, dtype=np.float32)
    img = ff.pack(ff.Tensor.from_scipy(A), (64, 100))
    old = img.data.copy()
    h = old[: di.HEADER.itemsize].view(di.HEADER)[0]
    di.extents_of(old, int(h["dir_offset"]), int(h["n_tiles"]))[:] = 0
    assert (ff.unpack(reseal(old)).to_scipy() != A).nnz == 0
    bad = img.data.copy()
    di.extents_of(bad, int(h["dir_offset"]), int(h["n_tiles"]))[0, 0] += 1
    with pytest.raises(ff.ImageError, match="not laid out exactly"):
        ff.unpack(reseal(bad))


@pytest.mark.parametrize("window", [(5, 5), (0, 101), (7, 3)])
def test_the_directory_refuses_a_window_outside_its_tile(window: tuple[int, int]) -> None:
    A = sp.random_array((200, 300), density=0.05, format="csr", rng=4, dtype=np.float32)
    data = ff.pack(ff.Tensor.from_scipy(A), (64, 100)).data.copy()
    h = data[: di.HEADER.itemsize].view(di.HEADER)[0]
    di.extents_of(data, int(h["dir_offset"]), int(h["n_tiles"]))[0] = window
    with pytest.raises(ff.DeviceError, match="column window outside"):
        jobs.Directory.from_bytes(data)


# -- on the rtl device ------------------------------------------------------------------------


@pytest.mark.rtl
def test_windows_cut_the_x_bytes_and_keep_the_bits(rtl, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A banded matrix whose x spans three slices: with windows the job moves fewer bytes,
    the same y bit for bit as without them and as the emulator, and the emulator's byte count
    follows the firmware's either way."""
    A = poisson(90, 2)  # 8,100 columns: three slices of 3,000
    x = np.random.default_rng(2).standard_normal(A.shape[1]).astype(np.float32)
    emu = ff.open("emu")
    tile = (400, 3000)
    y = ff.spmv(A, x, device=rtl, tile=tile)
    with_windows = rtl.last_stats
    assert np.array_equal(y.view(np.uint32), ff.spmv(A, x, device=emu, tile=tile).view(np.uint32))
    assert abs(emu.last_stats.dma_bytes / with_windows.dma_bytes - 1) < 0.02
    with monkeypatch.context() as m:
        m.setattr(di, "records_extents", lambda geo: False)
        y_whole = ff.spmv(A, x, device=rtl, tile=tile)
        whole = rtl.last_stats
        ff.spmv(A, x, device=emu, tile=tile)
        assert abs(emu.last_stats.dma_bytes / whole.dma_bytes - 1) < 0.02
    assert np.array_equal(y.view(np.uint32), y_whole.view(np.uint32))
    # A tile of 400 rows reads about 400 + 2 * 90 columns of its slice's 3,000.
    assert with_windows.dma_bytes < 0.95 * whole.dma_bytes


@pytest.mark.rtl
@pytest.mark.parametrize("k", [3, 8])
def test_spmm_windows_keep_the_bits(rtl, k: int) -> None:  # type: ignore[no-untyped-def]
    """SpMM loads windows of B's rows (4k bytes a row, so a window's first row is not on a
    bus beat): the same C bit for bit as the emulator's."""
    A = poisson(40, 2)  # 1,600 columns in slices of 500
    B = np.random.default_rng(3).standard_normal((A.shape[1], k)).astype(np.float32)
    tile = (100, 500)
    C = ff.spmm(A, B, device=rtl, tile=tile)
    want = ff.spmm(A, B, device=ff.open("emu"), tile=tile)
    assert np.array_equal(C.view(np.uint32), want.view(np.uint32))


@pytest.mark.rtl
def test_the_firmware_refuses_a_window_past_its_slice(rtl) -> None:  # type: ignore[no-untyped-def]
    """Past the host's checks (the job is submitted by hand, on an image damaged after its
    put), a window the slice cannot hold ends the job with BAD_IMAGE, and the next job runs."""
    A = poisson(90, 2)
    x = np.random.default_rng(2).standard_normal(A.shape[1]).astype(np.float32)
    h = rtl.put(A, tile=(400, 3000))
    data, dir_offset = by_hand.writable_image(h)
    di.extents_of(data, dir_offset, 4)[3] = (0, 3001)
    with pytest.raises(ff.DeviceError, match="BAD_IMAGE"):
        by_hand.run_spmv(rtl, h, x, A.shape[0])
    h.free()
    y = ff.spmv(A, x, device=rtl)
    assert np.array_equal(y.view(np.uint32), ff.spmv(A, x, device=ff.open("emu")).view(np.uint32))
