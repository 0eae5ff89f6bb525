"""``fiberflow demo``: the main job on the emulator with bundled data."""

from __future__ import annotations

import argparse
import time

import numpy as np

import fiberflow as ff
from fiberflow import datasets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="pack the bundled matrices into DMA images and verify the round trip",
        description="Pack each bundled sparse matrix into a DMA image with the C fast path and "
        "the numpy reference, check that both give identical bytes and that unpacking "
        "gives back the matrix bit for bit, and print what was done.",
    )
    p.add_argument("--tile", type=int, nargs=2, default=(256, 256), metavar=("ROWS", "COLS"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ok = True
    for name, about in datasets.BUNDLED.items():
        A = datasets.load(name)
        t = ff.Tensor.from_scipy(A, format="ds", dtype="float32")
        start = time.perf_counter()
        img = ff.pack(t, tile=tuple(args.tile))
        seconds = time.perf_counter() - start
        same_bytes = np.array_equal(img.data, ff.pack(t, tile=tuple(args.tile), impl="numpy").data)
        back = ff.unpack(img.tobytes())
        exact = back == t
        ok &= same_bytes and exact
        print(f"{name}: {about}")
        print(
            f"  {t.shape[0]} x {t.shape[1]}, nnz {t.nnz}, format {t.format!r} -> "
            f"{img.n_tiles} non-empty {args.tile[0]}x{args.tile[1]} tiles, {img.nbytes} bytes "
            f"({img.nbytes / max(t.nnz, 1):.2f} B/nnz), packed in {seconds * 1e3:.1f} ms"
        )
        print(f"  C and numpy packers give identical bytes: {same_bytes}")
        print(f"  unpack(pack(A)) is bit-exact: {exact}")
    print("demo passed" if ok else "demo FAILED")
    return 0 if ok else 1
