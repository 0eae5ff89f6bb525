"""Each tile's column window: recorded in the directory by both packers, checked by every
reader, and used by the firmware to load only the part of x a tile reads when x is cut into
several slices (docs/dma-image.md, docs/firmware.md)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host import dma_image as di
from fiberflow.host import job as jobs


def windows(img: di.DmaImage) -> np.ndarray:
    h = img.data[: di.HEADER.itemsize].view(di.HEADER)[0]
    return di.extents_of(img.data, int(h["dir_offset"]), int(h["n_tiles"]))


def reseal(data: np.ndarray) -> np.ndarray:
    data[40:44] = 0
    data[40:44] = np.frombuffer(di.checksum(data).to_bytes(4, "little"), np.uint8)
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
