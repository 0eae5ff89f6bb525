"""Hostile tensors, arrays, arguments and images: each reproducer from the issue, refused with
a FiberflowError before anything crashes, allocates gigabytes or returns a wrong tensor."""

import dataclasses
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.formats import fibertree
from fiberflow.host.formats.fibertree import Level
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import job


def csr(indptr, indices, data=None, shape=(1, 3), cls=sp.csr_matrix):
    """A scipy CSR matrix carrying exactly these arrays (set after construction, as scipy
    checks little at construction and nothing afterwards)."""
    A = cls(shape, dtype=np.float32)
    A.indptr, A.indices = np.asarray(indptr), np.asarray(indices)
    A.data = np.ones(len(A.indices), np.float32) if data is None else np.asarray(data)
    return A


@pytest.fixture
def dev():
    with ff.open("emu") as d:
        yield d


# -- 1: out-of-range and negative column indices ------------------------------------------------


@pytest.mark.parametrize("col", [5, 3, -1, -(2**31)])
def test_out_of_range_column_names_row_and_column(dev, col):
    A = sp.csr_matrix(
        (np.ones(2, np.float32), np.array([0, col]), np.array([0, 1, 2])), shape=(2, 3)
    )
    x = np.ones(3, np.float32)
    for call in (
        lambda: ff.spmv(A, x, device=dev),
        lambda: dev.put(A),
        lambda: ff.pack(ff.Tensor.from_scipy(A)),
        lambda: ff.Tensor.from_scipy(A, format="ds:1,0"),
        lambda: ff.Tensor.from_scipy(A, format="ss"),
    ):
        with pytest.raises(ff.CoordinateError, match=f"row 1 has column {col},"):
            call()
    assert dev.memory_used == 0


def test_csc_reports_column_and_row():
    A = sp.csc_matrix((np.ones(1, np.float32), np.array([7]), np.array([0, 0, 1])), shape=(3, 2))
    with pytest.raises(ff.CoordinateError, match="column 1 has row 7"):
        ff.Tensor.from_scipy(A)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_every_index_type_is_bounds_checked(dtype):
    big = np.iinfo(dtype).max
    with pytest.raises(ff.CoordinateError, match=f"column {big},"):
        ff.Tensor.from_scipy(csr(np.array([0, 1], dtype), np.array([big], dtype)))
    if np.iinfo(dtype).min < 0:
        with pytest.raises(ff.CoordinateError, match="column -1,"):
            ff.Tensor.from_scipy(csr(np.array([0, 1], dtype), np.array([-1], dtype)))
    ok = ff.Tensor.from_scipy(csr(np.array([0, 1], dtype), np.array([2], dtype)))
    assert ok.to_numpy().tolist() == [[0, 0, 1]]


def test_int64_index_past_2_32_is_not_truncated():
    with pytest.raises(ff.CoordinateError, match=f"column {2**32 + 1},"):
        ff.Tensor.from_scipy(csr([0, 1], np.array([2**32 + 1], np.int64)))


# -- 2: other malformed CSR arrays ------------------------------------------------------------


@pytest.mark.parametrize(
    ("indptr", "indices", "data", "match"),
    [
        ([0, 1], [0], [1], "2 entries; 3 are needed"),  # indptr shorter than rows + 1
        ([0, 1, 1, 1], [0], [1], "4 entries; 3 are needed"),
        ([0, 1, 2], [0, 1], [1], "2 indices but data of shape"),  # data shorter than indices
        ([0, 1, 5], [0, 1], [1, 1], "end at the number of coordinates 2"),  # past the data
        ([0, -1, 2], [0, 1], [1, 1], "decreases at row 0"),  # negative
        ([0, 3, 2], [0, 1], [1, 1], "decreases at row 1"),  # non-monotone
        ([1, 1, 2], [0, 1], [1, 1], "start at 0"),
        (np.array([0.0, 1, 2]), [0, 1], [1, 1], "must hold integers"),
    ],
)
def test_malformed_csr_arrays_are_refused(indptr, indices, data, match):
    A = csr(indptr, indices, np.asarray(data, np.float32), shape=(2, 3))
    with pytest.raises(ff.FiberflowError, match=match):
        ff.Tensor.from_scipy(A)


def test_odd_index_types_that_are_valid_give_the_right_matrix():
    A = csr(np.array([0, 2, 3], np.uint8), np.array([2, 0, 1], np.int16), shape=(2, 3))
    assert ff.Tensor.from_scipy(A).to_numpy().tolist() == [[1, 0, 1], [0, 1, 0]]
    assert ff.Tensor.from_scipy(A, "ds:1,0").to_numpy().tolist() == [[1, 0, 1], [0, 1, 0]]


def test_coo_input_is_checked_before_conversion():
    A = sp.coo_array((np.ones(2, np.float32), (np.array([0, 1]), np.array([1, 1]))), shape=(2, 2))
    A.col = np.array([1, 9])
    with pytest.raises(ff.CoordinateError, match=r"entry 1 at \(1, 9\)"):
        ff.Tensor.from_scipy(A)
    A.col = np.array([1])
    with pytest.raises(ff.ShapeError, match="one of each per entry"):
        ff.Tensor.from_scipy(A)


def test_the_constructor_checks_its_levels():
    good = ff.Tensor.from_coo([[0, 1], [2, 0]], np.float32([1, 2]), (2, 3))
    pos, crd = good.levels[1].pos, good.levels[1].crd
    assert ff.Tensor((2, 3), "ds", [Level("d", 2), Level("s", 3, pos, crd)], good.values) == good
    s3 = Level("s", 3, pos, crd)
    bad = [
        ("ds", [Level("d", 2), Level("s", 3, pos, np.array([3, 0]))], good.values, "column 3,"),
        ("ds", [Level("d", 2), Level("s", 3, pos[:2], crd)], good.values, "3 are needed"),
        ("ds", [Level("d", 2), s3], good.values[:1], "2 entries"),
        ("ds", [Level("d", 2), Level("s", 3, np.array([0, 2, 2]), crd[[0, 0]])], [1, 2], "repeat"),
        ("dd", [Level("d", 2), Level("d", 3)], good.values, "6 entries"),
        ("ds", [Level("d", 2), Level("s", 2, pos, crd)], good.values, "kind 's' and size 3"),
        ("ds", [s3], good.values, "2 levels"),
    ]
    for fmt, levels, values, match in bad:
        with pytest.raises(ff.FiberflowError, match=match):
            ff.Tensor((2, 3), fmt, levels, np.float32(values))


# -- 3: memory bombs ----------------------------------------------------------------------------


def peak_mib(call):
    """Run ``call`` (expected to raise a FiberflowError); return the peak traced MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(ff.FiberflowError):
            call()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_from_coo_with_a_huge_dense_mode_is_refused_before_allocating():
    call = lambda: ff.Tensor.from_coo([[0], [0]], np.float32([1]), (2**31 - 1, 2))  # noqa: E731
    assert peak_mib(call) < 16
    with pytest.raises(ff.FormatError, match="would fill 2147483647 positions from 1 items"):
        call()
    # The same shape with compressed levels holds just its data.
    t = ff.Tensor.from_coo([[0], [0]], np.float32([1]), (2**31 - 1, 2), format="ss")
    assert t.nnz == 1


def test_the_fill_limit_scales_with_the_data():
    sizes, kinds = (2**20, 2**20 - 1), ("d", "d")
    fibertree.check_fill(sizes, kinds, nnz=0, real=2**40, what="t")
    with pytest.raises(ff.FormatError, match="limit is 1099511627775"):
        fibertree.check_fill((2**20, 2**20), kinds, nnz=0, real=2**40, what="t")  # 2^40
    fibertree.check_fill((2**25,), ("d",), nnz=0, real=0, what="t")  # the floor
    with pytest.raises(ff.FormatError):
        fibertree.check_fill((2**25 + 1,), ("d",), nnz=0, real=0, what="t")


def forged(fmt: str, shape: tuple[int, ...]) -> np.ndarray:
    """A valid image of a tensor with no positions (every mode of size 0), whose modes are then
    set to ``shape``
    (tile = size, 32-bit coordinates, one grid cell), resealed."""
    t = ff.Tensor.from_coo(np.zeros((len(fmt), 0), np.int64), np.float32([]), (0,) * len(fmt), fmt)
    buf = ff.pack(t, coord_bits=32).data.copy()
    modes = buf[64 : 64 + 16 * len(fmt)].view(di.MODE)
    modes["size"] = modes["tile"] = shape
    modes["grid"] = 1
    di.seal(buf)
    return buf


@pytest.mark.parametrize(
    ("fmt", "shape", "nbytes"), [("ds", (2**31 - 1, 2), 96), ("d", (2**31 - 1,), 80)]
)
def test_forged_empty_images_do_not_decode_to_huge_arrays(fmt, shape, nbytes):
    buf = forged(fmt, shape)
    assert len(buf) == nbytes
    assert peak_mib(lambda: ff.unpack(buf)) < 16
    with pytest.raises(ff.ImageError, match="impossible tensor"):
        ff.unpack(buf)


def test_a_corrupted_row_tile_index_does_not_size_a_table():
    A = sp.random_array((40, 40), density=0.2, format="csr", dtype=np.float32, rng=2)
    img = ff.pack(ff.Tensor.from_scipy(A), (8, 40))
    d = job.Directory.of(img)
    table, tiles = job.schedule(d, 2)
    out = np.zeros(job.descriptor_bytes(2, len(tiles)), np.uint8)
    job.write_descriptor(out, kernel="spmv", dtype=np.dtype(np.float32), m=40, n=40, k=1,
                         a_addr=0, a_bytes=img.nbytes, x_addr=1 << 20, y_addr=2 << 20,
                         lane_table=table, tile_list=tiles)  # fmt: skip
    desc = job.parse(out)
    row_tile = d.row_tile.copy()
    row_tile[-1] = 2**31  # a corrupted index: the old check allocated 2^31 entries
    broken = dataclasses.replace(d, row_tile=row_tile)
    tracemalloc.start()
    try:
        job.check_schedule(desc, broken)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    # And a device reading the image refuses the index outright.
    data = img.data.copy()
    entries = data[int(img.data[32:40].view("<u8")[0]) :].view(np.uint8)
    entries[16:20] = np.array([2**31], "<u4").view(np.uint8)  # first entry's row-tile index
    with pytest.raises(ff.DeviceError, match="outside its tile grid"):
        job.Directory.from_bytes(data)


# -- 7 and 8: arguments that were misread or gave foreign errors ------------------------------


@pytest.mark.parametrize(
    "tile", ["16", (2.5, 3.7), (float("inf"), 4), (float("nan"), 4), (True, 4), b"12", 2.5]
)
def test_bad_tiles_are_refused(tile):
    t = ff.Tensor.from_coo([[0], [0]], np.float32([1]), (20, 20))
    with pytest.raises(ff.TileShapeError, match="must be an integer"):
        ff.pack(t, tile)


def test_integral_tiles_are_accepted():
    t = ff.Tensor.from_coo([[0], [0]], np.float32([1]), (20, 20))
    assert ff.pack(t, (4.0, np.int64(5))).tile == (4, 5)
    assert ff.pack(t, np.array([3, 3])).tile == (3, 3)


@pytest.mark.parametrize("shape", ["22", (2.5, 2), (True, 2), (float("inf"), 2), 5])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(ff.ShapeError, match="integer"):
        ff.Tensor.from_coo([[0], [0]], np.float32([1]), shape)


@pytest.mark.parametrize("timeout", ["5", float("inf"), float("nan"), 0, -1, True, None])
def test_bad_timeouts_are_refused(dev, timeout):
    A = sp.eye(3, format="csr", dtype=np.float32)
    with pytest.raises(ff.DeviceError, match="timeout must be a positive, finite number"):
        ff.spmv(A, np.ones(3, np.float32), device=dev, timeout=timeout)
    assert dev.memory_used == 0


@pytest.mark.parametrize("timeout", [1e10, 1e308])
def test_timeouts_past_what_the_clocks_hold_are_refused(dev, timeout):
    A = sp.eye(3, format="csr", dtype=np.float32)
    with pytest.raises(ff.DeviceError, match="longer than fiberflow waits"):
        ff.spmv(A, np.ones(3, np.float32), device=dev, timeout=timeout)
    assert ff.spmv(A, np.ones(3, np.float32), device=dev, timeout=1e7).tolist() == [1, 1, 1]


@pytest.mark.parametrize("fmt", ["coo", "ss"])
def test_a_conversion_to_csr_is_bounded_by_the_data(fmt):
    """A COO matrix (or an "ss" tensor) of 2^31-1 rows and one entry: its CSR would need a
    16 GiB row-pointer array, refused before scipy allocates it."""
    A = sp.coo_array((np.float32([1]), ([0], [0])), shape=(2**31 - 1, 3))
    M = A if fmt == "coo" else ff.Tensor.from_coo([[0], [0]], np.float32([1]), A.shape, "ss")
    with pytest.raises(ff.FormatError, match="would fill 2147483647 positions from 1 items"):
        ff.spmv(M, np.ones(3, np.float32), device=ff.open("emu"))


def test_ragged_lists_are_a_shape_error():
    with pytest.raises(ff.ShapeError, match="rectangular"):
        ff.Tensor.from_coo([[0, 1], [0]], np.float32([1, 2]), (3, 3))
    with pytest.raises(ff.ShapeError, match="rectangular"):
        ff.Tensor.from_numpy([[1.0, 2.0], [3.0]])


def test_a_corrupt_tile_header_is_an_image_error():
    A = sp.random_array((40, 50), density=0.1, format="csr", dtype=np.float32, rng=5)
    buf = ff.pack(ff.Tensor.from_scipy(A), (16, 16)).data.copy()
    tile_at = int(buf[int(buf[32:40].view("<u8")[0]) :][:8].view("<u8")[0])
    buf[tile_at + 20 : tile_at + 24] = np.array([2**32 - 1], "<u4").view(np.uint8)  # npos_1
    di.seal(buf)
    with pytest.raises(ff.ImageError):
        ff.unpack(buf)


def test_pack_rechecks_arrays_replaced_after_construction():
    A = sp.random_array((50, 300), density=0.1, format="csr", dtype=np.float32, rng=1)
    t = ff.Tensor.from_scipy(A)
    t.values = t.values[:-3]
    with pytest.raises(ff.ShapeError, match="1497 values for 1500 positions"):
        ff.pack(t)
    t = ff.Tensor.from_scipy(A.copy())
    t.levels[1].pos[3] = 10**6
    for impl in ("c", "numpy"):
        with pytest.raises(ff.ShapeError, match="no longer form a fibertree"):
            ff.pack(t, impl=impl)


def test_a_dense_copy_too_big_to_allocate_is_a_shape_error():
    t = ff.Tensor.from_coo([[0], [0]], np.float32([1]), (2**31 - 1, 2**31 - 1), format="ss")
    with pytest.raises(ff.ShapeError, match="use to_coo"):
        t.to_numpy()


@pytest.mark.parametrize("bits", ["16", 16.0, True, 8])
def test_coord_bits_must_be_the_int_16_or_32(bits):
    t = ff.Tensor.from_scipy(sp.eye(4, format="csr", dtype=np.float32))
    with pytest.raises(ff.TileShapeError, match=r"coord_bits must be the int 16 or 32, not"):
        ff.pack(t, coord_bits=bits)
