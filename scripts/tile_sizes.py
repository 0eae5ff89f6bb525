"""SpMV on the rtl device (and the emulator's estimate) with 32 KB and 64 KB tile buffers, on a
board's default overlay otherwise, over the rtl bench's matrices: the measurement behind
boards/build.py's default tile size. With ``--emu``, the emulator's cycle model alone, for the
board's default overlay against 64 KB tiles and two ways to fit them in less block RAM (smaller
x and y buffers; three lanes): the speed of each against the default.

    python scripts/tile_sizes.py [--board zcu104]
    python scripts/tile_sizes.py --board pynq-z2 --emu
"""

from __future__ import annotations

import argparse

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import cases

VARIANTS = {  # (emulator only) overlay parameters against the board's default overlay
    "64 KB tiles": {"tile_bytes": 65536},
    "64 KB tiles, 16 KB x, 8 KB y": {"tile_bytes": 65536, "x_bytes": 16384, "y_bytes": 8192},
    "3 lanes, 64 KB tiles": {"lanes": 3, "tile_bytes": 65536},
}


def rtl_and_emu(board: str) -> None:
    print("| tile buffer | matrix | rtl nnz/cycle | rtl cycles | emu / rtl cycles |")
    print("|---|---|---|---|---|")
    for tile in (32768, 65536):
        with ff.open("rtl", board=board, tile_bytes=tile) as rtl, \
                ff.open("emu", board=board, tile_bytes=tile) as emu:  # fmt: skip
            for name, A in cases(1.0):  # the rtl bench's spread of shapes
                x = np.ones(A.shape[1], np.float32)
                y, want = ff.spmv(A, x, device=rtl), ff.spmv(A, x, device=emu)
                assert np.array_equal(y.view(np.uint32), want.view(np.uint32))
                s, e = rtl.last_stats, emu.last_stats
                print(f"| {tile // 1024} KB | {name} | {s.nnz / s.cycles:.2f} | {s.cycles:,} | "
                      f"{e.cycles / s.cycles:.3f} |")  # fmt: skip


def emu_variants(board: str) -> None:
    print("| matrix | default: emu cycles | " + " | ".join(VARIANTS) + " |")
    print("|---" * (2 + len(VARIANTS)) + "|")
    for name, A in cases(1.0):
        x = np.ones(A.shape[1], np.float32)
        cycles = []
        for params in ({}, *VARIANTS.values()):
            with ff.open("emu", board=board, **params) as emu:
                ff.spmv(A, x, device=emu)
                cycles.append(emu.last_stats.cycles)
        speed = " | ".join(f"{cycles[0] / c:.2f}x" for c in cycles[1:])
        print(f"| {name} | {cycles[0]:,} | {speed} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="zcu104")
    p.add_argument("--emu", action="store_true", help="the emulator's model of other buffers")
    args = p.parse_args()
    (emu_variants if args.emu else rtl_and_emu)(args.board)


if __name__ == "__main__":
    main()
