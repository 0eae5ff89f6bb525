"""Conjugate gradients on a 2-D finite-element problem, with every product on a fiberflow
device: iterations and residual against scipy's own float32 run, and what each product cost
on the device.

    python examples/fem_cg.py                    # the emulator (estimated cycles)
    python examples/fem_cg.py --device rtl       # the overlay in Verilator (measured cycles)

The problem: -laplace(u) = 1 on the unit square, u = 0 on its edge, linear triangles on a
perturbed Delaunay mesh (fiberflow.datasets.fem_poisson).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

import fiberflow as ff
from fiberflow import datasets


def solve(device: str = "emu", side: int = 60, rtol: float = 1e-5) -> dict[str, Any]:
    A, b = datasets.fem_poisson(side)
    A32, b32 = sp.csr_array(A, dtype=np.float32), b.astype(np.float32)
    with ff.open(device) as dev:
        op = ff.aslinearoperator(A32, device=dev)
        products: list[ff.RunStats] = []
        matvec = op.matvec

        def counted(x: np.ndarray) -> np.ndarray:  # each product's statistics, as it runs
            y = matvec(x)
            products.append(dev.last_stats)
            return y

        op.matvec = counted  # type: ignore[method-assign]
        ours = [0]
        start = time.perf_counter()
        x, info = sla.cg(op, b32, rtol=rtol, maxiter=5000,
                         callback=lambda _: ours.__setitem__(0, ours[0] + 1))  # fmt: skip
        wall = time.perf_counter() - start
    theirs = [0]
    start = time.perf_counter()
    z, _ = sla.cg(A32, b32, rtol=rtol, maxiter=5000,
                  callback=lambda _: theirs.__setitem__(0, theirs[0] + 1))  # fmt: skip
    scipy_wall = time.perf_counter() - start
    exact = sla.spsolve(A.tocsc(), b)
    cycles = [s.cycles for s in products]
    clock = products[0].clock_mhz if products else 0.0
    return {
        "unknowns": A.shape[0], "nnz": A.nnz, "converged": info == 0,
        "iterations": ours[0], "scipy_iterations": theirs[0],
        "residual": float(np.linalg.norm(A @ x - b) / np.linalg.norm(b)),
        "scipy_residual": float(np.linalg.norm(A @ z - b) / np.linalg.norm(b)),
        "error": float(np.abs(x - exact).max() / np.abs(exact).max()),
        "products": len(products), "cycles_per_product": float(np.mean(cycles)) if cycles else 0.0,
        "nnz_per_cycle": A.nnz / float(np.mean(cycles)) if cycles else 0.0,
        "device_seconds": sum(cycles) / (clock * 1e6) if clock else 0.0, "clock_mhz": clock,
        "measured": bool(products) and not products[0].estimated,
        "host_seconds": wall, "scipy_seconds": scipy_wall,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="emu", help="emu (default) or rtl")
    p.add_argument("--side", type=int, default=60, help="mesh points a side (default 60)")
    args = p.parse_args(argv)
    r = solve(args.device, args.side)
    kind = "measured" if r["measured"] else "estimated"
    print(f"{r['unknowns']:,} unknowns, {r['nnz']:,} nonzeros")
    print(f"cg on {args.device}: {r['iterations']} iterations, residual {r['residual']:.2e}, "
          f"max error vs a direct solve {r['error']:.1e}")  # fmt: skip
    print(f"scipy float32 cg: {r['scipy_iterations']} iterations, residual "
          f"{r['scipy_residual']:.2e}, {r['scipy_seconds'] * 1e3:.1f} ms on this host")  # fmt: skip
    ms = r["device_seconds"] * 1e3
    print(f"each product: {r['cycles_per_product']:,.0f} cycles ({kind}), "
          f"{r['nnz_per_cycle']:.2f} nonzeros per cycle; {r['products']} products = "
          f"{ms:.2f} ms on the device at {r['clock_mhz']:g} MHz")  # fmt: skip


if __name__ == "__main__":
    main()
