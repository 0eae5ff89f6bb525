"""``fiberflow run spmv|spmm --matrix FILE.mtx``: one kernel on a Matrix Market matrix."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import verify
from fiberflow.errors import FiberflowError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run SpMV or SpMM on a Matrix Market file and check it against scipy",
        description="Load a matrix from a Matrix Market (.mtx) file, multiply it on a device by a "
        "random vector (spmv) or random dense matrix (spmm), compare with scipy, and print the "
        "device's statistics.",
    )
    p.add_argument("kernel", choices=["spmv", "spmm"])
    p.add_argument("--matrix", type=Path, required=True, metavar="FILE.mtx")
    p.add_argument("--device", default="emu", help="device to run on (default: emu)")
    p.add_argument("--dtype", choices=["float32", "int32"], default="float32")
    p.add_argument("--cols", type=int, default=8, help="columns of B for spmm (default 8)")
    p.add_argument("--tile", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def load_matrix(path: Path) -> sp.csr_array:
    if not path.exists():
        raise FiberflowError(f"{path}: no such file; give a Matrix Market (.mtx) file")
    try:
        M = scipy.io.mmread(path)
    except (ValueError, OSError) as exc:
        raise FiberflowError(f"{path} is not a readable Matrix Market file: {exc}") from None
    if not sp.issparse(M):
        M = sp.csr_array(np.asarray(M))
    if np.iscomplexobj(M.data):
        raise FiberflowError(f"{path} holds complex values; fiberflow computes with real values")
    return sp.csr_array(M)


def run(args: argparse.Namespace) -> int:
    A64 = load_matrix(args.matrix)
    m, n = A64.shape
    rng = np.random.default_rng(args.seed)
    if args.dtype == "int32":
        if A64.dtype.kind == "f" and not np.array_equal(A64.data, np.round(A64.data)):
            raise FiberflowError(
                f"{args.matrix} has non-integer values; run it with --dtype float32"
            )
        A = sp.csr_array(A64, dtype=np.int64)
        dense = rng.integers(-10, 11, (n, args.cols) if args.kernel == "spmm" else n)
    else:
        A = A64
        dense = rng.standard_normal((n, args.cols) if args.kernel == "spmm" else n)
    dense = dense.astype(args.dtype)
    # The rtl overlay is generated for one value type: open it for the one asked for.
    dev = ff.open(args.device, **({"dtype": args.dtype} if args.device == "rtl" else {}))
    tile = tuple(args.tile) if args.tile else None
    start = time.perf_counter()
    h = dev.put(A, dtype=args.dtype, tile=tile)
    packed = time.perf_counter() - start
    start = time.perf_counter()
    kernel = ff.spmv if args.kernel == "spmv" else ff.spmm
    out = kernel(h, dense, device=dev)
    seconds = time.perf_counter() - start
    ok, check = verify.against_scipy(out, sp.csr_array(A, dtype=np.dtype(args.dtype)), dense)
    print(f"{args.matrix}: {m} x {n}, nnz {A.nnz}, {args.dtype}")
    print(
        f"  resident image {h.image_bytes:,} bytes ({h.image_bytes / max(A.nnz, 1):.2f} B/nnz), "
        f"tile {h.tile[0]} x {h.tile[1]}, packed in {packed * 1e3:.1f} ms"
    )
    print(f"  {args.kernel} on {args.device}: {seconds * 1e3:.2f} ms wall; {check}")
    print(f"  {dev.last_stats.summary()}")
    return 0 if ok else 1
