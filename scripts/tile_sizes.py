"""SpMV on the rtl device (and the emulator's estimate) with 32 KB and 64 KB tile buffers, on a
board's default overlay otherwise: the measurement behind boards/build.py's default tile size.

    python scripts/tile_sizes.py [--board zcu104]
"""

from __future__ import annotations

import argparse

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import poisson, random_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="zcu104")
    args = p.parse_args()
    cases = {"2-D Poisson, 5/row": poisson(300, 2),
             "random 32k x 8k, 12/row": random_rows(32000, 8000, 12, 1)}  # fmt: skip
    print("| tile buffer | matrix | rtl nnz/cycle | rtl cycles | emu / rtl cycles |")
    print("|---|---|---|---|---|")
    for tile in (32768, 65536):
        with ff.open("rtl", board=args.board, tile_bytes=tile) as rtl, \
                ff.open("emu", board=args.board, tile_bytes=tile) as emu:  # fmt: skip
            for name, A in cases.items():
                x = np.ones(A.shape[1], np.float32)
                y, want = ff.spmv(A, x, device=rtl), ff.spmv(A, x, device=emu)
                assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
                s, e = rtl.last_stats, emu.last_stats
                print(f"| {tile // 1024} KB | {name} | {s.nnz / s.cycles:.2f} | {s.cycles:,} | "
                      f"{e.cycles / s.cycles:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
