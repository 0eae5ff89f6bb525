"""The job descriptor (docs/jobs.md), the tile schedule, and the emulator device's protocol."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import job

A = sp.csr_array(
    sp.random_array((300, 200), density=0.05, format="csr", rng=np.random.default_rng(0)),
    dtype=np.float32,
)
X = np.arange(200, dtype=np.float32)


def test_descriptor_bytes_are_where_the_doc_says() -> None:
    table = np.array([[0, 2], [2, 1]], dtype=np.uint32)
    tiles = np.array([0, 2, 1], dtype=np.uint32)
    out = np.zeros(job.descriptor_bytes(2, 3), dtype=np.uint8)
    assert len(out) == 96 + 2 * 8 + 3 * 4 + 4  # padded to 16 bytes
    job.write_descriptor(
        out, kernel="spmm", dtype=np.dtype(np.int32), m=7, n=5, k=3, a_addr=0x1234_5678_9A,
        a_bytes=4096, x_addr=0x2000, y_addr=0x3000, lane_table=table, tile_list=tiles,
        flags=job.FLAG_ACCUMULATE,
    )  # fmt: skip
    u32 = lambda off: int.from_bytes(out[off : off + 4].tobytes(), "little")  # noqa: E731
    u64 = lambda off: int.from_bytes(out[off : off + 8].tobytes(), "little")  # noqa: E731
    assert out[:4].tobytes() == b"FFJB" and u32(4) & 0xFFFF == 1
    assert (out[6], out[7], out[8], out[9]) == (2, 2, 0, 1)  # spmm, int32, plus-times, accumulate
    assert int(out[10]) | int(out[11]) << 8 == 2  # lanes
    assert (u32(12), u32(16), u32(20), u32(24), u32(28)) == (7, 5, 3, 3, len(out))
    assert (u64(32), u64(40), u64(48), u64(56)) == (0x1234_5678_9A, 4096, 0x2000, 0x3000)
    assert (u32(64), u32(68), u32(72), u32(76)) == (12, 12, 96, 112)
    assert not out[80:96].any()
    assert [u32(96 + 4 * i) for i in range(4)] == [0, 2, 2, 1]
    assert [u32(112 + 4 * i) for i in range(3)] == [0, 2, 1]
    assert u32(124) == 0  # padding
    d = job.parse(out)
    assert (d.kernel, d.dtype, d.m, d.n, d.k, d.lanes, d.flags) == ("spmm", np.int32, 7, 5, 3, 2, 1)
    assert np.array_equal(d.tile_list, tiles) and np.array_equal(d.lane_table, table)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, 0x00, "magic"),
        (4, 0x02, "version"),
        (6, 0x09, "unknown kernel"),
        (7, 0x07, "unknown"),
        (8, 0x01, "operation"),
        (9, 0x04, "flag"),
        (28, 0x01, "inconsistent"),
        (64, 0x08, "strides"),
    ],
)
def test_parse_rejects_corrupted_descriptors(offset: int, value: int, match: str) -> None:
    out = np.zeros(job.descriptor_bytes(1, 1), dtype=np.uint8)
    job.write_descriptor(
        out, kernel="spmv", dtype=np.dtype(np.float32), m=1, n=1, k=1, a_addr=0, a_bytes=0,
        x_addr=0, y_addr=0, lane_table=np.array([[0, 1]]), tile_list=np.array([0]),
    )  # fmt: skip
    out[offset] = value
    with pytest.raises(ff.DeviceError, match=match):
        job.parse(out)
    with pytest.raises(ff.DeviceError, match="shorter"):
        job.parse(out[:50])


def test_schedule_keeps_row_tiles_whole_and_balances_lanes() -> None:
    d = job.Directory.of(ff.pack(ff.Tensor.from_scipy(A), tile=(16, 64)))
    table, tiles = job.schedule(d, lanes=4)
    assert sorted(tiles.tolist()) == list(range(len(d.nvals)))
    lane_of = np.repeat(np.arange(4), table[:, 1])
    for lane in range(4):
        mine = tiles[lane_of == lane]
        assert (np.diff(mine.astype(int)) > 0).all()  # increasing directory order
    for rt in np.unique(d.row_tile):
        assert len(set(lane_of[d.row_tile[tiles] == rt])) == 1  # a row tile is never split
    loads = np.bincount(lane_of, weights=d.nvals[tiles] + 32, minlength=4)
    assert loads.max() / loads.mean() < 1.1


def submit_with(dev, mutate, y0=None):  # type: ignore[no-untyped-def]
    """Build a correct SpMV job by hand, let ``mutate`` break it, submit and wait. ``y0`` is
    what the output buffer holds before the job (zeros by default)."""
    h = dev.put(A, tile=(64, 64))
    table, tiles = job.schedule(h.directory, dev.lanes)
    xb, yb = dev.alloc(X.nbytes), dev.alloc(4 * A.shape[0])
    xb.write(X)
    if y0 is not None:
        yb.write(y0)
    fields = dict(
        kernel="spmv", dtype=np.dtype(np.float32), m=A.shape[0], n=A.shape[1], k=1,
        a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address, y_addr=yb.address,
        lane_table=table, tile_list=tiles,
    )  # fmt: skip
    mutate(fields, h)
    jb = dev.alloc(job.descriptor_bytes(len(fields["lane_table"]), len(fields["tile_list"])))
    job.write_descriptor(jb.array, **fields)
    dev.wait(dev.submit(jb), timeout=5)
    return yb.view(np.float32).copy()


def test_a_hand_built_job_runs() -> None:
    dev = ff.open("emu")
    y = submit_with(dev, lambda f, h: None)
    assert np.allclose(y, A @ X, rtol=1e-5)
    # ACCUMULATE: y starts from what the buffer holds; without it the device zeroes y first.
    y0 = np.linspace(-100, 100, A.shape[0], dtype=np.float32)
    y2 = submit_with(ff.open("emu"), lambda f, h: f.update(flags=job.FLAG_ACCUMULATE), y0)
    assert np.allclose(y2, y0 + y, rtol=1e-5, atol=1e-4)
    assert np.array_equal(submit_with(ff.open("emu"), lambda f, h: None, y0), y)
    assert np.array_equal(
        submit_with(ff.open("emu"), lambda f, h: f.update(flags=job.FLAG_ACCUMULATE)), y
    )  # accumulating onto zeros


def corrupt_crd(f, h) -> None:  # type: ignore[no-untyped-def]
    # Overwrite the first coordinate of the first tile with one past the tile's width.
    hdr = np.frombuffer(h.buffer.array[:64].tobytes(), dtype="<u4")
    dir_offset = int(hdr[8])
    tile_off = int(np.frombuffer(h.buffer.array[dir_offset : dir_offset + 8].tobytes(), "<u8")[0])
    crd_off = int(np.frombuffer(h.buffer.array[tile_off + 28 : tile_off + 32].tobytes(), "<u4")[0])
    h.buffer.array.flags.writeable = True  # read-only on the host after put; damage it anyway
    h.buffer.array[tile_off + crd_off : tile_off + crd_off + 2] = [200, 0]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f, h: f.update(a_addr=f["a_addr"] + 8), "not inside one device buffer"),
        (lambda f, h: f.update(a_addr=f["a_addr"] + 16, a_bytes=f["a_bytes"] - 16), "not a 2-D"),
        (lambda f, h: f.update(x_addr=0x10), "dense input"),
        (lambda f, h: f.update(y_addr=f["y_addr"] + 4), "output"),
        (lambda f, h: f.update(tile_list=f["tile_list"][:-1]), "exactly once"),
        (lambda f, h: f.update(tile_list=f["tile_list"][::-1].copy()), "increasing"),
        (lambda f, h: f.update(lane_table=f["lane_table"][:2]), "lanes"),
        (lambda f, h: f.update(m=f["m"] - 1), "job failed"),
        (lambda f, h: f.update(dtype=np.dtype(np.int32)), "job failed"),
        (corrupt_crd, "coordinate"),
    ],
)
def test_the_device_refuses_bad_jobs_and_stays_usable(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    dev = ff.open("emu")
    with pytest.raises(ff.DeviceError, match=match):
        submit_with(dev, mutate)
    assert np.allclose(ff.spmv(A, X, device=dev), A @ X, rtol=1e-5)


def test_split_row_tiles_are_refused() -> None:
    def split(f, h):  # type: ignore[no-untyped-def]
        tiles = np.arange(len(h.directory.nvals), dtype=np.uint32)
        half = len(tiles) // 2 + 1  # 300x200 in 64x64 tiles: row tiles hold 4 tiles each
        f.update(
            lane_table=np.array(
                [[0, half], [half, len(tiles) - half], [len(tiles), 0], [len(tiles), 0]]
            ),
            tile_list=tiles,
        )

    with pytest.raises(ff.DeviceError, match="split"):
        submit_with(ff.open("emu"), split)


def test_emu_protocol_basics() -> None:
    dev = ff.open("emu", memory_bytes=1 << 20)
    assert isinstance(dev, ff.Device)
    b = dev.alloc(100)
    assert b.nbytes == 100 and not b.array.any() and b.address % 4096 == 0
    b.write(np.arange(25, dtype=np.uint32))
    assert b.view(np.uint32)[24] == 24
    with pytest.raises(ff.DeviceError, match="outside"):
        b.write(np.zeros(101, np.uint8))
    dev.free(b)
    with pytest.raises(ff.DeviceError, match="not a live buffer"):
        dev.free(b)
    with pytest.raises(ff.DeviceError, match="out of device memory"):
        dev.alloc(2 << 20)
    dev.write_reg(0x10, 0x1_2345_6789)
    assert dev.read_reg(0x10) == 0x2345_6789
    with pytest.raises(ff.DeviceError, match="aligned"):
        dev.read_reg(3)
    with pytest.raises(ff.DeviceError, match="no job"):
        dev.wait(99, timeout=1)
    dev.load_overlay(None, None)
    dev.reset()
    with ff.open("emu") as d2:
        h = d2.put(A)  # kept: a dropped handle frees its buffer at once
        assert d2.memory_used > 0 and not h.freed
    assert d2.memory_used == 0
