"""Two builds of the packer's C path (``_cpack`` modules) against each other, paired: the same
pack alternates between them in one process, and each matrix and tile shape reports the median
of the per-round time ratios (new / old), so the machine's drift cancels out.

    python scripts/pack_ab.py OLD.so NEW.so [--rounds N] [--simd avx2] [--shapes 2048x65536 ...]
        [--matrices banded ...] [--n 200000] [--nnz 4000000]

Build the old module from an earlier commit, e.g.::

    git worktree add /tmp/old <commit> && (cd /tmp/old && python setup.py -q build_ext --inplace)
    python scripts/pack_ab.py /tmp/old/host/_cpack.abi3.so host/_cpack.abi3.so

Both builds must give the same bytes (checked on the first round). ``--simd`` caps the vector
level as ``FIBERFLOW_SIMD`` does.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
from ab import load, paired  # scripts/ab.py

import fiberflow as ff
from fiberflow.bench.pack import MAKERS, SHAPES, parse_shape
from fiberflow.host.images import pack_c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--simd", default="", help="FIBERFLOW_SIMD for both builds (avx2, avx512)")
    ap.add_argument("--matrices", nargs="*", default=list(MAKERS), choices=list(MAKERS))
    ap.add_argument("--n", type=int, default=200_000, help="rows and columns of each matrix")
    ap.add_argument("--nnz", type=int, default=4_000_000, help="about this many nonzeros")
    ap.add_argument("--shapes", nargs="*", type=parse_shape,
                    default=[parse_shape("2048x65536"), *map(parse_shape, SHAPES)])  # fmt: skip
    args = ap.parse_args()
    if args.simd:
        os.environ["FIBERFLOW_SIMD"] = args.simd
    builds = [load(args.old, "fiberflow.host._cpack", "old"),
              load(args.new, "fiberflow.host._cpack", "new")]  # fmt: skip
    print(f"FIBERFLOW_SIMD={args.simd or '(unset)'}, {args.rounds} paired rounds")
    print("| matrix | tile | old ms | new ms | new / old (median of paired rounds) |")
    print("|---|---|---|---|---|")
    for name in args.matrices:
        t = ff.Tensor.from_scipy(MAKERS[name](args.n, args.nnz, 0))
        for tile, bits in args.shapes:

            def run(build: Any, t: ff.Tensor = t, tile: Any = tile, bits: Any = bits) -> Any:
                pack_c.ffi, pack_c.lib = build.ffi, build.lib
                return ff.pack(t, tile, coord_bits=bits, impl="c").data

            cells, first = paired(run, builds, args.rounds)
            if not np.array_equal(first[0], first[1]):
                raise SystemExit(f"{name} {tile}: the two builds give different bytes")
            print(f"| {name} | {tile[0]} x {tile[1]} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
