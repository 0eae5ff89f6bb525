"""The emulator device itself: its options, its timeout, the checks of its C entry point, and
its fast paths (plain IEEE runs under the exception flags, AVX2 gathers) against a reference
of the order docs/emulator.md fixes, on matrices large enough to take those paths."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.devices.emu import ERRORS
from fiberflow.host.images import job

FLT_MIN = np.float32(np.finfo(np.float32).tiny)
CANONICAL_NAN = 0x7FC00000


def ftz(v: np.ndarray) -> np.ndarray:
    """Subnormals to zeros of the same sign."""
    v = np.array(v, dtype=np.float32)
    sub = (np.abs(v) < FLT_MIN) & (v != 0)
    v[sub] = np.copysign(np.float32(0), v[sub])
    return v


def reference_spmv(A: sp.csr_array, x: np.ndarray, y0: np.ndarray | None = None) -> np.ndarray:
    """The hardware's SpMV (flushing, canonical NaN), one float32 operation at a time per row,
    in increasing column order; step i does every row's i-th product at once."""
    A = sp.csr_array(A)
    A.sum_duplicates()
    A.sort_indices()
    m = A.shape[0]
    lens = np.diff(A.indptr)
    acc = np.zeros(m, np.float32) if y0 is None else np.array(y0, np.float32)
    touched = lens > 0
    acc[touched] = ftz(acc[touched])
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(int(lens.max(initial=0))):
            rows = np.flatnonzero(lens > i)
            q = A.indptr[rows] + i
            p = ftz(ftz(A.data[q]) * ftz(x[A.indices[q]]))
            acc[rows] = ftz(acc[rows] + p)
    bits = acc.view(np.uint32)
    bits[np.isnan(acc) & touched] = CANONICAL_NAN
    return acc


def random_matrix(m: int, n: int, density: float, seed: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    A = sp.random_array((m, n), density=density, format="csr", rng=rng, dtype=np.float32)
    A.data[:] = rng.standard_normal(A.nnz).astype(np.float32)
    return sp.csr_array(A)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


# -- options and arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"memory_bytes": "big"},
        {"memory_bytes": 0},
        {"memory_bytes": -4096},
        {"memory_bytes": True},
        {"clock_mhz": "fast"},
        {"clock_mhz": float("inf")},
        {"clock_mhz": float("nan")},
        {"clock_mhz": 0},
        {"clock_mhz": True},
        {"lanes": True},
        {"lanes": 2.5},
        {"lanes": "4"},
        {"bus_bytes_per_cycle": 0},
    ],
)
def test_bad_options_raise_device_error(options: dict[str, object]) -> None:
    with pytest.raises(ff.DeviceError):
        ff.open("emu", **options)


def test_good_options_are_kept() -> None:
    dev = ff.open("emu", lanes=np.int64(2), clock_mhz=250, memory_bytes=1 << 20)
    assert (dev.lanes, dev.clock_mhz, dev.memory_bytes) == (2, 250.0, 1 << 20)
    assert isinstance(dev.clock_mhz, float)


@pytest.mark.parametrize("timeout", ["5", 0, -1.0, float("nan"), True, None])
def test_wait_refuses_a_timeout_that_is_not_a_positive_number(timeout: object) -> None:
    dev = ff.open("emu")
    A = random_matrix(50, 40, 0.1, 0)
    h = dev.put(A)
    table, tiles = h.schedule(dev.lanes, 1)
    xb, yb = dev.alloc(4 * 40), dev.alloc(4 * 50)
    jb = dev.alloc(job.descriptor_bytes(len(table), len(tiles)))
    job.write_descriptor(
        jb.array, kernel="spmv", dtype=np.dtype(np.float32), m=50, n=40, k=1,
        a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address, y_addr=yb.address,
        lane_table=table, tile_list=tiles,
    )  # fmt: skip
    job_id = dev.submit(jb)
    with pytest.raises(ff.DeviceError, match="timeout"):
        dev.wait(job_id, timeout=timeout)  # type: ignore[arg-type]
    dev.wait(job_id, timeout=5)  # the job is still queued, and runs


# -- timeout ----------------------------------------------------------------------------------


def test_a_tiny_timeout_stops_a_large_job_quickly_and_the_device_stays_usable() -> None:
    A = random_matrix(20_000, 20_000, 1_000_000 / 20_000**2, 1)
    x = np.random.default_rng(1).standard_normal(20_000).astype(np.float32)
    dev = ff.open("emu")
    h = dev.put(A)
    expected = ff.spmv(h, x, device=dev)
    start = time.monotonic()
    with pytest.raises(ff.DeviceTimeoutError, match="did not finish within"):
        ff.spmv(h, x, device=dev, timeout=1e-4)
    assert time.monotonic() - start < 1e-4 * 1.1 + 0.2
    assert same_bits(ff.spmv(h, x, device=dev), expected)
    h.free()
    assert dev.memory_used == 0


def test_a_deadline_is_kept_inside_one_tile() -> None:
    # One tile holds the whole matrix, so the clock must be read between rows.
    A = random_matrix(4000, 4000, 0.06, 2)
    x = np.ones(4000, np.float32)
    dev = ff.open("emu", lanes=1)
    h = dev.put(A, tile=(4096, 4096))
    assert len(h.directory.nvals) == 1
    with pytest.raises(ff.DeviceTimeoutError):
        ff.spmv(h, x, device=dev, timeout=1e-6)
    assert same_bits(ff.spmv(h, x, device=dev), reference_spmv(A, x))


# -- the C entry point ------------------------------------------------------------------------


def c_job(h: ff.ResidentMatrix, x: np.ndarray, y: np.ndarray, **lies: int):  # type: ignore[no-untyped-def]
    """An ff_emu_job for the resident ``h``, straight to the C function, with the given fields
    replaced."""
    from fiberflow.host._cemu import ffi

    _, tiles = h.schedule(4, 1)
    tiles = np.ascontiguousarray(tiles, dtype=np.uint32)
    image = h.buffer.array
    fields = {
        "image": ffi.from_buffer("uint8_t[]", image),
        "image_bytes": image.nbytes,
        "tiles": ffi.from_buffer("uint32_t[]", tiles),
        "n_tiles": len(tiles),
        "x": ffi.from_buffer("uint8_t[]", x),
        "x_bytes": x.nbytes,
        "y": ffi.from_buffer("uint8_t[]", y),
        "y_bytes": 4 * h.shape[0],
        "m": h.shape[0],
        "n": h.shape[1],
        "k": 1,
        "dtype": 1,
        "ftz": 1,
        "canonical_nan": 1,
        "deadline_ns": 0,
    }
    fields.update(lies)
    return ffi.new("ff_emu_job *", fields), (tiles, image, x, y)


@pytest.mark.parametrize(
    ("lies", "code"),
    [
        ({}, 0),
        ({"y_bytes": 4 * 300 - 4}, -6),  # y one element short of m
        ({"x_bytes": 4 * 200 - 4}, -6),  # x one element short of n
        ({"k": 2}, -6),  # B and C would need twice the bytes
        ({"k": 0}, -6),
        ({"m": -1}, -6),
        ({"m": 1 << 40}, -6),
        ({"n": 1 << 40}, -6),
        ({"image_bytes": 64}, -1),
    ],
)
def test_c_entry_point_checks_sizes_and_never_writes_past_y(
    lies: dict[str, int], code: int
) -> None:
    from fiberflow.host._cemu import ffi, lib

    A = random_matrix(300, 200, 0.05, 3)
    dev = ff.open("emu")
    h = dev.put(A, tile=(64, 64))
    x = np.random.default_rng(3).standard_normal(200).astype(np.float32)
    guarded = np.full(4 * 300 + 256, 0xAB, dtype=np.uint8)
    y = guarded[: 4 * 300]
    y[:] = 0
    cjob, _alive = c_job(h, x.view(np.uint8), y, **lies)
    bad = ffi.new("int64_t *")
    assert lib.ff_emu_run(cjob, bad) == code
    assert (guarded[4 * 300 :] == 0xAB).all()  # nothing written past y
    if code == 0:
        assert same_bits(y.view(np.float32), reference_spmv(A, x))
    else:
        assert code in ERRORS and not y.any()


def test_c_entry_point_refuses_a_tile_outside_the_grid() -> None:
    from fiberflow.host._cemu import ffi, lib

    A = random_matrix(300, 200, 0.05, 4)
    dev = ff.open("emu")
    h = dev.put(A, tile=(64, 64))
    image = h.buffer.array
    image.flags.writeable = True  # read-only on the host after put; damage it anyway
    dir_offset = int(image[32:40].view("<u8")[0])
    image[dir_offset + 16 : dir_offset + 20] = np.array([5], "<u4").view(np.uint8)  # row tile 5
    x = np.ones(200, np.float32)
    guarded = np.full(4 * 300 + 64, 0xAB, dtype=np.uint8)
    y = guarded[: 4 * 300]
    cjob, _alive = c_job(h, x.view(np.uint8), y)
    bad = ffi.new("int64_t *")
    assert lib.ff_emu_run(cjob, bad) == -2 and bad[0] >= 0
    assert (guarded[4 * 300 :] == 0xAB).all()


def test_row_tiles_run_in_parallel_with_the_same_bits() -> None:
    """Threads take whole row tiles; each row tile's tiles stay in order on one thread, and
    row tiles with a subnormal are redone exactly by the thread that ran them."""
    from fiberflow.host._cemu import ffi, lib

    rng = np.random.default_rng(11)
    A = random_matrix(3000, 2000, 0.01, 11)
    A.data[A.indptr[700] : A.indptr[760]] *= np.float32(1e-37)  # products underflow here
    x = rng.standard_normal(2000).astype(np.float32)
    h = ff.open("emu").put(A, tile=(64, 500))
    want = reference_spmv(A, x)
    for threads in (1, 2, 4, 16, 64):
        y = np.zeros(3000, np.float32)
        cjob, _alive = c_job(h, x.view(np.uint8), y.view(np.uint8), threads=threads)
        bad = ffi.new("int64_t *")
        assert lib.ff_emu_run(cjob, bad) == 0 and bad[0] == -1
        assert same_bits(y, want), threads


def test_with_threads_a_failure_names_the_first_bad_tile_in_the_list() -> None:
    """Row tiles are taken in list order, so every row tile before a failing one has been
    taken and finishes: the error names the first bad entry, as on one thread."""
    from fiberflow.host._cemu import ffi, lib

    A = random_matrix(3000, 2000, 0.01, 12)
    h = ff.open("emu").put(A, tile=(64, 500))
    _, tiles = h.schedule(4, 1)
    image = h.buffer.array
    image.flags.writeable = True  # read-only on the host after put; damage it anyway
    dir_offset = int(image[32:40].view("<u8")[0])
    for entry in (len(tiles) // 2, len(tiles) - 3):  # two tiles' first coordinate: too large
        e = dir_offset + 32 * int(tiles[entry])
        tile = int(image[e : e + 8].view("<u8")[0])
        crd = tile + int(image[tile + 28 : tile + 32].view("<u4")[0])
        image[crd : crd + 2] = np.array([600], "<u2").view(np.uint8)
    x = np.ones(2000, np.float32)
    for threads in (1, 2, 4, 8):
        y = np.zeros(3000, np.float32)
        cjob, _alive = c_job(h, x.view(np.uint8), y.view(np.uint8), threads=threads)
        bad = ffi.new("int64_t *")
        assert lib.ff_emu_run(cjob, bad) == -5 and bad[0] == len(tiles) // 2, threads


def test_the_device_refuses_an_output_overlapping_the_image() -> None:
    dev = ff.open("emu")
    A = random_matrix(100, 100, 0.05, 5)
    h = dev.put(A)
    table, tiles = h.schedule(dev.lanes, 1)
    xb = dev.alloc(400)
    jb = dev.alloc(job.descriptor_bytes(len(table), len(tiles)))
    job.write_descriptor(
        jb.array, kernel="spmv", dtype=np.dtype(np.float32), m=100, n=100, k=1,
        a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address,
        y_addr=h.buffer.address, lane_table=table, tile_list=tiles,
    )  # fmt: skip
    with pytest.raises(ff.DeviceError, match="overlaps its matrix image"):
        dev.submit(jb)


# -- fast paths, bit for bit ------------------------------------------------------------------


def test_plain_runs_match_the_reference_on_a_large_matrix() -> None:
    # Random normal values: no subnormal anywhere, so every row tile runs plain (and, with
    # AVX2, eight rows at a time).
    A = random_matrix(3000, 70_000, 0.0005, 6)
    x = np.random.default_rng(6).standard_normal(70_000).astype(np.float32)
    dev = ff.open("emu")
    for tile in [None, (64, 1000), (8, 65536), (3000, 7)]:
        assert same_bits(ff.spmv(A, x, device=dev, tile=tile), reference_spmv(A, x))


def test_a_subnormal_anywhere_gives_the_flushed_result() -> None:
    rng = np.random.default_rng(7)
    A = random_matrix(2000, 2000, 0.01, 7)
    x = rng.standard_normal(2000).astype(np.float32)
    dev = ff.open("emu")
    # Subnormal operands, in A and in x.
    A2 = A.copy()
    A2.data[::97] = np.float32(3e-39) * np.sign(A2.data[::97])
    x2 = x.copy()
    x2[::53] = np.float32(-5e-40)
    # Products that underflow, and sums that cancel to a subnormal exactly (an exact result,
    # which only the per-row test of the final sum catches when nothing uses it afterwards).
    A3 = A.copy()
    A3.data[::31] *= np.float32(1e-36)
    B = sp.csr_array(
        (np.array([1.5, -1.0, 1.25, -1.0, 2.0], np.float32) * FLT_MIN,
         np.array([0, 1, 5, 6, 9]), np.array([0, 2, 2, 4, 5, 5, 5, 5, 5, 5, 5])),
        shape=(10, 10),
    )  # fmt: skip
    cases = [(A2, x), (A, x2), (A3, x), (B, np.ones(10, np.float32))]
    for M, v in cases:
        got = ff.spmv(M, v, device=dev)
        assert same_bits(got, reference_spmv(M, v))
    assert ff.spmv(B, np.ones(10, np.float32), device=dev)[:2].tolist() == [0.0, 0.0]


def test_nan_inf_and_uneven_rows() -> None:
    rng = np.random.default_rng(8)
    A = random_matrix(1000, 1000, 0.01, 8).tolil()
    A[5, :] = rng.standard_normal(1000).astype(np.float32)  # one long row among short ones
    A[17, 3] = np.inf
    A[17, 9] = -np.inf
    A = sp.csr_array(A, dtype=np.float32)
    x = rng.standard_normal(1000).astype(np.float32)
    x[::101] = np.float32("nan")
    x[7] = np.inf
    got = ff.spmv(A, x, device=ff.open("emu"))
    assert same_bits(got, reference_spmv(A, x))
    assert np.isnan(got).any()


def test_rows_without_entries_keep_their_bits_when_accumulating() -> None:
    A = random_matrix(64, 64, 0.05, 9).tolil()
    A[3, :] = 0
    A[40, :] = 0
    A = sp.csr_array(A, dtype=np.float32)
    A.eliminate_zeros()
    x = np.ones(64, np.float32)
    y0 = np.linspace(-1, 1, 64, dtype=np.float32)
    y0.view(np.uint32)[3] = 0x7FA00001  # a signalling NaN with a payload
    y0[40] = np.float32(2e-39)  # a subnormal no operation touches
    dev = ff.open("emu", lanes=1)
    h = dev.put(A, tile=(64, 64))
    table, tiles = h.schedule(1, 1)
    xb, yb = dev.alloc(256), dev.alloc(256)
    xb.write(x)
    yb.write(y0)
    jb = dev.alloc(job.descriptor_bytes(1, len(tiles)))
    job.write_descriptor(
        jb.array, kernel="spmv", dtype=np.dtype(np.float32), m=64, n=64, k=1,
        a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address, y_addr=yb.address,
        lane_table=table, tile_list=tiles, flags=job.FLAG_ACCUMULATE,
    )  # fmt: skip
    dev.wait(dev.submit(jb), timeout=5)
    got = yb.view(np.float32).copy()
    assert (
        got.view(np.uint32)[3] == 0x7FA00001 and got.view(np.uint32)[40] == y0.view(np.uint32)[40]
    )
    assert same_bits(got, reference_spmv(A, x, y0))


def test_spmm_columns_match_the_reference_with_and_without_subnormals() -> None:
    rng = np.random.default_rng(10)
    A = random_matrix(600, 500, 0.02, 10)
    B = rng.standard_normal((500, 5)).astype(np.float32)
    dev = ff.open("emu")
    B2 = B.copy()
    B2[::7, 3] = np.float32(1e-39)  # subnormal operands in one column only
    for dense in (B, B2):
        C = ff.spmm(A, dense, device=dev, tile=(64, 128))
        for c in range(dense.shape[1]):
            assert same_bits(np.ascontiguousarray(C[:, c]), reference_spmv(A, dense[:, c]))


def test_tile_limits_are_the_modelled_overlays() -> None:
    """The emulator says which tiles the overlay it models takes, as the rtl and board devices
    do for theirs: SpMM's tiles for k can then be worked out with no hardware (the same
    508 x 1020 the rtl device's record has for k = 8)."""
    from fiberflow.bench.counted import spmm_tile

    emu = ff.open("emu")
    assert emu.tile_limits() == (4094, 8190)  # 16 KiB y and 32 KiB x, less a spare 8-byte beat
    assert spmm_tile(emu, 8, (16000, 8000)) == (508, 1020)
    assert ff.open("emu", x_bytes=65536, y_bytes=32768).tile_limits() == (8190, 16382)
