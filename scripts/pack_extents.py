"""What recording each tile's x window (directory words 6 and 7) costs the C packer: the same
pack with and without it, alternating in one process, at the devices' tile shapes and the
default one; the median of the per-round time ratios.

    python scripts/pack_extents.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fiberflow as ff
from fiberflow.bench.pack import banded_csr, random_csr
from fiberflow.host.images import dma_image as di

CASES = [
    ("random 100k x 100k, 1M", lambda: random_csr(100_000, 1_000_000, 1), (408, 8000)),
    ("random 100k x 100k, 1M", lambda: random_csr(100_000, 1_000_000, 1), (8192, 65536)),
    ("banded 300k x 300k, 4M", lambda: banded_csr(300_000, 4_000_000, 2), (1642, 8190)),
    ("banded 300k x 300k, 4M", lambda: banded_csr(300_000, 4_000_000, 2), (408, 8000)),
    ("banded 300k x 300k, 4M, 32-bit", lambda: banded_csr(300_000, 4_000_000, 2), (1000, 100000)),
]


def timed(t: ff.Tensor, tile: tuple[int, int], extents: bool) -> float:
    keep = di.records_extents
    di.records_extents = (lambda geo: keep(geo)) if extents else (lambda geo: False)
    try:
        start = time.perf_counter()
        ff.pack(t, tile)
        return time.perf_counter() - start
    finally:
        di.records_extents = keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    print("| matrix | tile | ms with windows | ms without | ratio (median of rounds) |")
    print("|---|---|---|---|---|")
    for name, make, tile in CASES:
        t = ff.Tensor.from_scipy(make(), "ds")
        timed(t, tile, True), timed(t, tile, False)  # warm-up
        pairs = [(timed(t, tile, True), timed(t, tile, False)) for _ in range(args.rounds)]
        on, off = np.array(pairs).T
        print(f"| {name} | {tile[0]} x {tile[1]} | {np.median(on) * 1e3:.2f} | "
              f"{np.median(off) * 1e3:.2f} | {np.median(on / off):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
