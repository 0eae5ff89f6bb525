"""The C packer's CSR loops at every kind of tile shape, against the numpy reference byte for
byte: power-of-two and other tile widths, a few tile columns across (the compress loops) and
more (the scatter, or the run loops where rows hold long runs: the banded matrix), 16- and
32-bit coordinates, uniform, banded and power-law matrices, 1 and 3 threads, each vector level.
Also its own bounds check on coordinates."""

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import pack_c

pytestmark = pytest.mark.skipif(not pack_c.available(), reason="the C packer was not built")

M, N = 1100, 20_000


def uniform(rng: np.random.Generator) -> sp.csr_array:
    return sp.random_array((M, N), density=0.002, format="csr", dtype=np.float32, rng=rng)


def banded(rng: np.random.Generator) -> sp.csr_array:
    """FEM-like: a few diagonals near the main one (scaled to the wide shape), so each row's
    entries form one or two long runs in one or two tile columns."""
    offsets = [-40, -3, -1, 0, 1, 2, 7, 300]
    diags = [rng.standard_normal(N).astype(np.float32) for _ in offsets]
    band = sp.diags_array(diags, offsets=offsets, shape=(M, M), format="csr", dtype=np.float32)
    wide = sp.hstack([band] * (N // M) + [sp.csr_array((M, N % M), dtype=np.float32)])
    return sp.csr_array(wide, dtype=np.float32)


def power_law(rng: np.random.Generator) -> sp.csr_array:
    """Row lengths from a Zipf law (a few rows hold thousands of entries, most one or none),
    columns skewed towards the low end."""
    counts = np.minimum(rng.zipf(1.6, size=M), N)
    rows = np.repeat(np.arange(M), counts)
    cols = np.minimum((rng.pareto(1.2, size=len(rows)) * 300).astype(np.int64), N - 1)
    vals = rng.standard_normal(len(rows)).astype(np.float32)
    A = sp.csr_array((vals, (rows, cols)), shape=(M, N))
    A.sum_duplicates()
    return A


MATRICES = {"uniform": uniform, "banded": banded, "power-law": power_law}

# (rows, columns) of a tile and the coordinate width; the comment says which loop the vector
# levels run (compress: at most 6 tiles across with AVX-512, 4 with AVX2; scatter: more, and the
# portable level throughout).
SHAPES = [
    ((408, 8000), None),  # 3 across, not a power of two: compress
    ((1642, 8190), None),  # 3 across, odd rows and columns: compress
    ((200, 5000), None),  # 4 across: compress at both levels
    ((256, 4096), None),  # 5 across, power of two: compress with AVX-512, scatter with AVX2
    ((300, 3334), None),  # 6 across: compress with AVX-512
    ((300, 2858), None),  # 7 across: scatter
    ((100, 1177), None),  # 17 across: scatter
    ((256, 256), None),  # 79 across: scatter
    ((64, 64), None),  # 313 across: scatter
    ((1000, 7000), 32),  # 32-bit coordinates, 3 across: compress
    ((77, 300), 32),  # 32-bit coordinates, 67 across: scatter
    ((M, N), None),  # one tile
]


@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("matrix", sorted(MATRICES))
def test_every_shape_equals_numpy(monkeypatch, simd, threads, matrix):
    """The image is not zeroed before filling, so a padding byte left unwritten shows up here.
    A level the CPU lacks runs as the best one it has."""
    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    monkeypatch.setenv("FIBERFLOW_THREADS", threads)
    A = MATRICES[matrix](np.random.default_rng(len(matrix)))
    t = ff.Tensor.from_scipy(A)
    for tile, bits in SHAPES:
        img = ff.pack(t, tile, coord_bits=bits, impl="c")
        ref = ff.pack(t, tile, coord_bits=bits, impl="numpy")
        assert np.array_equal(img.data, ref.data), (matrix, tile, bits)
    assert ff.unpack(ff.pack(t, (100, 1177), impl="c")) == t


@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
@pytest.mark.parametrize("threads", ["1", "3"])
def test_tall_tiles_built_in_scratch_equal_numpy(monkeypatch, simd, threads):
    """Bands whose segment arrays outgrow the caches are built a chunk of rows at a time in a
    scratch buffer, streamed to the image and checksummed per tile (the first band here: 8192
    rows x 47 tiles, 1.5 MB of segment entries, in three chunks); the last band (1808 rows) is
    built in place. Uniform and power-law rows, 16- and 32-bit coordinates."""
    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    monkeypatch.setenv("FIBERFLOW_THREADS", threads)
    rng = np.random.default_rng(5)
    uniform = sp.random_array(
        (10_000, 3000), density=0.003, format="csr", dtype=np.float32, rng=rng
    )
    counts = np.minimum(rng.zipf(1.6, size=10_000), 3000)
    rows = np.repeat(np.arange(10_000), counts)
    skewed = sp.csr_array(
        (
            rng.standard_normal(len(rows)).astype(np.float32),
            (rows, rng.integers(0, 3000, len(rows))),
        ),
        shape=(10_000, 3000),
    )
    skewed.sum_duplicates()
    for A in (uniform, skewed):
        t = ff.Tensor.from_scipy(A)
        for bits in (None, 32):
            img = ff.pack(t, (8192, 64), coord_bits=bits, impl="c")
            ref = ff.pack(t, (8192, 64), coord_bits=bits, impl="numpy")
            assert np.array_equal(img.data, ref.data), bits


def test_division_by_any_tile_width_is_exact(monkeypatch):
    """Coordinates at and next to every tile boundary, for widths whose multiply-shift constants
    differ (powers of two, their neighbours, primes, widths near the level size)."""
    monkeypatch.setenv("FIBERFLOW_THREADS", "1")
    n = 70_001
    for width in (64, 65, 127, 1000, 4093, 8190, 8192, 65535, 65536, 70_000):
        edges = np.arange(width, n, width)
        cols = np.unique(np.concatenate([edges - 1, edges, edges + 1, [0, n - 1]]))
        cols = cols[(cols >= 0) & (cols < n)]
        A = sp.csr_array(
            (np.ones(len(cols), np.float32), (np.zeros(len(cols), np.int64), cols)), shape=(2, n)
        )
        t = ff.Tensor.from_scipy(A)
        for simd in ("0", "avx2", "avx512"):
            monkeypatch.setenv("FIBERFLOW_SIMD", simd)
            bits = 32 if width > 65536 else None
            img = ff.pack(t, (2, width), coord_bits=bits, impl="c")
            ref = ff.pack(t, (2, width), coord_bits=bits, impl="numpy")
            assert np.array_equal(img.data, ref.data), (width, simd)


@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
@pytest.mark.parametrize(("tile", "bad"), [((16, 100), 300), ((16, 1000), 300), ((16, 100), -1)])
def test_out_of_range_coordinate_is_refused(monkeypatch, simd, tile, bad):
    """The C packer's own bounds check, behind the Tensor constructors' checks: a coordinate
    changed after construction (past the level, or negative) raises instead of being written
    out of bounds, with few tile columns (300 / 1000 wide) and many (300 / 100)."""
    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    A = sp.random_array((50, 300), density=0.1, format="csr", dtype=np.float32, rng=1)
    t = ff.Tensor.from_scipy(A)
    t.levels[1].crd[A.indptr[40]] = bad  # a row in the last row band
    with pytest.raises(ff.CoordinateError, match="outside its mode"):
        ff.pack(t, tile, impl="c")


def test_out_of_range_coordinate_in_another_format_is_refused():
    """The same check in the general walk (here a COO-like "ss" tree, and its inner level)."""
    t = ff.Tensor.from_coo([[0, 3, 7], [1, 5, 2]], np.float32([1, 2, 3]), (8, 8), format="ss")
    t.levels[1].crd[1] = 8
    with pytest.raises(ff.CoordinateError):
        ff.pack(t, (4, 4), impl="c")
    t.levels[1].crd[1] = 5
    t.levels[0].crd[2] = -3
    with pytest.raises(ff.CoordinateError):
        ff.pack(t, (4, 4), impl="c")


@pytest.mark.parametrize("fmt", ["sss", "dss", "dds", "ddd", "sds", "ssd"])
@pytest.mark.parametrize("tile", [(4, 9, 13), (30, 40, 50), (1, 1, 7)])
def test_c_plan_equals_numpy_plan(fmt, tile):
    """pack_c.plan places every section where dma_image.plan does, in every format: the C path
    writes its tile headers from this layout, the numpy path from the reference's."""
    from fiberflow.host.images import dma_image as di

    rng = np.random.default_rng(3)
    dense = (rng.random((30, 40, 50)) < 0.05) * rng.standard_normal((30, 40, 50))
    t = ff.Tensor.from_numpy(dense.astype(np.float32), fmt)
    geo = di.make_geometry(t.shape, t.fmt, t.dtype, tile, None)
    n_grid = int(np.prod(geo.grid))
    ncrd = rng.integers(0, 50, size=(n_grid, geo.ndim)).astype(np.int64)
    ids = np.flatnonzero(rng.random(n_grid) < 0.7).astype(np.int64)
    (got, ext, tile_off, slot), want = pack_c.plan(geo, ids, ncrd), di.plan(geo, ids, ncrd[ids])
    fields = ("index", "npos", "seg_offset", "crd_offset", "vals_offset", "tile_offset")
    for field in (*fields, "tile_bytes"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert (got.dir_offset, got.total_bytes) == (want.dir_offset, want.total_bytes)
    np.testing.assert_array_equal(ext, geo.extents(want.index))
    np.testing.assert_array_equal(tile_off, np.append(want.tile_offset, want.total_bytes))
    expect_slot = np.full(n_grid, -1)
    expect_slot[ids] = np.arange(len(ids))
    np.testing.assert_array_equal(slot, expect_slot)
