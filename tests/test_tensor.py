import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff


def random_csr(m=40, n=30, density=0.2, seed=0, dtype=np.float32):
    return sp.random_array((m, n), density=density, format="csr", dtype=dtype, rng=seed)


@pytest.mark.parametrize("kind", ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"])
@pytest.mark.parametrize("container", ["array", "matrix"])
def test_from_scipy_accepts_every_scipy_format(kind, container):
    A = random_csr().asformat(kind)
    if container == "matrix":
        A = sp.csr_matrix(A).asformat(kind)
    for fmt in ["ds", "ss", "ds:1,0", "dd", "sd"]:
        t = ff.Tensor.from_scipy(A, format=fmt)
        assert t.shape == A.shape
        assert t.format == fmt
        np.testing.assert_array_equal(t.to_numpy(), A.toarray())
        assert (t.to_scipy() != A).nnz == 0


def test_csr_levels_are_scipy_arrays():
    A = random_csr()
    t = ff.Tensor.from_scipy(A)
    assert t.levels[0].kind == "d" and t.levels[0].size == 40
    np.testing.assert_array_equal(t.levels[1].pos, A.indptr)
    np.testing.assert_array_equal(t.levels[1].crd, A.indices)
    assert t.nnz == A.nnz
    assert t.dtype == np.float32


def test_csc_stores_columns_first():
    A = random_csr()
    t = ff.Tensor.from_scipy(A, format="ds:1,0")
    C = A.tocsc()
    np.testing.assert_array_equal(t.levels[1].pos, C.indptr)
    assert t.to_scipy().format == "csc"


def test_duplicates_are_summed_and_input_untouched():
    # CSR arrays straight from (data, indices, indptr): row 2 holds column 1 twice. (COO's
    # tocsr() would sum them already, leaving from_scipy nothing to do.)
    indices, indptr = np.array([0, 3, 1, 1]), np.array([0, 1, 2, 4])
    A = sp.csr_array((np.float32([2, 4, 1, 3]), indices, indptr), shape=(3, 4))
    assert not A.has_canonical_format and A.nnz == 4
    data_before = A.data.copy()
    t = ff.Tensor.from_scipy(A)
    assert t.nnz == 3
    assert t.to_numpy()[2, 1] == 4
    np.testing.assert_array_equal(A.data, data_before)
    np.testing.assert_array_equal(A.indices, indices)
    assert A.nnz == 4


def test_duplicates_that_overflow_are_summed_without_a_warning():
    # Found by hypothesis (tests/test_pack.py): duplicates whose float32 sum overflows, or
    # holds infinities of both signs. The test configuration turns numpy's "overflow" and
    # "invalid value" warnings into errors; the sums are not finite, the other entry exact.
    big = np.float32(3e38)
    coords = np.array([[0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 1, 2]])
    vals = np.float32([np.inf, 1, -np.inf, big, big, 2])
    t = ff.Tensor.from_coo(coords, vals, (3, 3), "ds")
    dense = t.to_numpy()
    assert t.nnz == 3 and np.isnan(dense[0, 0]) and dense[1, 1] == np.inf and dense[2, 2] == 2


def test_long_runs_of_duplicates_sum_as_scipy_does_bit_for_bit():
    # Runs of 40 duplicates of widely ranging magnitude: numpy's pairwise summation (which
    # scipy's COO sum_duplicates uses too) rounds differently from a sequential sum on most
    # of them, and the tensor must hold scipy's sums exactly.
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 50, size=(2, 60))
    coords = np.repeat(cells, 40, axis=1)
    vals = rng.standard_normal(coords.shape[1]) * 10 ** rng.uniform(-3, 3, coords.shape[1])
    vals = vals.astype(np.float32)
    t = ff.Tensor.from_coo(coords, vals, (50, 50), "ds")
    want = sp.coo_array((vals, (coords[0], coords[1])), shape=(50, 50))
    want.sum_duplicates()
    got = t.to_numpy()
    assert np.array_equal(got.view(np.uint32), want.toarray().view(np.uint32))
    sequential = np.zeros((50, 50), np.float32)
    for (i, j), v in zip(coords.T, vals, strict=True):
        sequential[i, j] = np.float32(sequential[i, j] + v)
    assert not np.array_equal(got, sequential)  # the order is not a strictly sequential one


def test_from_coo_sorts_and_sums():
    coords = np.array([[3, 0, 3, 1], [2, 1, 2, 0]])
    t = ff.Tensor.from_coo(coords, np.int32([5, 6, 7, 8]), (4, 3), format="ss")
    c, v = t.to_coo()
    np.testing.assert_array_equal(c, [[0, 1, 3], [1, 0, 2]])
    np.testing.assert_array_equal(v, [6, 8, 12])


def test_from_coo_3d_csf():
    rng = np.random.default_rng(3)
    coords = rng.integers(0, 5, size=(3, 30))
    vals = rng.standard_normal(30).astype(np.float32)
    t = ff.Tensor.from_coo(coords, vals, (5, 5, 5), format="sss")
    dense = np.zeros((5, 5, 5), np.float32)
    np.add.at(dense, tuple(coords), vals)
    np.testing.assert_array_equal(t.to_numpy(), dense)
    assert t.levels[0].pos is not None and len(t.levels[0].pos) == 2


def test_from_numpy_dense_and_compressed():
    x = np.array([0, 1.5, 0, -2], dtype=np.float32)
    d = ff.Tensor.from_numpy(x)
    assert d.format == "d" and d.nnz == 4
    s = ff.Tensor.from_numpy(x, format="s")
    assert s.nnz == 2
    np.testing.assert_array_equal(s.to_numpy(), x)


def test_float64_needs_an_explicit_conversion():
    A = random_csr(dtype=np.float64)
    with pytest.raises(ff.DTypeError, match="dtype='float32'"):
        ff.Tensor.from_scipy(A)
    t = ff.Tensor.from_scipy(A, dtype="float32")
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.to_numpy(), A.toarray().astype(np.float32))


@pytest.mark.parametrize("dtype", [np.complex64, np.float16, np.int64, np.uint8, bool])
def test_unsupported_dtypes_are_refused(dtype):
    with pytest.raises(ff.DTypeError, match="float32 and int32"):
        ff.Tensor.from_numpy(np.zeros(3, dtype=dtype))


def test_int_conversion_checks_range():
    with pytest.raises(ff.DTypeError, match="outside int32"):
        ff.Tensor.from_numpy(np.array([2**40]), dtype="int32")
    with pytest.raises(ff.DTypeError, match="truncate"):
        ff.Tensor.from_numpy(np.array([1.5]), dtype="int32")
    t = ff.Tensor.from_numpy(np.array([7, -3]), dtype="int32")
    assert t.dtype == np.int32


@pytest.mark.parametrize(
    ("coords", "shape", "err", "match"),
    [
        ([[0, -1]], (4,), ff.CoordinateError, "-1 in mode 0"),
        ([[0, 4]], (4,), ff.CoordinateError, "outside 0..3"),
        ([[0, 1]], (4, 4), ff.ShapeError, r"\(2, nnz\)"),
        ([[0.5, 1]], (4,), ff.CoordinateError, "integers"),
        ([[0, 1]], (-4,), ff.ShapeError, "between 0"),
        ([[0, 1]], (), ff.ShapeError, "at least one mode"),
    ],
)
def test_bad_coordinates(coords, shape, err, match):
    with pytest.raises(err, match=match):
        ff.Tensor.from_coo(coords, np.float32([1, 2]), shape)


def test_value_count_mismatch():
    with pytest.raises(ff.ShapeError, match="2 coordinates were given but 3 values"):
        ff.Tensor.from_coo([[0, 1]], np.float32([1, 2, 3]), (4,))


def test_errors_are_fiberflow_errors_and_builtin_kinds():
    with pytest.raises(ValueError):
        ff.Tensor.from_coo([[0, 9]], np.float32([1, 2]), (4,), format="q")
    with pytest.raises(IndexError):
        ff.Tensor.from_coo([[0, 9]], np.float32([1, 2]), (4,))
    with pytest.raises(TypeError):
        ff.Tensor.from_numpy(np.zeros(2, np.float64))


@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0), (0, 0), (3, 0, 2)])
def test_zero_size_tensors(shape):
    t = ff.Tensor.from_coo(np.zeros((len(shape), 0), int), np.zeros(0, np.float32), shape)
    assert t.shape == shape and t.nnz == 0
    assert t.to_numpy().shape == shape


def test_nan_inf_are_data():
    x = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32)
    t = ff.Tensor.from_numpy(x)
    np.testing.assert_array_equal(t.values.view(np.uint32), x.view(np.uint32))


def test_equality_is_bitwise():
    a = ff.Tensor.from_numpy(np.float32([0.0, 1.0]))
    b = ff.Tensor.from_numpy(np.float32([-0.0, 1.0]))
    assert a != b
    assert a == ff.Tensor.from_numpy(np.float32([0.0, 1.0]))


def test_to_scipy_needs_2d():
    with pytest.raises(ff.ShapeError, match="2-D"):
        ff.Tensor.from_numpy(np.float32([1, 2])).to_scipy()


def test_dense_format_too_large_is_refused():
    with pytest.raises(ff.FormatError, match="compressed"):
        ff.Tensor.from_coo([[0], [0]], np.float32([1]), (2**30, 2**30), format="dd")
