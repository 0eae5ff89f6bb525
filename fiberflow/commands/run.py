"""``fiberflow run spmv|spmm --matrix FILE.mtx``: one kernel on a Matrix Market matrix."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import fiberflow as ff
from fiberflow import datasets, verify
from fiberflow.commands import _device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run SpMV or SpMM on a Matrix Market file and check it against scipy",
        description="Load a matrix from a Matrix Market (.mtx) file, multiply it on a device by a "
        "random vector (spmv) or random dense matrix (spmm), compare with scipy, and print the "
        "device's statistics. Every conversion of the file's values is reported.",
    )
    p.add_argument("kernel", choices=["spmv", "spmm"])
    p.add_argument("--matrix", type=Path, required=True, metavar="FILE.mtx")
    _device.add_arguments(p)
    p.add_argument(
        "--dtype",
        choices=["float32", "int32"],
        default=None,
        help="value type on the device (default: int32 for an integer file, else float32)",
    )
    p.add_argument(
        "--cols", type=_device.positive_int, default=8, help="columns of B for spmm (default 8)"
    )
    p.add_argument(
        "--tile",
        type=_device.positive_int,
        nargs=2,
        default=None,
        metavar=("ROWS", "COLS"),
        help="tile shape, checked against the device's limits before any work",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    f = datasets.read_matrix_market(args.matrix, args.dtype)
    A, dtype = f.matrix, f.dtype
    m, n = A.shape
    rng = np.random.default_rng(args.seed)
    shape = (n, args.cols) if args.kernel == "spmm" else n
    if dtype == "int32":
        dense = rng.integers(-10, 11, shape).astype(np.int32)
    else:
        dense = rng.standard_normal(shape).astype(np.float32)
    print(f"{args.matrix}: {m} x {n}, nnz {A.nnz}, {f.field} values, run as {dtype}")
    for line in f.conversions:
        print(f"  {line}")
    dev = _device.open_device(args, dtype)
    try:
        return _run_on(dev, args, f, dense)
    finally:
        dev.close()


def _run_on(
    dev: ff.Device, args: argparse.Namespace, f: datasets.MatrixFile, dense: np.ndarray
) -> int:
    A, dtype = f.matrix, f.dtype
    tile = tuple(args.tile) if args.tile else None
    _device.check_tile(dev, tile, dtype)
    start = time.perf_counter()
    h = dev.put(A, dtype=dtype, tile=tile)
    packed = time.perf_counter() - start
    start = time.perf_counter()
    kernel = ff.spmv if args.kernel == "spmv" else ff.spmm
    out = kernel(h, dense, device=dev)
    seconds = time.perf_counter() - start
    ok, check = verify.against_scipy(out, A, dense)
    print(
        f"  resident image {h.image_bytes:,} bytes ({h.image_bytes / max(A.nnz, 1):.2f} B/nnz), "
        f"tile {h.tile[0]} x {h.tile[1]}, packed in {packed * 1e3:.1f} ms"
    )
    print(f"  {args.kernel} on {args.device}: {check}")
    if dtype == "float32" and f.field != "pattern":
        print(f"  input rounding: {verify.input_rounding(f.exact, A, dense)}")
    print(f"  {_device.timing_lines(args, seconds, dev.last_stats)}")
    print(f"  {dev.last_stats.summary()}")
    return 0 if ok else 1
