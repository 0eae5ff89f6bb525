"""``fiberflow bench spmv|spmm --device dask --workers N``: one matrix in row blocks over N
Dask workers against one device: nonzeros per worker, the bytes of x each call ships against
a broadcast of x, wall time, and the per-call overhead (docs/distributed.md)."""

from __future__ import annotations

import argparse

import numpy as np

import fiberflow as ff
from fiberflow.bench import Report, median_seconds
from fiberflow.errors import FiberflowError
from fiberflow.progress import progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dask (--device dask)")
    g.add_argument("--workers", type=int, default=2, help="workers of a local cluster (default 2)")
    g.add_argument(
        "--worker-device",
        choices=("emu", "rtl"),
        default="emu",
        help="what each worker opens (default emu; a board's worker opens pynq)",
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running cluster's scheduler (tcp://host:8786) instead of a local one",
    )


def run(args: argparse.Namespace, kernel: str) -> Report:
    from distributed import Client, LocalCluster

    from fiberflow.bench.counted import cases, random_rows

    if args.overlay is not None or args.emulate:
        raise FiberflowError("--overlay and --emulate are options of --device pynq")
    if args.workers < 1:
        raise FiberflowError(f"--workers must be at least 1, not {args.workers}")
    k = args.cols if kernel == "spmm" else 1
    s = args.scale
    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")  # fmt: skip
        client = Client(cluster)
    rows, data = [], {}
    rng = np.random.default_rng(0)
    try:
        with ff.open("dask", client=client, device=args.worker_device) as dev, \
                ff.open(args.worker_device) as one:  # fmt: skip
            workers = len(dev.workers)
            tiny = dev.put(random_rows(8, 8, 1, 0))
            overhead = median_seconds(lambda: tiny @ np.ones(8, np.float32), args.repeat)
            tiny.free()
            for label, A in progress(cases(s), desc="matrices"):  # the rtl bench's spread
                dense = rng.standard_normal((A.shape[1],) if k == 1 else (A.shape[1], k))
                dense = dense.astype(np.float32)
                with dev.put(A) as h, one.put(A) as h1:
                    want = h1 @ dense
                    got = h @ dense
                    if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
                        raise AssertionError(
                            f"{label}: the sharded result differs from one device's"
                        )
                    t_one = median_seconds(lambda h1=h1, d=dense: h1 @ d, args.repeat)
                    t_dask = median_seconds(lambda h=h, d=dense: h @ d, args.repeat)
                    st, st1 = dev.last_stats, one.last_stats
                per = [sum(r.nnz for r in v) for v in st.per_worker.values()]
                rows.append([
                    label, A.nnz, workers, f"{min(per):,}-{max(per):,}",
                    st.bytes_shipped, st.bytes_touched, st.bytes_broadcast,
                    st.bytes_shipped / max(st.bytes_touched, 1),
                    t_one * 1e3, t_dask * 1e3, t_one / t_dask, st1.cycles, st.cycles,
                ])  # fmt: skip
                data[label] = {"one_cycles": st1.cycles, "busiest_cycles": st.cycles,
                               "bytes_returned": st.bytes_returned}  # fmt: skip
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    where = args.scheduler or f"a local cluster of {args.workers} worker processes"
    notes = [
        f"{kernel}{'' if k == 1 else f' with k = {k}'}: {workers} worker(s) on {where}, each "
        f"running a {args.worker_device!r} device; one device: the same kind, in this process; "
        "every sharded result bit-identical to one device's",
        "shipped: the x entries (rows of B) sent to the workers in one call, with Dask's "
        "framing of each array (measured once on an empty array of their type); touched: the "
        "entries the blocks' columns read; broadcast: x (B) whole to every block's worker",
        "wall ms: medians of the host's time per call (for emu and rtl devices this is "
        "computing time on this machine, not a board's); cycles: one device's job against "
        "the busiest worker's blocks (the device time of a call)",
        f"per-call overhead of the dask device (an 8 x 8 matrix, median): {overhead * 1e3:.2f} ms",
    ]
    data["overhead_seconds"] = overhead
    cmd = f"fiberflow bench {kernel} --device dask --workers {args.workers}"
    if args.worker_device != "emu":
        cmd += f" --worker-device {args.worker_device}"
    return Report(
        target=f"{kernel}-dask",
        title=f"{'SpMV' if k == 1 else f'SpMM (k = {k})'} sharded over Dask workers",
        command=cmd + (f" --cols {k}" if k > 1 else "") + (f" --scale {s:g}" if s != 1 else ""),
        columns=[
            "matrix",
            "nnz",
            "workers",
            "nnz per worker",
            "x shipped B",
            "x touched B",
            "x broadcast B",
            "shipped / touched",
            "one device ms",
            "dask ms",
            "wall speed-up",
            "one device cycles",
            "busiest worker cycles",
        ],
        rows=rows,
        notes=notes,
        data=data,
    )
