"""The packer into kept pages (a repeated pack, host/imagemem.c) against new pages (the kept ones
given back with ``image_memory.trim()`` before each pack), at several tile shapes.

    python scripts/image_memory_speed.py [--repeat N]

Random 200k x 200k matrix, 4M nonzeros (the pack bench's); the two ways alternate, medians.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fiberflow as ff
from fiberflow.bench.pack import random_csr
from fiberflow.host.images import image_memory

SHAPES = [(2048, 65536), (408, 8000), (1642, 8190), (4096, 4096), (256, 256), (8192, 1000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    t = ff.Tensor.from_scipy(random_csr(200_000, 4_000_000, 0))
    print("| tile | image MB | new pages ms | kept pages ms | kept / new |")
    print("|---|---|---|---|---|")
    for tile in SHAPES:
        nbytes = ff.pack(t, tile).nbytes
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeat):
            for keep in (False, True):
                if not keep:
                    image_memory.trim()
                start = time.perf_counter()
                ff.pack(t, tile)
                times[keep].append(time.perf_counter() - start)
        new, kept = (float(np.median(times[k])) * 1e3 for k in (False, True))
        print(f"| {tile[0]} x {tile[1]} | {nbytes / 1e6:.1f} | {new:.1f} | {kept:.1f} | "
              f"{kept / new:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
