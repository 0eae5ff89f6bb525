"""Resident matrices as operators (h @ x, h @ B, h.T) and ff.aslinearoperator with scipy's
iterative solvers, on a 2-D finite-element problem."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

import fiberflow as ff
from fiberflow import datasets


@pytest.fixture(scope="module")
def dev():  # type: ignore[no-untyped-def]
    d = ff.open("emu")
    yield d
    d.close()


def _iterations(A, b: np.ndarray) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    count = [0]
    x, info = sla.cg(
        A, b, rtol=1e-5, maxiter=2000, callback=lambda _: count.__setitem__(0, count[0] + 1)
    )
    assert info == 0
    return x, count[0]


def test_resident_products_and_transpose(dev) -> None:  # type: ignore[no-untyped-def]
    A = sp.random_array((50, 40), density=0.1, format="csr", dtype=np.float32, rng=1)
    h = dev.put(A)
    x, y = np.arange(40, dtype=np.float32), np.arange(50, dtype=np.float32)
    B = np.ones((40, 3), np.float32)
    np.testing.assert_array_equal(h @ x, ff.spmv(A, x, device=dev))
    np.testing.assert_array_equal(h @ B, ff.spmm(A, B, device=dev))
    t = h.T
    assert t.shape == (40, 50) and h.T is t and t.T is h
    np.testing.assert_array_equal(t @ y, ff.spmv(sp.csr_array(A.T), y, device=dev))
    with pytest.raises(ff.ShapeError, match="spgemm"):
        h @ A
    with pytest.raises(ff.ShapeError, match="1-D"):
        h @ np.ones((40, 2, 2), np.float32)
    t.free()  # the copy alone: the original still works, and makes a new copy when asked
    assert not h.freed and (h @ x).shape == (50,)
    t2 = h.T
    assert t2 is not t and not t2.freed
    h.free()  # the original takes its copy with it
    assert t2.freed
    with pytest.raises(ff.DeviceError, match="freed"):
        _ = h.T


def test_operator_products_and_types(dev) -> None:  # type: ignore[no-untyped-def]
    A = sp.random_array((30, 20), density=0.2, format="csr", dtype=np.float32, rng=2)
    op = ff.aslinearoperator(A, device=dev)
    assert op.shape == (30, 20) and op.dtype == np.float32
    x64 = np.linspace(-1, 1, 20)  # float64: rounded to float32 (docs/workflows.md)
    np.testing.assert_array_equal(op.matvec(x64), ff.spmv(A, x64.astype(np.float32), device=dev))
    X = np.ones((20, 4))
    np.testing.assert_allclose(op.matmat(X), A @ X, rtol=1e-6)
    np.testing.assert_allclose(op.rmatvec(np.ones(30)), A.T @ np.ones(30), rtol=1e-6)
    np.testing.assert_allclose(op.H.matmat(np.ones((30, 2))), A.T @ np.ones((30, 2)), rtol=1e-6)
    with pytest.raises(ff.DTypeError, match="complex"):
        op.matvec(np.ones(20, complex))
    with pytest.raises(ff.DeviceError, match="device="):
        ff.aslinearoperator(A)
    with pytest.raises(ff.DTypeError, match="dtype="):
        ff.aslinearoperator(sp.csr_array(A, dtype=np.float64), device=dev)
    op64 = ff.aslinearoperator(sp.csr_array(A, dtype=np.float64), device=dev, dtype="float32")
    assert op64.dtype == np.float32
    other = ff.open("emu")
    with pytest.raises(ff.DeviceError, match="another device"):
        ff.aslinearoperator(other.put(A), device=dev)
    other.close()


def test_solvers_on_a_finite_element_problem(dev) -> None:  # type: ignore[no-untyped-def]
    """cg takes as many iterations through the device as scipy's own float32 run (the goal:
    within 2); gmres, bicgstab, minres and eigsh run and agree with scipy."""
    A, b = datasets.fem_poisson(40)
    A32, b32 = sp.csr_array(A, dtype=np.float32), b.astype(np.float32)
    op = ff.aslinearoperator(A32, device=dev)
    x, ours = _iterations(op, b32)
    _, theirs = _iterations(A32, b32)
    assert abs(ours - theirs) <= 2, (ours, theirs)
    exact = sla.spsolve(A.tocsc(), b)
    assert np.abs(x - exact).max() < 1e-4 * np.abs(exact).max() * 10
    for solver, extra in ((sla.gmres, {"restart": 50}), (sla.bicgstab, {})):
        # (float32 products: 1e-4, which scipy's own float32 run also just reaches)
        y, info = solver(op, b32, rtol=1e-4, maxiter=200, **extra)
        z, _ = solver(A32, b32, rtol=1e-4, maxiter=200, **extra)
        assert info == 0 and np.linalg.norm(A @ y - b) < 2e-4 * np.linalg.norm(b)
        np.testing.assert_allclose(y, z, rtol=1e-3, atol=1e-6)
    y, info = sla.minres(op, b32, rtol=1e-6, maxiter=2000)
    assert info == 0 and np.abs(y - exact).max() < 1e-2 * np.abs(exact).max()
    w = np.sort(sla.eigsh(op, k=3, which="LM", return_eigenvectors=False))
    np.testing.assert_allclose(w, np.sort(sla.eigsh(A, k=3, return_eigenvectors=False)), rtol=1e-4)


@pytest.mark.rtl
def test_cg_on_the_rtl_device() -> None:
    """The same through the generated overlay and its firmware in Verilator."""
    pytest.importorskip("fiberflow.host.devices.rtl")
    A, b = datasets.fem_poisson(24)
    A32, b32 = sp.csr_array(A, dtype=np.float32), b.astype(np.float32)
    with ff.open("rtl") as rtl:
        _, ours = _iterations(ff.aslinearoperator(A32, device=rtl), b32)
        assert rtl.last_stats.cycles > 0
    _, theirs = _iterations(A32, b32)
    assert abs(ours - theirs) <= 2, (ours, theirs)


def test_fem_problem() -> None:
    """The finite-element matrix is symmetric positive definite and its solution peaks near
    0.0737, the known maximum of -laplace(u) = 1 on the unit square."""
    A, b = datasets.fem_poisson(30, seed=3)
    assert abs(A - A.T).max() < 1e-12 and 6 < A.nnz / A.shape[0] < 8
    assert np.linalg.eigvalsh(A.toarray()).min() > 0
    assert abs(sla.spsolve(A.tocsc(), b).max() - 0.0737) < 0.002
    with pytest.raises(ff.FiberflowError, match="3 points"):
        datasets.fem_poisson(2)
