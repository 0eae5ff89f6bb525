import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from strategies import tensors, tiles

import fiberflow as ff
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import pack_c


@given(st.data())
def test_round_trip_and_c_equals_numpy(data):
    t = data.draw(tensors())
    tile = data.draw(tiles(t.shape))
    img = ff.pack(t, tile, impl="c")
    ref = ff.pack(t, tile, impl="numpy")
    assert np.array_equal(img.data, ref.data), "the C and numpy packers must agree byte for byte"
    back = ff.unpack(img)
    assert back == t
    assert ff.unpack(img.tobytes()) == t
    coords, vals = back.to_coo()
    c0, v0 = t.to_coo()
    assert np.array_equal(coords, c0) and np.array_equal(vals.view(np.uint32), v0.view(np.uint32))


@given(st.data())
def test_round_trip_through_scipy(data):
    t = data.draw(tensors(max_ndim=2))
    if t.ndim != 2:
        return
    A = t.to_scipy()
    again = ff.Tensor.from_scipy(A, format=t.format)
    assert np.array_equal(again.to_numpy(), t.to_numpy(), equal_nan=True)


def test_image_is_aligned_and_self_describing():
    A = sp.random_array((300, 500), density=0.05, format="csr", dtype=np.float32, rng=1)
    img = ff.pack(ff.Tensor.from_scipy(A), tile=(64, 128))
    assert img.data.dtype == np.uint8 and img.nbytes % di.ALIGN == 0
    h = img.data[:64].view(di.HEADER)[0]
    assert bytes(img.data[:4]) == b"FFDI"
    assert h["version"] == 1 and h["ndim"] == 2 and h["dtype"] == 1 and h["coord_bytes"] == 2
    assert h["total_bytes"] == img.nbytes and h["nvals"] == A.nnz
    modes = img.data[64:96].view(di.MODE)
    assert list(modes["size"]) == [300, 500] and list(modes["tile"]) == [64, 128]
    assert list(modes["grid"]) == [5, 4] and list(modes["kind"]) == [0, 1]
    entries = (
        img.data[h["dir_offset"] :].view(np.uint8)[: h["n_tiles"] * 32].view(di.dir_entry_dtype(2))
    )
    assert (entries["offset"] % di.ALIGN == 0).all()
    # The first tile, read by hand as the document describes it.
    off = int(entries["offset"][0])
    th = img.data[off : off + 32].view(di.tile_header_dtype(2))[0]
    rows = 64
    seg_at = off + int(th["levels"]["seg_offset"][1])
    seg = img.data[seg_at : seg_at + 4 * (rows + 1)].view("<u4")
    block = A[:64, :128]
    np.testing.assert_array_equal(seg, block.indptr)
    crd_at = off + int(th["levels"]["crd_offset"][1])
    np.testing.assert_array_equal(
        img.data[crd_at : crd_at + 2 * block.nnz].view("<u2"), block.indices
    )
    vals_at = off + int(th["vals_offset"])
    np.testing.assert_array_equal(
        img.data[vals_at : vals_at + 4 * block.nnz].view("<f4"), block.data
    )


def test_coordinates_are_local_and_narrow():
    A = sp.random_array((100, 200_000), density=1e-3, format="csr", dtype=np.float32, rng=2)
    t = ff.Tensor.from_scipy(A)
    assert ff.pack(t, tile=(100, 65536)).geometry.coord_bytes == 2
    assert ff.pack(t, tile=(100, 65537)).geometry.coord_bytes == 4
    assert ff.unpack(ff.pack(t, tile=(100, 65537))) == t


def test_empty_tiles_are_skipped():
    A = sp.csr_array((np.float32([1, 2]), ([0, 99], [0, 99])), shape=(100, 100))
    img = ff.pack(ff.Tensor.from_scipy(A), tile=(10, 10))
    assert img.n_tiles == 2
    assert ff.unpack(img).to_scipy().nnz == 2


@pytest.mark.parametrize(
    ("tile", "bits", "match"),
    [
        ((0, 4), None, "at least 1"),
        ((4,), None, "has 1 modes"),
        ((70000, 70000), 16, "16-bit local coordinates"),
        ((4, 4), 8, "16 or 32"),
        ("ab", None, "int or a tuple"),
        ((1, 1), None, "more than"),
    ],
)
def test_bad_tiles(tile, bits, match):
    t = ff.Tensor.from_coo([[0], [0]], np.float32([1]), (100_000, 100_000))
    with pytest.raises(ff.TileShapeError, match=match):
        ff.pack(t, tile, coord_bits=bits)


def test_pack_rejects_non_tensors():
    with pytest.raises(ff.FiberflowError, match=r"ff\.Tensor"):
        ff.pack(np.zeros(3))  # type: ignore[arg-type]


def test_zero_size_round_trip():
    for shape, fmt in [((0,), "s"), ((0, 7), "ds"), ((5, 0), "dd"), ((2, 0, 3), "sds")]:
        t = ff.Tensor.from_coo(np.zeros((len(shape), 0), int), np.zeros(0, np.int32), shape, fmt)
        img = ff.pack(t)
        assert img.n_tiles == 0
        assert ff.unpack(img) == t


def test_nan_and_inf_round_trip_bit_exact():
    vals = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], dtype=np.float32)
    vals[0] = np.frombuffer(np.uint32(0x7FA00001).tobytes(), np.float32)[0]  # a signalling NaN
    t = ff.Tensor.from_coo([[0, 2, 4, 6, 8]], vals, (10,), format="s")
    back = ff.unpack(ff.pack(t, 3))
    np.testing.assert_array_equal(back.values.view(np.uint32), vals.view(np.uint32))


def test_default_tile_covers_small_tensors():
    t = ff.Tensor.from_numpy(np.arange(10, dtype=np.int32))
    img = ff.pack(t)
    assert img.tile == (10,) and img.n_tiles == 1


def test_documented_csr_tile_example():
    """The worked example in docs/dma-image.md, byte for byte."""
    A = np.zeros((2, 8), np.float32)
    A[0, 4], A[0, 6], A[1, 7] = 5, 7, 9
    img = ff.pack(ff.Tensor.from_scipy(sp.csr_array(A)), (2, 4))
    h = img.data[:64].view(di.HEADER)[0]
    entry = img.data[int(h["dir_offset"]) :][:32].view(di.dir_entry_dtype(2))[0]
    assert (int(entry["nbytes"]), int(entry["nvals"]), list(entry["index"])) == (80, 3, [0, 1])
    tile = img.data[int(entry["offset"]) :][:80]
    head = tile[:32].view(di.tile_header_dtype(2))[0]
    assert (int(head["nvals"]), int(head["vals_offset"])) == (3, 64)
    assert head["levels"].tolist() == [(2, 0, 0), (3, 32, 48)]
    assert tile[32:44].view("<u4").tolist() == [0, 2, 3]
    assert tile[48:54].view("<u2").tolist() == [0, 2, 3]
    assert tile[64:76].view("<f4").tolist() == [5.0, 7.0, 9.0]


@pytest.mark.skipif(not pack_c.available(), reason="the C packer was not built")
@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
@pytest.mark.parametrize("threads", ["1", "3"])
def test_csr_loops_equal_numpy(monkeypatch, simd, threads):
    """The C packer's CSR loops (AVX-512, AVX2 and portable, any thread count) against the
    numpy reference: rows from empty to longer than several vector steps, runs of every length,
    one to many column tiles, 16- and 32-bit coordinates, empty row and column tiles.
    The image is not zeroed before filling, so a padding byte left unwritten shows up here.
    A level the CPU lacks runs as the best one it has."""
    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    monkeypatch.setenv("FIBERFLOW_THREADS", threads)
    assert pack_c.simd() == pack_c.SIMD_LEVELS[simd]
    rng = np.random.default_rng(pack_c.SIMD_LEVELS[simd] * 10 + int(threads))
    m, n = 300, 70_000
    counts = rng.choice([0, 1, 3, 15, 16, 17, 40, 100], size=m)
    counts[100:140] = 0  # an empty row tile for some tile shapes
    rows = np.repeat(np.arange(m), counts)
    cols = rng.integers(0, n, len(rows))
    cols[rng.random(len(cols)) < 0.3] = rng.integers(0, 200)  # long runs in one column tile
    cols[cols >= 40_000] = cols[cols >= 40_000] % 1000  # empty column tiles past 40000
    vals = rng.standard_normal(len(rows)).astype(np.float32)
    A = sp.csr_array((vals, (rows, cols)), shape=(m, n))
    A.sum_duplicates()
    t = ff.Tensor.from_scipy(A)
    # few tiles across (2, 5 and 1 here, 16- and 32-bit coordinates): the vector levels'
    # compress loops (5 only with AVX-512); more (9, 70 and 1094 across): the scatter, which the
    # portable level runs throughout. tests/test_pack_shapes.py covers the other shapes.
    tiles = [(100, 65536), (16, 16384), (32, 8192), (50, 131072), (64, 70_000), (37, 1000), (7, 64)]
    for tile in tiles:
        img = ff.pack(t, tile, impl="c")
        ref = ff.pack(t, tile, impl="numpy")
        assert np.array_equal(img.data, ref.data), tile
        assert ff.unpack(img) == t
