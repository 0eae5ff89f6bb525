"""The C packer's run loops (rows whose entries form long runs in few tile columns, as in a
banded matrix) against the numpy reference byte for byte: runs of every length from 1 to past
two vector widths, ending at a tile's, a row's and the matrix's last entry, with 16- and 32-bit
coordinates, at each vector level. The vector stores write whole vectors while a tile has room
and fall back to masked (or, for 16-bit coordinates with AVX2, entry by entry) stores at its
end, so each tile's last run is where a wrong byte would show."""

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import pack_c

pytestmark = pytest.mark.skipif(not pack_c.available(), reason="the C packer was not built")


def runs_matrix(rows: int, cols: int, width: int, seed: int) -> sp.csr_array:
    """Each row: one run per tile column it touches, of length 1 .. 40 (cycling with the row),
    placed at a random start inside the column tile, in two to three of the row's tiles; the
    last row's run ends at the matrix's last column."""
    rng = np.random.default_rng(seed)
    grid = cols // width
    indptr, indices = [0], []
    for r in range(rows):
        length = 1 + r % 40
        tiles = sorted(rng.choice(grid, size=min(grid, 2 + r % 2), replace=False))
        for ct in tiles:
            lo = ct * width + int(rng.integers(0, width - length + 1))
            if r == rows - 1 and ct == tiles[-1]:
                lo = cols - length
            indices.extend(range(lo, lo + length))
        indptr.append(len(indices))
    data = rng.standard_normal(len(indices)).astype(np.float32)
    return sp.csr_array(
        (data, np.array(indices, np.int32), np.array(indptr, np.int64)), shape=(rows, cols)
    )


@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("width", [96, 64])  # the tile column by a multiply, or by a shift
def test_runs_of_every_length_equal_numpy(monkeypatch, simd, bits, width):
    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    monkeypatch.setenv("FIBERFLOW_THREADS", "1")
    t = ff.Tensor.from_scipy(runs_matrix(300, width * 12, width, seed=bits))
    # 12 tile columns: past the compress loops' few, so bands take the run loops (long runs)
    for rows in (1, 7, 64, 300):
        img = ff.pack(t, (rows, width), coord_bits=bits, impl="c")
        ref = ff.pack(t, (rows, width), coord_bits=bits, impl="numpy")
        assert np.array_equal(img.data, ref.data), (rows, simd, bits)
    assert ff.unpack(ff.pack(t, (64, width), coord_bits=bits, impl="c")) == t


@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
def test_run_counts_at_the_largest_coordinates(monkeypatch, simd):
    """The counting pass finds each entry's tile column by a multiply and shift, in vector
    lanes at the vector levels: exact up to the largest coordinate a mode may have, with tile
    widths that are not powers of two, and runs that cross vector steps and rows."""
    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    monkeypatch.setenv("FIBERFLOW_THREADS", "1")
    cols = 2**31 - 1
    rng = np.random.default_rng(7)
    indptr, indices = [0], []
    for r in range(40):
        # a run straddling a tile boundary near the top of the range, and one at the very end
        lo = cols - 1_000_003 * (1 + r % 3) - 20
        indices.extend(range(lo, lo + 1 + r % 37))
        indices.extend(range(cols - 1 - r % 5, cols))
        indptr.append(len(indices))
    a = sp.csr_array(
        (
            rng.standard_normal(len(indices)).astype(np.float32),
            np.array(indices, np.int32),
            np.array(indptr, np.int64),
        ),
        shape=(40, cols),
    )
    t = ff.Tensor.from_scipy(a)
    for tile in ((40, 1_000_003), (3, 999_983), (40, 2**20)):
        img = ff.pack(t, tile, coord_bits=32, impl="c")
        ref = ff.pack(t, tile, coord_bits=32, impl="numpy")
        assert np.array_equal(img.data, ref.data), (tile, simd)


@pytest.mark.parametrize("simd", ["0", "avx2", "avx512"])
def test_banded_equal_numpy(monkeypatch, simd):
    """A 3-D stencil's diagonals (the benchmark's banded matrix, smaller): rows of a few short
    runs, several to a vector, at power-of-two and other tile widths, the last band ending at
    the arrays' end; and at wide tiles (two and four tile columns), where most bands lie in one
    tile column and are filled as a band of that one tile, and a few cross into the next."""
    from fiberflow.bench.pack import banded_csr

    monkeypatch.setenv("FIBERFLOW_SIMD", simd)
    monkeypatch.setenv("FIBERFLOW_THREADS", "1")
    t = ff.Tensor.from_scipy(banded_csr(8000, 160_000, seed=0))
    for tile in ((256, 256), (64, 128), (500, 1000), (100, 96), (8000, 700), (512, 4000),
                 (1024, 2048)):  # fmt: skip
        for bits in (16, 32):
            img = ff.pack(t, tile, coord_bits=bits, impl="c")
            ref = ff.pack(t, tile, coord_bits=bits, impl="numpy")
            assert np.array_equal(img.data, ref.data), (tile, bits, simd)
