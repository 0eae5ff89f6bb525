"""``fiberflow bench kernels``: the compiler's named kernels on the emulator against scipy and
numpy, one run, medians; and the token-level executor's speed."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench import Report, median_seconds
from fiberflow.bench.counted import poisson, random_rows
from fiberflow.bench.pack import power_law_csr

DESCRIPTION = (
    "SpGEMM, element-wise add and multiply, SDDMM and SpMSpV on the emulator against scipy "
    "(medians), and the token-level executor's tokens per second"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale", type=float, default=1.0, help="matrix size factor (1: the goals' sizes)"
    )
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case (default 5)")


def _same(got: Any, want: Any) -> float:
    """The largest difference, relative to the largest magnitude (fp32 sums in another order
    differ in their last bits)."""
    if sp.issparse(want):
        scale = abs(want).max() if want.nnz else 1.0
        return float(abs(sp.csr_array(got) - want).max() / max(scale, 1e-30))
    w = np.asarray(want)
    return float(np.abs(np.asarray(got) - w).max() / max(np.abs(w).max(), 1e-30)) if w.size else 0.0


def run(args: argparse.Namespace) -> Report:
    s = args.scale
    dev = ff.open("emu")
    rng = np.random.default_rng(0)
    fe = poisson(max(8, int(320 * s**0.5)), 2)  # 2-D Poisson: 510,720 nonzeros at scale 1
    n = max(100, int(100_000 * s))
    B = random_rows(n, n, 10, 11)  # about 1M nonzeros each at scale 1
    C = random_rows(n, n, 10, 12)
    m = max(100, int(10_000 * s**0.5))
    S = random_rows(m, m, 50, 13)  # 0.5M nonzeros at scale 1
    U = rng.standard_normal((m, 16)).astype(np.float32)
    V = rng.standard_normal((16, m)).astype(np.float32)
    x = np.zeros(fe.shape[1], np.float32)
    x[rng.choice(fe.shape[1], max(1, fe.shape[1] // 100), replace=False)] = 1
    xd = rng.standard_normal(fe.shape[1]).astype(np.float32)
    # the goals' shapes first, then what else users bring: a 3-D mesh, random and power-law
    # graphs, banded pairs, other ranks and densities
    fe3 = poisson(max(4, int(48 * s ** (1 / 3))), 3)
    pl = sp.csr_array(power_law_csr(max(100, int(50_000 * s)), max(100, int(250_000 * s)), 3),
                      dtype=np.float32)  # fmt: skip
    feT, plT = sp.csr_array(fe.T), sp.csr_array(pl.T)
    feT.sort_indices()
    plT.sort_indices()
    S2 = random_rows(max(100, m // 2), max(100, m // 2), 200, 14)
    U2 = rng.standard_normal((S2.shape[0], 16)).astype(np.float32)
    V2 = rng.standard_normal((16, S2.shape[1])).astype(np.float32)
    Ur = {r: rng.standard_normal((m, r)).astype(np.float32) for r in (4, 64)}
    Vr = {r: rng.standard_normal((r, m)).astype(np.float32) for r in (4, 64)}

    def sorted_product(A: sp.csr_array) -> sp.csr_array:
        P = A @ A
        P.sort_indices()  # scipy's product leaves each row's columns unsorted; ours are sorted
        return P

    cases = [
        ("SpGEMM A @ A, 2-D Poisson", fe.nnz, lambda: fe @ fe,
         lambda: ff.spgemm(fe, fe, device=dev), 0.5),
        ("add, two random matrices", B.nnz + C.nnz, lambda: B + C,
         lambda: ff.add(B, C, device=dev), 0.5),
        ("multiply, two random matrices", B.nnz + C.nnz, lambda: B.multiply(C),
         lambda: ff.multiply(B, C, device=dev), 0.5),
        ("SDDMM rank 16, S .* (U @ V)", S.nnz, lambda: S.multiply(U @ V),
         lambda: ff.sddmm(S, U, V, device=dev), 3.0),
        ("SpMSpV, 2-D Poisson, x 1% dense", fe.nnz, lambda: fe @ x,
         lambda: ff.spmspv(fe, x, device=dev).to_numpy(), None),
        ("SpGEMM A @ A, 2-D Poisson, vs scipy + sort_indices", fe.nnz,
         lambda: sorted_product(fe), lambda: ff.spgemm(fe, fe, device=dev), None),
        ("SpGEMM A @ A, 3-D Poisson", fe3.nnz, lambda: fe3 @ fe3,
         lambda: ff.spgemm(fe3, fe3, device=dev), None),
        ("SpGEMM A @ A, random, 10/row", B.nnz, lambda: B @ B,
         lambda: ff.spgemm(B, B, device=dev), None),
        ("SpGEMM A @ A, random, vs scipy + sort_indices", B.nnz, lambda: sorted_product(B),
         lambda: ff.spgemm(B, B, device=dev), None),
        ("SpGEMM A @ A, power-law", pl.nnz, lambda: pl @ pl,
         lambda: ff.spgemm(pl, pl, device=dev), None),
        ("SpGEMM A @ A, power-law, vs scipy + sort_indices", pl.nnz, lambda: sorted_product(pl),
         lambda: ff.spgemm(pl, pl, device=dev), None),
        ("add, 2-D Poisson + its transpose", 2 * fe.nnz, lambda: fe + feT,
         lambda: ff.add(fe, feT, device=dev), None),
        ("multiply, 2-D Poisson .* its transpose", 2 * fe.nnz, lambda: fe.multiply(feT),
         lambda: ff.multiply(fe, feT, device=dev), None),
        ("add, power-law + its transpose", 2 * pl.nnz, lambda: pl + plT,
         lambda: ff.add(pl, plT, device=dev), None),
        ("multiply, power-law .* its transpose", 2 * pl.nnz, lambda: pl.multiply(plT),
         lambda: ff.multiply(pl, plT, device=dev), None),
        ("SDDMM rank 4", S.nnz, lambda: S.multiply(Ur[4] @ Vr[4]),
         lambda: ff.sddmm(S, Ur[4], Vr[4], device=dev), None),
        ("SDDMM rank 64", S.nnz, lambda: S.multiply(Ur[64] @ Vr[64]),
         lambda: ff.sddmm(S, Ur[64], Vr[64], device=dev), None),
        ("SDDMM rank 16, denser S (200/row)", S2.nnz, lambda: S2.multiply(U2 @ V2),
         lambda: ff.sddmm(S2, U2, V2, device=dev), None),
        ("SpMV min_plus, 2-D Poisson (numpy: minimum.reduceat)", fe.nnz,
         lambda: np.minimum.reduceat(fe.data + xd[fe.indices], fe.indptr[:-1]),
         lambda: ff.spmv(fe, xd, device=dev, semiring="min_plus"), None),
    ]  # fmt: skip
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    for name, nnz, ref, ours, goal in cases:
        t_ref = median_seconds(ref, args.repeat, desc=f"{name}: scipy")
        t_ours = median_seconds(ours, args.repeat, desc=f"{name}: fiberflow")
        diff = _same(ours(), ref())
        speed = t_ref / t_ours
        verdict = (
            "-" if goal is None else f">= {goal:g}x " + ("met" if speed >= goal else "NOT met")
        )
        rows.append([name, f"{nnz:,}", f"{t_ref * 1e3:.1f}", f"{t_ours * 1e3:.1f}",
                     f"{speed:.2f}x", verdict, f"{diff:.1e}"])  # fmt: skip
        data[name] = {"nnz": nnz, "scipy_s": t_ref, "fiberflow_s": t_ours, "goal": goal,
                      "max_rel_diff": diff}  # fmt: skip
    # the token-level executor, on graphs of three shapes
    small = random_rows(300, 300, 15, 14)
    tok_cases = [
        ("SpMV, 300 x 300, 15/row", "y(i) = A(i,j) * x(j)", None,
         {"A": small, "x": rng.standard_normal(300).astype(np.float32)}),
        ("SpGEMM, 200 x 200, 6/row", "X(i,j) = A(i,k) * B(k,j)", {"B": "ds", "X": "ds"},
         {"A": random_rows(200, 200, 6, 15), "B": random_rows(200, 200, 6, 16)}),
        ("add, 300 x 300, 30/row", "X(i,j) = A(i,j) + B(i,j)", None,
         {"A": random_rows(300, 300, 30, 17), "B": random_rows(300, 300, 30, 18)}),
        ("residual, 1000 x 1000, 15/row", "x(i) = b(i) - C(i,j) * d(j)", None,
         {"b": rng.standard_normal(1000).astype(np.float32), "C": random_rows(1000, 1000, 15, 19),
          "d": rng.standard_normal(1000).astype(np.float32)}),
    ]  # fmt: skip
    for name, expression, formats, ops in tok_cases:
        k = ff.compile(expression, formats)
        _, streams = k(device=dev, trace=True, **ops)
        tokens = sum(len(t) for t in streams.values())
        t = median_seconds(lambda k=k, ops=ops: k(device=dev, engine="token", **ops),
                           args.repeat, desc=f"token-level {name}")  # fmt: skip
        rate = tokens / t / 1e6
        verdict = ">= 1 M tokens/s " + ("met" if rate >= 1 else "NOT met")
        rows.append([f"token-level: {name}", f"{tokens:,} tokens", "-", f"{t * 1e3:.1f}",
                     f"{rate:.2f} M tokens/s", verdict, "-"])  # fmt: skip
        data[f"token-level: {name}"] = {"tokens": tokens, "seconds": t}
    dev.close()
    return Report(
        target="kernels",
        title="Compiled kernels on the emulator",
        command=f"python -m fiberflow bench kernels --scale {s:g} --repeat {args.repeat}",
        columns=[
            "kernel",
            "nonzeros",
            "scipy ms",
            "fiberflow ms",
            "speed vs scipy",
            "goal",
            "max rel. diff",
        ],
        rows=rows,
        notes=[
            "fiberflow's time is the whole call: operands checked and converted, the kernel's "
            "C fast path (bit-exact with its graph's token-level run: tests/test_compiler.py), "
            "the scipy result built",
            "max rel. diff: against scipy / numpy, whose float32 sums run in another order",
            "goals are set on the first four rows' shapes; the rows below them are the other "
            "shapes users bring. scipy's SpGEMM leaves each row's columns unsorted, "
            "fiberflow's are sorted (its results are canonical csr_arrays): the rows 'vs scipy "
            "+ sort_indices' compare like with like",
            "token-level: the graph run token by token on the primitives' Python models "
            "(its results equal the fast paths' bit for bit: tests/test_compiler.py); tokens "
            "counted over every stream",
            "one process on a 2-core machine that may be running other work",
        ],
        data=data,
    )
