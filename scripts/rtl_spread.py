"""The rtl device's cycles on a spread of shapes, beyond the rtl bench's seven matrices.

    python scripts/rtl_spread.py --out now.json             # measure (a few minutes)
    python scripts/rtl_spread.py --compare before.json now.json

The cases: scripts/calibrate_emu.py's small and large sets (with the tiles the rtl device
picks, or the small tiles those cases give), the two bundled matrices, and shapes users bring
that no other set has: tall and skinny, wide and hypersparse (x in 25 column tiles), a 3-D
27-point stencil; and SpMM on three of them. To compare two versions of the overlay and
firmware, run the same file with each (for an older checkout, copy it there: it needs only
that checkout's scripts/calibrate_emu.py) and ``--compare`` the two files.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import calibrate_emu as cal

import fiberflow as ff
from fiberflow import datasets


def stencil27(side: int) -> sp.csr_array:
    """The 27-point stencil on a side^3 grid (27 nonzeros in an inner row)."""
    line = sp.diags_array([1.0, 1.0, 1.0], offsets=[-1, 0, 1], shape=(side, side))
    return sp.csr_array(sp.kron(sp.kron(line, line), line), dtype=np.float32)


CASES = {
    **cal.SMALL,
    **cal.LARGE,
    "bundled poisson2d_32": lambda: datasets.load("poisson2d_32"),
    "bundled powerlaw_2000": lambda: datasets.load("powerlaw_2000"),
    "tall-skinny 200k x 500, 4/row": lambda: cal.fixed_rows(200000, 500, 4, 31),
    "wide 2k x 200k, 3/row": lambda: sp.random_array(
        (2000, 200000), density=3 / 200000, rng=32, dtype=np.float32
    ),
    "27-point stencil 40^3": lambda: stencil27(40),
}
SPMM = {"power law 8k": 4, "poisson 2-D 64x64": 8, "rows of 8, 24k": 8}


def measure() -> dict[str, tuple[int, int]]:
    """{case: (multiply-adds, cycles)}."""
    out = {}
    with ff.open("rtl") as dev:
        for name, make in CASES.items():
            got = make()
            a, tile = got if isinstance(got, tuple) else (got, None)
            a = sp.csr_array(a, dtype=np.float32)
            kw = {"tile": tile} if tile else {}
            ff.spmv(a, np.ones(a.shape[1], np.float32), device=dev, **kw)
            out[name] = (a.nnz, dev.last_stats.cycles)
            if name in SPMM:
                k = SPMM[name]
                ff.spmm(a, np.ones((a.shape[1], k), np.float32), device=dev, **kw)
                out[f"{name}, SpMM k={k}"] = (a.nnz * k, dev.last_stats.cycles)
            print(name, *out[name], file=sys.stderr)
    return out


def compare(before: dict, now: dict) -> None:
    print("| case | multiply-adds | cycles before | cycles now | x |")
    print("|---|---|---|---|---|")
    ratios = []
    for name, (work, cycles) in now.items():
        if name not in before:
            continue
        ratios.append(before[name][1] / cycles)
        print(f"| {name} | {work:,} | {before[name][1]:,} | {cycles:,} | {ratios[-1]:.2f} |")
    print(f"\n{len(ratios)} cases: {min(ratios):.2f}-{max(ratios):.2f}x, "
          f"median {statistics.median(ratios):.2f}x")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=pathlib.Path, help="measure, and write the cycles here")
    p.add_argument("--compare", nargs=2, type=pathlib.Path, metavar=("BEFORE", "NOW"))
    a = p.parse_args()
    if a.compare:
        compare(*(json.loads(f.read_text()) for f in a.compare))
    elif a.out:
        a.out.write_text(json.dumps(measure(), indent=1) + "\n")
    else:
        p.error("give --out or --compare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
