"""Resident SpMV on the emulator against scipy on several kinds of matrix, on one thread and on
the threads the emulator chooses (``FIBERFLOW_THREADS`` unset): the spread behind the single
figure ``fiberflow bench spmv`` records for its random matrix.

    python scripts/emu_speed.py [--repeat N]

Medians of N calls after a warm-up, each path timed in the same process.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench.pack import banded_csr, power_law_csr, random_csr


def poisson2d(side: int) -> sp.csr_array:
    line = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(side, side))
    return sp.csr_array(sp.kronsum(line, line), dtype=np.float32)


MATRICES: dict[str, Callable[[], sp.csr_array]] = {
    "random 200k, 20/row (the bench's)": lambda: random_csr(200_000, 4_000_000, 0),
    "2-D Poisson 1000^2, 5/row": lambda: poisson2d(1000),
    "banded 200k (27-point stencil diagonals)": lambda: banded_csr(200_000, 4_000_000, 0),
    "power-law 200k (Zipf rows)": lambda: power_law_csr(200_000, 4_000_000, 0),
    "random 100k, 12/row": lambda: random_csr(100_000, 1_200_000, 0),
    "random 20k, 10/row": lambda: random_csr(20_000, 200_000, 0),
}


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def row(name: str, A: sp.csr_array, repeat: int) -> str:
    """One table row: scipy, then the emulator on one thread and on its own choice."""
    dev = ff.open("emu")
    h = dev.put(A)
    x = np.random.default_rng(0).standard_normal(A.shape[1]).astype(np.float32)
    os.environ["FIBERFLOW_THREADS"] = "1"
    one = median_ms(lambda: ff.spmv(h, x, device=dev), repeat)
    del os.environ["FIBERFLOW_THREADS"]
    emu = median_ms(lambda: ff.spmv(h, x, device=dev), repeat)
    ref = median_ms(lambda: A @ x, repeat)
    h.free()
    cells = [name, f"{A.nnz:,}", f"{ref:.2f}", f"{one:.2f}", f"{emu:.2f}"]
    return "| " + " | ".join([*cells, f"{ref / one:.2f}", f"{ref / emu:.2f}"]) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    print("| matrix | nnz | scipy ms | emu, 1 thread, ms | emu ms | 1 thread vs scipy | vs scipy |")
    print("|---|---|---|---|---|---|---|")
    saved = os.environ.get("FIBERFLOW_THREADS")
    try:
        for name, make in MATRICES.items():
            print(row(name, make(), args.repeat), flush=True)
    finally:
        if saved is not None:
            os.environ["FIBERFLOW_THREADS"] = saved
        else:
            os.environ.pop("FIBERFLOW_THREADS", None)


if __name__ == "__main__":
    main()
