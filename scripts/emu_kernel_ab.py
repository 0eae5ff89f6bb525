"""Two builds of the emulator's kernels (``_cemu`` modules) against each other, paired: the
same resident SpMV alternates between them in one process, and each matrix reports the
median of the per-round time ratios (new / old), so the machine's drift cancels out.

    python scripts/emu_kernel_ab.py OLD.so NEW.so [--rounds N] [--matrices ...]

Build the old module from an earlier commit, e.g.::

    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py -q build_ext --inplace)
    python scripts/emu_kernel_ab.py /tmp/old/host/_cemu.abi3.so host/_cemu.abi3.so

Only the kernel is timed: the image's CRC-32 check before each job is turned off. Both
builds must give the same bits (checked on the first round).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from ab import load, paired  # scripts/ab.py

import fiberflow as ff
from fiberflow.bench.pack import banded_csr, power_law_csr, random_csr
from fiberflow.host.devices import emu


def few_long_rows() -> sp.csr_array:
    """Rows of one entry, and every 340th of 8,000: a few long rows inflate each tile's mean."""
    r = np.random.default_rng(0)
    m, n = 200_000, 8190
    lens = np.where(np.arange(m) % 340 == 0, 8000, 1)
    cols = [np.sort(r.choice(n, k, replace=False)) for k in lens]
    indptr = np.concatenate([[0], np.cumsum(lens)])
    data = np.ones(int(indptr[-1]), np.float32)
    return sp.csr_array((data, np.concatenate(cols), indptr), shape=(m, n))


MATRICES: dict[str, Callable[[], Any]] = {
    "random": lambda: random_csr(200_000, 4_000_000, 0),
    "banded": lambda: banded_csr(200_000, 4_000_000, 0),
    "power-law": lambda: power_law_csr(200_000, 4_000_000, 0),
    "200/row": lambda: random_csr(20_000, 4_000_000, 0),
    "few long rows": few_long_rows,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--matrices", nargs="*", default=list(MATRICES), choices=list(MATRICES))
    args = ap.parse_args()
    builds = [load(args.old, "fiberflow.host._cemu", "old"),
              load(args.new, "fiberflow.host._cemu", "new")]  # fmt: skip
    print("| matrix | old ms | new ms | new / old (median of paired rounds) |")
    print("|---|---|---|---|")
    for name in args.matrices:
        A = MATRICES[name]()
        x = np.random.default_rng(0).standard_normal(A.shape[1]).astype(np.float32)
        dev = ff.open("emu")
        dev.recheck_images = False  # the kernel alone
        h = dev.put(A)

        def run(build: Any, h: Any = h, x: np.ndarray = x, dev: Any = dev) -> np.ndarray:
            emu.ffi, emu.lib = build.ffi, build.lib
            return ff.spmv(h, x, device=dev)

        cells, first = paired(run, builds, args.rounds)
        if not np.array_equal(first[0].view(np.uint32), first[1].view(np.uint32)):
            raise SystemExit(f"{name}: the two builds give different bits")
        print(f"| {name} | {cells} |", flush=True)
        dev.close()


if __name__ == "__main__":
    main()
