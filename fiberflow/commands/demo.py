"""``fiberflow demo``: the main job on the emulator with bundled data.

For each bundled matrix: put it on an emulator device once (a resident DMA image), run SpMV and
SpMM on it, check both against scipy, and print the device's statistics; then check that the
DMA image unpacks to the matrix bit for bit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import datasets, verify
from fiberflow.commands import _device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run SpMV and SpMM on the bundled matrices, checked against scipy",
        description="Put each bundled sparse matrix on a device (the functional emulator "
        "unless --device says otherwise), run SpMV and SpMM on it, check the results against "
        "scipy, print the estimated cycles and efficiency, and check the DMA image's "
        "pack/unpack round trip.",
    )
    _device.add_arguments(p)
    p.add_argument(
        "--cols", type=_device.positive_int, default=8, help="columns of B for SpMM (default 8)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dev = _device.open_device(args, "float32")
    try:
        ok = _demo(dev, args)
    finally:
        dev.close()
    print("demo passed" if ok else "demo FAILED")
    return 0 if ok else 1


def _demo(dev: ff.Device, args: argparse.Namespace) -> bool:
    ok = True
    rng = np.random.default_rng(args.seed)
    print(f"device: {dev!r}")
    for name, about in datasets.BUNDLED.items():
        A = sp.csr_array(datasets.load(name), dtype=np.float32)
        m, n = A.shape
        print(f"{name}: {about}")
        start = time.perf_counter()
        h = dev.put(A)
        print(
            f"  {m} x {n}, nnz {A.nnz}: resident image {h.image_bytes:,} bytes "
            f"({h.image_bytes / max(A.nnz, 1):.2f} B/nnz) in {h.tile[0]} x {h.tile[1]} tiles, "
            f"packed in {(time.perf_counter() - start) * 1e3:.1f} ms"
        )
        x = rng.standard_normal(n).astype(np.float32)
        B = rng.standard_normal((n, args.cols)).astype(np.float32)
        for label, kernel, dense in (("spmv", ff.spmv, x), (f"spmm (k={args.cols})", ff.spmm, B)):
            start = time.perf_counter()
            out = kernel(h, dense, device=dev)
            seconds = time.perf_counter() - start
            good, verdict = verify.against_scipy(out, A, dense)
            ok &= good
            print(f"  {label}: {verdict}")
            print(f"    {_device.timing_lines(args, seconds, dev.last_stats)}")
            print(f"    {dev.last_stats.summary()}")
        h.free()
        t = ff.Tensor.from_scipy(A, format="ds")
        exact = ff.unpack(ff.pack(t, tile=(256, 256)).tobytes()) == t
        ok &= exact
        print(f"  pack/unpack round trip (256 x 256 tiles) is bit-exact: {exact}")
    return ok
