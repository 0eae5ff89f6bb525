"""The emulator's float32 results, bit for bit, against the order docs/emulator.md defines,
re-computed here in plain Python one rounded operation at a time."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import fiberflow as ff
from fiberflow.host.devices import emu

TINY = np.finfo(np.float32).tiny
CANONICAL_NAN = np.uint32(0x7FC00000).view(np.float32)


def reference_spmv(A: sp.csr_array, x: np.ndarray, policy: dict[str, str]) -> np.ndarray:
    """y[i] = (((+0 + a_i0*x_0) + a_i1*x_1) + ...) in increasing column order, each product
    and each sum rounded to float32; with subnormal flushing when the policy says so."""
    ftz = policy["subnormals"] == "flush"

    def fl(v: np.float32) -> np.float32:
        if ftz and v != 0 and abs(v) < TINY:
            return np.float32(np.copysign(np.float32(0), v))
        return v

    y = np.zeros(A.shape[0], dtype=np.float32)
    with np.errstate(all="ignore"):
        for i in range(A.shape[0]):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            if lo == hi:
                continue
            acc = np.float32(0.0)
            for q in range(lo, hi):
                p = fl(np.float32(fl(A.data[q]) * fl(x[A.indices[q]])))
                acc = fl(np.float32(fl(acc) + p))
            if policy["nan"] == "canonical" and np.isnan(acc):
                acc = CANONICAL_NAN
            y[i] = acc
    return y


SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -3e-39, 1.1754942e-38, 3.4e38, -3.4e38]


@st.composite
def values(draw: st.DrawFn, size: int) -> np.ndarray:
    kind = draw(st.sampled_from(["normal", "wide", "special"]))
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        v = r.standard_normal(size)
    elif kind == "wide":  # exponents from subnormal to near overflow: rounding everywhere
        v = r.standard_normal(size) * 10.0 ** r.integers(-40, 38, size)
    else:
        v = np.where(r.random(size) < 0.3, r.choice(SPECIAL, size), r.standard_normal(size))
    with np.errstate(over="ignore"):
        return v.astype(np.float32)


@st.composite
def problems(draw: st.DrawFn) -> tuple[sp.csr_array, np.ndarray, tuple[int, int]]:
    m, n = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    density = draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = r.random((m, n)) < density
    rows, cols = np.nonzero(mask)
    A = sp.csr_array((draw(values(len(rows))), (rows, cols)), shape=(m, n), dtype=np.float32)
    x = draw(values(n))
    tile = (draw(st.integers(1, 10)), draw(st.integers(1, 10)))
    return A, x, tile


POLICIES = [
    {"subnormals": "flush", "nan": "canonical"},  # the hardware's (overlay/lanes/fp32.py)
    {"subnormals": "keep", "nan": "canonical"},
    {"subnormals": "keep", "nan": "propagate"},  # numpy float32 on the host
]


@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p['subnormals']}-{p['nan']}")
@given(problem=problems())
def test_emulator_is_bit_exact_with_the_reference_order(policy, threads, problem) -> None:  # type: ignore[no-untyped-def]
    """With 3 threads the kernel runs row tiles in parallel (each row tile's tiles in order on
    one thread, the plain-then-exact redo per thread): the bits must not change."""
    A, x, tile = problem
    saved = dict(emu.FP32_POLICY)
    emu.FP32_POLICY.update(policy)
    saved_threads = os.environ.get("FIBERFLOW_THREADS")
    os.environ["FIBERFLOW_THREADS"] = threads
    try:
        dev = ff.open("emu", lanes=3)
        y = ff.spmv(A, x, device=dev, tile=tile)
        C = ff.spmm(A, np.stack([x, x[::-1]], axis=1), device=dev, tile=tile) if len(x) else None
    finally:
        emu.FP32_POLICY.clear()
        emu.FP32_POLICY.update(saved)
        if saved_threads is None:
            del os.environ["FIBERFLOW_THREADS"]
        else:
            os.environ["FIBERFLOW_THREADS"] = saved_threads
    expected = reference_spmv(A, x, policy)
    same_bits(y, expected, policy)
    if C is not None:
        same_bits(C[:, 0], expected, policy)
        same_bits(C[:, 1], reference_spmv(A, np.ascontiguousarray(x[::-1]), policy), policy)


def same_bits(got: np.ndarray, expected: np.ndarray, policy: dict[str, str]) -> None:
    if policy["nan"] == "propagate":
        # Which NaN x86 returns depends on operand order, which a compiler may swap in a
        # commutative operation: only NaN-ness is defined under this policy.
        nan = np.isnan(expected)
        assert np.array_equal(np.isnan(got), nan)
        got, expected = got[~nan], expected[~nan]
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_products_are_added_in_increasing_column_order() -> None:
    # Row 0: (1e8 + -1e8) + 1 = 1.  Row 1: (1 + 1e8) + -1e8 = 0 in float32 (1e8 + 1 rounds
    # back to 1e8). float64, or any other order, would give 1 for both.
    A = sp.csr_array(np.array([[1e8, -1e8, 1.0], [1.0, 1e8, -1e8]], dtype=np.float32))
    x = np.ones(3, np.float32)
    dev = ff.open("emu")
    for tile in [None, (1, 1), (2, 2), (1, 2)]:
        y = ff.spmv(A, x, device=dev, tile=tile)
        assert y.tolist() == [1.0, 0.0]
    assert (A.astype(np.float64) @ x.astype(np.float64)).tolist() == [1.0, 1.0]


def test_products_are_rounded_before_they_are_added() -> None:
    # a * x = (1 + 2^-23)(1 + 2^-22) = 1 + 3 * 2^-23 + 2^-45 exactly; rounded to float32 it is
    # 1 + 3 * 2^-23, so -1 + a * x gives 3 * 2^-23. A fused multiply-add would keep the 2^-45.
    a, b = np.float32(1 + 2**-23), np.float32(1 + 2**-22)
    A = sp.csr_array(np.array([[-1.0, a]], dtype=np.float32))
    x = np.array([1.0, b], dtype=np.float32)
    y = ff.spmv(A, x, device=ff.open("emu"))
    assert y[0] == np.float32(3 * 2**-23)
    assert np.float32(3 * 2**-23 + 2**-45) != np.float32(3 * 2**-23)  # FMA would differ


def test_subnormals_are_flushed_as_the_hardware_alu_does() -> None:
    assert emu.FP32_POLICY == {"subnormals": "flush", "nan": "canonical"}
    dev = ff.open("emu")
    with np.errstate(under="ignore"):
        # A subnormal product becomes +0 (IEEE would give about 1e-40) ...
        y = ff.spmv(
            sp.csr_array(np.array([[1e-20]], np.float32)), np.array([1e-20], np.float32), device=dev
        )
        assert y.view(np.uint32)[0] == 0 and np.float32(1e-20) * np.float32(1e-20) != 0
        # ... a negative one -0, which added to the +0 start gives +0; a subnormal operand reads
        # as zero even when the product would be normal.
        A = sp.csr_array(np.array([[-1e-20, 0], [1e-40, 0]], np.float32))
        y = ff.spmv(A, np.array([1e-20, 1e20], np.float32), device=dev)
        assert y.view(np.uint32).tolist() == [0, 0]
        y = ff.spmv(
            sp.csr_array(np.array([[1e-40]], np.float32)), np.array([1e10], np.float32), device=dev
        )
        assert y[0] == 0 and np.float32(1e-40) * np.float32(1e10) > 0


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p['subnormals']}-{p['nan']}")
def test_rows_empty_in_later_column_tiles_keep_their_sums(policy) -> None:  # type: ignore[no-untyped-def]
    """Rows 8-31 have entries only in the first column tile: in the three after it they are
    whole empty groups of eight rows, which the kernel skips, keeping the sums so far."""
    r = np.random.default_rng(5)
    dense = r.standard_normal((96, 64)).astype(np.float32) * (r.random((96, 64)) < 0.5)
    dense[8:32, 16:] = 0
    A = sp.csr_array(dense)
    x = r.standard_normal(64).astype(np.float32)
    saved = dict(emu.FP32_POLICY)
    emu.FP32_POLICY.update(policy)
    try:
        y = ff.spmv(A, x, device=ff.open("emu"), tile=(96, 16))
    finally:
        emu.FP32_POLICY.clear()
        emu.FP32_POLICY.update(saved)
    same_bits(y, reference_spmv(A, x, policy), policy)


def _rows(lengths: np.ndarray, n: int, r: np.random.Generator) -> sp.csr_array:
    """A matrix whose row i has lengths[i] entries at distinct random columns of n."""
    cols = [np.sort(r.choice(n, size=int(k), replace=False)) for k in lengths]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    data = r.standard_normal(len(indices)).astype(np.float32)
    # Special values too: subnormal products send a row tile to the exact redo.
    pick = r.random(len(data)) < 0.02
    data[pick] = r.choice(np.array(SPECIAL, np.float32), int(pick.sum()))
    return sp.csr_array((data, indices, indptr), shape=(len(lengths), n))


LAYOUTS = {
    # rows of about one entry per tile: fixed-step groups
    "poisson": (lambda r: r.poisson(1.0, 700), 600, (200, 120)),
    # three per tile: some groups above the usual count, which take their own
    "poisson 3": (lambda r: r.poisson(3.0, 700), 600, (200, 600)),
    # groups past the 4096 products computed ahead, and blocks cut short before them
    "long rows": (lambda r: np.where(r.random(96) < 0.6, 900, r.poisson(3, 96)), 1000, (96, 1000)),
    # a few long rows raise the tile's mean: the groups of short rows take their own count
    "inflated mean": (lambda r: np.where(np.arange(600) % 40 == 0, 300, 1), 400, (200, 400)),
    # one long row among empty ones: groups sent to the scalar rows
    "skewed": (lambda r: np.where(np.arange(400) % 16 == 3, 60, 0), 300, (160, 300)),
    # tiles wider than 65536 columns: 32-bit coordinates
    "wide": (lambda r: r.poisson(2.0, 90), 70_000, (40, 70_000)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p['subnormals']}-{p['nan']}")
def test_row_groups_of_every_kind_are_bit_exact(layout, policy) -> None:  # type: ignore[no-untyped-def]
    """The vector kernel's paths (eight rows per vector in blocks, fixed steps then extra
    ones, groups past the block's products, skewed groups, 16- and 32-bit coordinates) on
    tiles tall enough to take them, against the reference order."""
    r = np.random.default_rng(sorted(LAYOUTS).index(layout))
    lengths_of, n, tile = LAYOUTS[layout]
    A = _rows(lengths_of(r), n, r)
    x = r.standard_normal(n).astype(np.float32)
    x[r.random(n) < 0.01] = np.float32(3e-39)
    saved = dict(emu.FP32_POLICY)
    emu.FP32_POLICY.update(policy)
    try:
        y = ff.spmv(A, x, device=ff.open("emu"), tile=tile)
    finally:
        emu.FP32_POLICY.clear()
        emu.FP32_POLICY.update(saved)
    same_bits(y, reference_spmv(A, x, policy), policy)
