"""Measure the rtl device's cycles on a set of matrices and compare the emulator's model.

    python scripts/calibrate_emu.py                 # the small set tests/test_emu_model.py uses
    python scripts/calibrate_emu.py --large         # also 100k-1M nonzeros (a few minutes)
    python scripts/calibrate_emu.py --record        # rewrite tests/data/emu_model_rtl.json
    python scripts/calibrate_emu.py --fit           # fit the CPU's constants again
    python scripts/calibrate_emu.py --overlay bus_bits=128,dma_engines=2   # another overlay

Each case runs on ``ff.open("rtl")`` (the default overlay, real firmware in Verilator) and on
``ff.open("emu")`` (which packs with the same tiles); the table gives both cycle counts and
their ratio. The constants of host/devices/perf_model.py were chosen from these runs
(docs/emulator.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.devices import perf_model as pm

RECORD = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "emu_model_rtl.json"


def fixed_rows(m: int, n: int, per_row: int, seed: int) -> sp.csr_matrix:
    """m x n with exactly ``per_row`` entries in every row, at random columns."""
    rng = np.random.default_rng(seed)
    cols = np.argsort(rng.random((m, n)), axis=1)[:, :per_row] if m * n <= 4e7 else None
    if cols is None:
        cols = rng.integers(0, n, size=(m, per_row))
    A = sp.csr_matrix(
        (np.ones(m * per_row, np.float32), (np.repeat(np.arange(m), per_row), cols.ravel())),
        shape=(m, n),
    )
    A.sum_duplicates()
    A.data = rng.standard_normal(A.nnz).astype(np.float32)
    return A


def poisson2d(side: int) -> sp.csr_matrix:
    """The 5-point Laplacian on a side x side grid (FEM-like banded rows of 3-5)."""
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side), dtype=np.float32)
    eye = sp.identity(side, dtype=np.float32)
    return (sp.kron(eye, t) + sp.kron(t, eye)).astype(np.float32).tocsr()


def power_law(m: int, mean: float, seed: int) -> sp.csr_matrix:
    """Row lengths from a Zipf-like law (1 to 40 entries, mean about ``mean``)."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.pareto(1.5, m) * mean / 2 + 1, 40).astype(np.int64)
    rows = np.repeat(np.arange(m), lengths)
    cols = rng.integers(0, m, size=len(rows))
    A = sp.csr_matrix(
        (rng.standard_normal(len(rows)).astype(np.float32), (rows, cols)), shape=(m, m)
    )
    A.sum_duplicates()
    return A


def random(m: int, per_row: float, seed: int) -> sp.csr_matrix:
    return sp.random(m, m, density=per_row / m, format="csr", random_state=seed, dtype=np.float32)


SMALL = {
    "random 1k, 2/row": lambda: random(500, 2, 1),
    "random 2k, 1/row": lambda: random(2000, 1, 2),
    "random 16k, 16/row": lambda: random(1000, 16, 3),
    "rows of 8, 24k": lambda: fixed_rows(3000, 3000, 8, 4),
    "rows of 40, 40k": lambda: fixed_rows(1000, 4000, 40, 5),
    "poisson 2-D 64x64": lambda: poisson2d(64),
    "power law 8k": lambda: power_law(2000, 4, 6),
    "random 60k, 30/row": lambda: random(2000, 30, 7),
    "poisson 2-D 30x30": lambda: poisson2d(30),
    # Small tiles, given explicitly: the firmware's own cost per tile and per lane shows.
    "diagonal 64, 8 row tiles": lambda: (sp.eye(64, format="csr", dtype=np.float32), (8, 64)),
    "diagonal 64, 8 col tiles": lambda: (sp.eye(64, format="csr", dtype=np.float32), (64, 8)),
    "random 4k, 16 row tiles": lambda: (random(1024, 4, 12), (64, 1024)),
}
LARGE = {
    "random 160k, 8/row": lambda: random(20000, 8, 8),
    "poisson 2-D 200x200": lambda: poisson2d(200),
    "power law 300k": lambda: power_law(60000, 5, 9),
    "rows of 1, 100k": lambda: fixed_rows(100000, 100000, 1, 10),
    "random 1M, 20/row": lambda: random(50000, 20, 11),
    # B's rows fit no x buffer beside these tiles: the rtl device runs 8 jobs of one column
    "poisson 2-D 120x120": lambda: poisson2d(120),
}
LARGE_SPMM = ("poisson 2-D 120x120",)
# SpMM cases whose B slices and C blocks fit the lanes' buffers in one job (the rtl device
# splits larger ones into several jobs over column blocks of B, and the model adds those up:
# LARGE_SPMM's case).
SPMM = ("random 16k, 16/row", "poisson 2-D 30x30")


# The model's inputs of every emu run, kept for --fit.
JOBS: list = []


def _recording(job, ov, c=pm.DEFAULT):  # type: ignore[no-untyped-def]
    JOBS.append((job, ov))
    return SIMULATE(job, ov, c)


SIMULATE = pm.simulate
# Not fitted: latency, the DDR model's read latency, and job and end, the firmware's cycles
# from the doorbell to the walk and after it (scripts/firmware_phases.py): left free, the fit
# trades them against the CPU's per-lane and per-tile terms (every case of the small set has
# tiles on every lane).
FITTED = ("lane", "load", "flush")


def fit(rows: list[dict]) -> None:
    """The CPU and DMA constants minimising the sum of log(emu / rtl)^2 over the runs."""
    from scipy.optimize import minimize

    def ratios(v: np.ndarray) -> np.ndarray:
        c = dataclasses.replace(pm.DEFAULT, **{n: round(x) for n, x in zip(FITTED, v, strict=True)})
        return np.array(
            [
                SIMULATE(j, o, c).cycles / r["rtl_cycles"]
                for (j, o), r in zip(JOBS, rows, strict=True)
            ]
        )

    if len(JOBS) != len(rows):
        raise SystemExit(
            "--fit needs one modelled job per run: an SpMM split into jobs over column blocks "
            "of B (--large) models several; fit on the small set"
        )
    x0 = [getattr(pm.DEFAULT, n) for n in FITTED]
    res = minimize(lambda v: float(np.sum(np.log(ratios(v)) ** 2)), x0, method="Powell",
                   bounds=[(0, 50_000)] * len(FITTED), options={"maxiter": 3000})  # fmt: skip
    print("fitted:", {n: round(x) for n, x in zip(FITTED, res.x, strict=True)})
    print("ratios:", np.round(ratios(res.x), 3))


def runs(cases: dict, k8: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Every run of ``cases``: (name, k, A, x or B, tile or None, ff.spmv or ff.spmm)."""
    rng = np.random.default_rng(0)
    for name, make in cases.items():
        A, tile = make(), None
        if isinstance(A, tuple):
            A, tile = A
        for k in (1, 8) if name in k8 else (1,):
            x = rng.standard_normal((A.shape[1], k) if k > 1 else A.shape[1]).astype(np.float32)
            yield name, k, A, x, tile, ff.spmm if k > 1 else ff.spmv


def measure(cases: dict, k8: tuple[str, ...], overlay: dict | None = None) -> list[dict]:
    """Run every case on rtl and emu, both opened with the overlay parameters ``overlay``;
    the table's rows."""
    pm.simulate = _recording  # the emu device calls it through the module
    try:
        return _measure(cases, k8, overlay or {})
    finally:
        pm.simulate = SIMULATE


def _measure(cases: dict, k8: tuple[str, ...], overlay: dict) -> list[dict]:
    rtl, emu = ff.open("rtl", **overlay), ff.open("emu", **overlay)
    rows = []
    for name, k, A, x, tile, run in runs(cases, k8):
        t = time.monotonic()
        run(A, x, device=rtl, tile=tile)
        r = rtl.last_stats
        wall = time.monotonic() - t
        run(A, x, device=emu, tile=tile)
        e = emu.last_stats
        rows.append(
            {
                "case": name,
                "k": k,
                "shape": list(A.shape),
                "nnz": int(A.nnz),
                "rtl_cycles": r.cycles,
                "emu_cycles": e.cycles,
                "rtl_tiles": r.tiles,
                "emu_tiles": e.tiles,
                "rtl_busy": list(r.lane_busy_cycles),
                "emu_busy": list(e.lane_busy_cycles),
                "rtl_dma_bytes": r.dma_bytes,
                "emu_dma_bytes": e.dma_bytes,
                "rtl_seconds": round(wall, 2),
            }
        )
        row = rows[-1]
        print(
            f"{name:24s} k={k} nnz {A.nnz:>9,} tiles {r.tiles:>4} rtl {r.cycles:>10,} "
            f"emu {e.cycles:>10,} ratio {e.cycles / r.cycles:5.3f} "
            f"(rtl run {row['rtl_seconds']} s)",
            flush=True,
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--large", action="store_true", help="also the 100k-1M nonzero cases")
    p.add_argument("--record", action="store_true", help=f"write the small set to {RECORD}")
    p.add_argument("--fit", action="store_true", help="fit the CPU and DMA constants")
    p.add_argument(
        "--overlay",
        action="append",
        help="overlay parameters key=value,... (repeat for several overlays; '' the default)",
    )
    a = p.parse_args()
    rows = []
    for given in a.overlay or [""]:
        overlay = {k: int(v) for k, v in (kv.split("=") for kv in given.split(",") if kv)}
        print(f"overlay: {overlay or 'default'}")
        small = measure(SMALL, SPMM, overlay)
        if a.record and not overlay:
            RECORD.write_text(json.dumps(small, indent=1) + "\n")
        rows += small
        if a.large:
            rows += measure(LARGE, LARGE_SPMM, overlay)
    worst = max(abs(r["emu_cycles"] / r["rtl_cycles"] - 1) for r in rows)
    print(f"worst |emu / rtl - 1| = {worst:.3f} over {len(rows)} runs")
    if a.fit:
        fit(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
