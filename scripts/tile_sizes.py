"""SpMV on the rtl device (and the emulator's estimate) with 32 KB and 64 KB tile buffers, on a
board's default overlay otherwise, over the rtl bench's matrices: the measurement behind
boards/build.py's default tile size.

    python scripts/tile_sizes.py [--board zcu104]
"""

from __future__ import annotations

import argparse

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="zcu104")
    args = p.parse_args()
    print("| tile buffer | matrix | rtl nnz/cycle | rtl cycles | emu / rtl cycles |")
    print("|---|---|---|---|---|")
    for tile in (32768, 65536):
        with ff.open("rtl", board=args.board, tile_bytes=tile) as rtl, \
                ff.open("emu", board=args.board, tile_bytes=tile) as emu:  # fmt: skip
            for name, A in cases(1.0):  # the rtl bench's spread of shapes
                x = np.ones(A.shape[1], np.float32)
                y, want = ff.spmv(A, x, device=rtl), ff.spmv(A, x, device=emu)
                assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
                s, e = rtl.last_stats, emu.last_stats
                print(f"| {tile // 1024} KB | {name} | {s.nnz / s.cycles:.2f} | {s.cycles:,} | "
                      f"{e.cycles / s.cycles:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
