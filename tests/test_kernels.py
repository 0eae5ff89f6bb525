"""ff.spmv / ff.spmm on every device against scipy, resident matrices, errors and RunStats.

The tests take the ``device`` fixture, parametrized over device names, so a new device (rtl,
pynq) joins them by adding its name to DEVICES.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import verify
from fiberflow.host.images import pack as packing

DEVICES = ["emu", pytest.param("rtl", marks=pytest.mark.rtl)]
# The rtl overlay under test computes both value types (the tests mix float32 and int32).
OPTIONS = {"rtl": {"dtype": ("float32", "int32")}}


_SHARED: dict[str, object] = {}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    name = request.param
    if name in OPTIONS:
        # Opening an rtl device generates the shell's Verilog (seconds): one device serves
        # every test, reset before each.
        if name not in _SHARED:
            _SHARED[name] = ff.open(name, **OPTIONS[name])
        dev = _SHARED[name]
        dev.reset()  # type: ignore[attr-defined]
        yield dev
        return
    dev = ff.open(name)
    yield dev
    dev.close()


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_matrix(m: int, n: int, density: float, seed: int = 0) -> sp.csr_array:
    A = sp.random_array((m, n), density=density, format="csr", rng=rng(seed), dtype=np.float64)
    A.data = (A.data * 2 - 1).astype(np.float64)
    return sp.csr_array(A.astype(np.float32))


def powerlaw(m: int, n: int, seed: int = 0) -> sp.csr_array:
    r = rng(seed)
    lengths = np.minimum((r.pareto(1.2, m) * 2).astype(int), n)
    rows = np.repeat(np.arange(m), lengths)
    cols = np.concatenate([r.choice(n, k, replace=False) for k in lengths]) if m else []
    vals = r.standard_normal(len(rows)).astype(np.float32)
    return sp.csr_array((vals, (rows, np.asarray(cols, dtype=int))), shape=(m, n))


def one_dense_row(m: int, n: int) -> sp.csr_array:
    A = random_matrix(m, n, 0.01, 3).tolil()
    A[m // 2, :] = rng(4).standard_normal(n).astype(np.float32)
    return sp.csr_array(A)


def empty_rows(m: int, n: int) -> sp.csr_array:
    A = random_matrix(m, n, 0.2, 5)
    keep = np.repeat(np.arange(m) % 3 == 0, np.diff(A.indptr))  # rows 1, 2, 4, 5, ... emptied
    A.data[~keep] = 0
    A.eliminate_zeros()
    return A


CASES = {
    "random": lambda: random_matrix(300, 200, 0.05),
    "1x1": lambda: sp.csr_array(np.array([[2.5]], dtype=np.float32)),
    "1xN": lambda: random_matrix(1, 1000, 0.3),
    "Nx1": lambda: random_matrix(1000, 1, 0.3),
    "empty rows": lambda: empty_rows(200, 150),
    "one dense row": lambda: one_dense_row(300, 500),
    "diagonal": lambda: sp.csr_array(sp.diags_array(np.arange(1, 401, dtype=np.float32))),
    "power law": lambda: powerlaw(500, 400),
    "all zero": lambda: sp.csr_array((250, 130), dtype=np.float32),
    "wider than a 16-bit tile": lambda: random_matrix(3, 70_000, 0.01),
    "banded": lambda: sp.csr_array(
        sp.diags_array([1.0, -2.0, 1.0], offsets=[-1, 0, 1], shape=(777, 777), dtype=np.float32)
    ),
}
# Small tiles that do not divide the shapes, plus the default.
TILES = [None, (7, 13), (64, 50)]


def check_close(y: np.ndarray, A: sp.sparray, x: np.ndarray) -> None:
    """fp32 tolerance: a sequential sum of L products errs by at most about L * eps * |A||x|
    (``fiberflow.verify``, which ``fiberflow run`` and the benchmarks report)."""
    assert y.dtype == np.float32
    assert y.shape == (A.shape[0],)
    ok, verdict = verify.against_scipy(y, A, x)
    assert ok, verdict


@pytest.mark.parametrize("tile", TILES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_spmv_float32_matches_scipy(device, case: str, tile) -> None:  # type: ignore[no-untyped-def]
    A = CASES[case]()
    x = rng(1).standard_normal(A.shape[1]).astype(np.float32)
    y = ff.spmv(A, x, device=device, tile=tile)
    check_close(y, A, x)
    assert device.last_stats.nnz == A.nnz


@pytest.mark.parametrize("tile", TILES, ids=str)
@pytest.mark.parametrize("case", ["random", "empty rows", "power law", "1xN", "Nx1", "all zero"])
def test_spmm_float32_matches_scipy_and_spmv(device, case: str, tile) -> None:  # type: ignore[no-untyped-def]
    A = CASES[case]()
    B = rng(2).standard_normal((A.shape[1], 5)).astype(np.float32)
    C = ff.spmm(A, B, device=device, tile=tile)
    assert C.shape == (A.shape[0], 5)
    for j in range(5):
        check_close(C[:, j], A, B[:, j])
        # Each column of C is bit-identical to an SpMV with that column.
        y = ff.spmv(A, np.ascontiguousarray(B[:, j]), device=device, tile=tile)
        assert np.array_equal(C[:, j].view(np.uint32), y.view(np.uint32))


@pytest.mark.parametrize(
    "case", ["random", "power law", "one dense row", "wider than a 16-bit tile"]
)
def test_result_bits_do_not_depend_on_the_tile_shape(device, case: str) -> None:  # type: ignore[no-untyped-def]
    A = CASES[case]()
    x = rng(3).standard_normal(A.shape[1]).astype(np.float32) * 1e3
    results = [ff.spmv(A, x, device=device, tile=t).view(np.uint32) for t in [*TILES, (1, 1)]]
    for r in results[1:]:
        assert np.array_equal(r, results[0])


def wrap32(v: np.ndarray) -> np.ndarray:
    return (np.asarray(v, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


@pytest.mark.parametrize("tile", TILES, ids=str)
def test_int32_is_exact_and_wraps_around(device, tile) -> None:  # type: ignore[no-untyped-def]
    r = rng(7)
    A = sp.random_array((120, 90), density=0.2, format="csr", rng=r, dtype=np.float64)
    A.data = r.integers(-(2**31), 2**31, A.nnz)
    A = sp.csr_array(A.astype(np.int32))
    x = r.integers(-(2**31), 2**31, 90).astype(np.int32)
    y = ff.spmv(A, x, device=device, tile=tile)
    # Exact: Python integers, then two's-complement wrap to 32 bits.
    A64 = sp.csr_array(A, dtype=np.int64)
    exact = [
        sum(int(a) * int(x[j]) for a, j in zip(A64.data[s:e], A64.indices[s:e], strict=True))
        for s, e in zip(A64.indptr[:-1], A64.indptr[1:], strict=True)
    ]
    assert y.dtype == np.int32
    assert np.array_equal(y, wrap32(np.array([v % 2**32 for v in exact])))
    B = r.integers(-1000, 1000, (90, 3)).astype(np.int32)
    C = ff.spmm(A, B, device=device, tile=tile)
    assert np.array_equal(C, wrap32((A64 @ B.astype(np.int64)) % 2**32))


def test_small_int32_matches_scipy_exactly(device) -> None:  # type: ignore[no-untyped-def]
    A = sp.csr_array(powerlaw(300, 300, 9) * 10, dtype=np.int32)
    x = np.arange(300, dtype=np.int32) - 150
    assert np.array_equal(ff.spmv(A, x, device=device), A @ x)


def test_accepts_tensors_in_any_format(device) -> None:  # type: ignore[no-untyped-def]
    A = CASES["power law"]()
    x = rng(5).standard_normal(A.shape[1]).astype(np.float32)
    expected = ff.spmv(A, x, device=device).view(np.uint32)
    for fmt in ["ds", "ss", "ds:1,0", "ss:1,0"]:
        t = ff.Tensor.from_scipy(A, format=fmt)
        assert np.array_equal(ff.spmv(t, x, device=device).view(np.uint32), expected)
    # scipy sparse matrices (not only arrays), COO input
    assert np.array_equal(ff.spmv(sp.csr_matrix(A), x, device=device).view(np.uint32), expected)
    assert np.array_equal(ff.spmv(sp.coo_array(A), x, device=device).view(np.uint32), expected)


def test_float64_needs_an_explicit_dtype(device) -> None:  # type: ignore[no-untyped-def]
    A = random_matrix(40, 30, 0.2).astype(np.float64)
    x = rng(6).standard_normal(30)
    with pytest.raises(ff.DTypeError, match="dtype='float32'"):
        ff.spmv(A, x, device=device)
    y = ff.spmv(A, x, device=device, dtype="float32")
    check_close(y, A.astype(np.float32), x.astype(np.float32))


# -- resident matrices ------------------------------------------------------------------------


def test_resident_matrix_is_packed_once(device, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    A = CASES["power law"]()
    h = device.put(A, tile=(64, 50))
    calls = []
    real = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = rng(8).standard_normal(A.shape[1]).astype(np.float32)
    for _ in range(5):  # a power iteration: y = A x, normalised, again
        y = ff.spmv(h, x[: A.shape[1]], device=device)
        x = np.resize(y / max(np.abs(y).max(), 1), A.shape[1]).astype(np.float32)
    C = ff.spmm(h, np.ones((A.shape[1], 2), np.float32), device=device)
    assert calls == []
    assert np.array_equal(
        ff.spmv(h, x, device=device).view(np.uint32),
        ff.spmv(A, x, device=device, tile=(64, 50)).view(np.uint32),
    )
    assert len(calls) == 1  # the non-resident call packs
    check_close(C[:, 0], A, np.ones(A.shape[1], np.float32))
    assert h.image_bytes > 0 and h.nnz == A.nnz and h.shape == A.shape


def test_resident_handles_belong_to_their_device(device) -> None:  # type: ignore[no-untyped-def]
    A = CASES["random"]()
    x = np.ones(A.shape[1], np.float32)
    h = device.put(A)
    other = ff.open("emu")
    with pytest.raises(ff.DeviceError, match="another device"):
        ff.spmv(h, x, device=other)
    h.free()
    with pytest.raises(ff.DeviceError, match="freed"):
        ff.spmv(h, x, device=device)
    check_close(ff.spmv(A, x, device=device), A, x)


def test_temporary_buffers_are_freed() -> None:
    dev = ff.open("emu")
    A = CASES["random"]()
    ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev)
    ff.spmm(A, np.ones((A.shape[1], 3), np.float32), device=dev)
    assert dev.memory_used == 0
    h = dev.put(A)
    assert dev.memory_used == h.image_bytes
    with pytest.raises(ff.ShapeError):
        ff.spmv(h, np.ones(3, np.float32), device=dev)
    assert dev.memory_used == h.image_bytes


# -- bad input --------------------------------------------------------------------------------

GOOD = random_matrix(20, 10, 0.3)
X = np.ones(10, np.float32)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda d: ff.spmv(GOOD, np.ones(11, np.float32), device=d), ff.ShapeError, "length 11"),
        (lambda d: ff.spmv(GOOD, np.ones((10, 1), np.float32), device=d), ff.ShapeError, "1-D"),
        (lambda d: ff.spmm(GOOD, np.ones((9, 2), np.float32), device=d), ff.ShapeError, "9 rows"),
        (lambda d: ff.spmm(GOOD, np.ones(10, np.float32), device=d), ff.ShapeError, "2-D"),
        (lambda d: ff.spmm(GOOD, np.ones((10, 0), np.float32), device=d), ff.ShapeError, "no col"),
        (lambda d: ff.spmv(GOOD, X.astype(np.int32), device=d), ff.DTypeError, "int32"),
        (lambda d: ff.spmv(GOOD, X.astype(np.complex64), device=d), ff.DTypeError, "complex64"),
        (lambda d: ff.spmv(GOOD.astype(np.int64), X, device=d), ff.DTypeError, "int64"),
        (lambda d: ff.spmv(GOOD, X, device=d, dtype="float64"), ff.DTypeError, "float64"),
        (lambda d: ff.spmv(GOOD.toarray(), X, device=d), ff.FiberflowError, "dense numpy"),
        (lambda d: ff.spmv([[1.0]], X, device=d), ff.FiberflowError, "scipy.sparse"),
        (lambda d: ff.spmv(GOOD, sp.csr_array(X[None, :]), device=d), ff.ShapeError, "dense"),
        (
            lambda d: ff.spmv(
                ff.Tensor.from_coo([[0], [0], [0]], [1.0], (2, 2, 2), dtype="float32"), X, device=d
            ),
            ff.ShapeError,
            "2-D",
        ),
        (lambda d: ff.spmv(sp.coo_array(X), X, device=d), ff.ShapeError, "2-D"),
        (lambda d: ff.spmv(GOOD, X), ff.DeviceError, "device="),
        (lambda d: ff.spmv(GOOD, X, device="emu"), ff.DeviceError, "ff.open"),
        (lambda d: ff.spmv(GOOD, X, device=d, tile=(0, 4)), ff.TileShapeError, "at least 1"),
        (lambda d: d.put(d.put(GOOD)), ff.FiberflowError, "already resident"),
    ],
)
def test_bad_input_raises_and_the_device_stays_usable(device, call, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call(device)
    check_close(ff.spmv(GOOD, X, device=device), GOOD, X)


def test_open_rejects_unknown_devices_and_options() -> None:
    with pytest.raises(ff.DeviceError, match="no device named"):
        ff.open("gpu")
    with pytest.raises(ff.DeviceError, match="needs overlay=DIR"):
        ff.open("pynq")
    with pytest.raises(ff.DeviceError, match="lanes"):
        ff.open("emu", lanes=0)
    with pytest.raises(ff.DeviceError, match="options"):
        ff.open("emu", colour="blue")


# -- NaN and Inf ------------------------------------------------------------------------------


def test_nan_and_inf_propagate(device) -> None:  # type: ignore[no-untyped-def]
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    A = sp.csr_array(
        np.array(
            [
                [1, 2, 0, 0],  # x has NaN at column 1 -> NaN
                [inf, 0, 0, 0],  # inf * 1 -> inf
                [inf, 0, -inf, 0],  # inf + -inf -> NaN
                [0, 0, 0, 3],  # untouched by the NaN -> finite
                [0, 0, 0, 0],  # empty row -> +0.0
                [-inf, 0, 0, 1],  # -inf + 1 -> -inf
            ],
            dtype=np.float32,
        )
    )
    x = np.array([1, nan, 1, 2], dtype=np.float32)
    y = ff.spmv(A, x, device=device)
    assert np.isnan(y[0]) and y[1] == inf and np.isnan(y[2]) and y[3] == 6 and y[5] == -inf
    assert y.view(np.uint32)[4] == 0  # +0.0
    # Every NaN an operation makes is the canonical quiet NaN (docs/emulator.md).
    assert y.view(np.uint32)[0] == 0x7FC00000 and y.view(np.uint32)[2] == 0x7FC00000
    # An explicitly stored zero times inf is NaN, as IEEE says (and as scipy computes).
    Z = sp.csr_array(([0.0], ([0], [0])), shape=(1, 1), dtype=np.float32)
    assert np.isnan(ff.spmv(Z, np.array([inf]), device=device)[0])


# -- RunStats ---------------------------------------------------------------------------------


def test_run_stats_follow_the_performance_model(device) -> None:  # type: ignore[no-untyped-def]
    A = CASES["power law"]()
    ff.spmm(A, np.ones((A.shape[1], 3), np.float32), device=device, tile=(32, 64))
    s = device.last_stats
    assert isinstance(s, ff.RunStats)
    assert s.kernel == "spmm" and s.nnz == A.nnz and s.work == 3 * A.nnz
    assert s.lanes == device.lanes == len(s.lane_busy_cycles) == len(s.lane_stall_cycles)
    # A lane is busy for its work plus, per tile, its start-up and drain and the tail of the
    # last rows' sequential sums (about 8 cycles per add of the longest, docs/overlay.md):
    # counted on rtl, modelled on emu. Here 130-150 cycles per tile on average.
    assert s.work < sum(s.lane_busy_cycles) < s.work + 256 * s.tiles
    assert all(
        b + st == s.cycles for b, st in zip(s.lane_busy_cycles, s.lane_stall_cycles, strict=True)
    )
    assert s.cycles >= s.roofline_cycles and 0 < s.efficiency <= 1
    assert s.dma_bytes > A.nnz * 6  # at least values and 16-bit coordinates cross the bus
    assert s.seconds_est == pytest.approx(s.cycles / (s.clock_mhz * 1e6))
    assert s.bus_bytes_per_cycle == device.bus_bytes_per_cycle and s.clock_mhz == device.clock_mhz
    assert "cycles" in s.summary()


def test_more_lanes_estimate_fewer_cycles() -> None:
    A = random_matrix(4000, 4000, 0.01, 11)
    x = np.ones(4000, np.float32)
    cycles = []
    for lanes in (1, 2, 4):
        dev = ff.open("emu", lanes=lanes, bus_bytes_per_cycle=1024)  # compute-bound
        ff.spmv(A, x, device=dev, tile=(256, 4000))
        cycles.append(dev.last_stats.cycles)
        assert dev.last_stats.bound == "compute"
    assert cycles[0] > cycles[1] > cycles[2]
    # 16 row tiles balance well over 4 lanes; the control CPU's set-up of each tile (serial,
    # about 2,800 cycles) keeps the gain below 4
    assert cycles[0] / cycles[2] > 2.5


@pytest.mark.slow
def test_resident_spmv_throughput_target() -> None:
    """Resident emu SpMV on a 4M-nonzero float32 matrix reaches at least half of scipy's
    A @ x throughput (medians of interleaved rounds in one process)."""
    from fiberflow.bench._roofline import interleaved_medians
    from fiberflow.bench.pack import random_csr

    A = random_csr(200_000, 4_000_000, 0)
    x = rng(0).standard_normal(200_000).astype(np.float32)
    dev = ff.open("emu")
    h = dev.put(A)
    secs = interleaved_medians(
        {"scipy": lambda: A @ x, "emu": lambda: ff.spmv(h, x, device=dev)}, repeat=15
    )
    assert secs["scipy"] / secs["emu"] >= 0.5, secs
