"""``fiberflow bench spmm``: emulator SpMM on a resident matrix against scipy, and the roofline
of SpMM as the number of columns of B grows."""

from __future__ import annotations

import argparse

import numpy as np

import fiberflow as ff
from fiberflow.bench import Report, counted
from fiberflow.bench._roofline import NO_PLOT, check_and_time, peak_extra, roofline_plot, stats_dict
from fiberflow.bench.pack import random_csr

DESCRIPTION = "emulator SpMM (dense B with k columns) on a resident float32 matrix vs scipy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nnz", type=int, default=1_000_000, help="nonzeros (default 1M)")
    p.add_argument("--n", type=int, default=100_000, help="rows = columns (default 100k)")
    p.add_argument("--cols", type=int, default=8, help="columns of B (default 8)")
    p.add_argument("--repeat", type=int, default=7, help="timed rounds; medians reported")
    p.add_argument("--seed", type=int, default=0)
    # emu: the emulator against scipy. rtl, pynq: bench spmv's suite of matrices, multiplied by
    # a B of --cols columns on a device with hardware counters, each result checked against
    # the emulator.
    counted.add_arguments(p)


def run(args: argparse.Namespace) -> Report:
    if args.device != "emu":
        return counted.run(args, "spmm")
    counted.check_emu_options(args)
    A = random_csr(args.n, args.nnz, args.seed)
    rng = np.random.default_rng(args.seed)
    B = rng.standard_normal((args.n, args.cols)).astype(np.float32)
    dev = ff.open("emu")
    h = dev.put(A)
    verdict, stats, secs = check_and_time("spmm", A, h, B, dev, args.repeat)
    call_peak = peak_extra(lambda: ff.spmm(h, B, device=dev))
    base = secs["scipy A @ B"]
    work = A.nnz * args.cols
    rows = [[name, s * 1e3, work / s / 1e6, base / s] for name, s in secs.items()]
    ratio = base / secs["emu ff.spmm, resident A"]
    points = []
    for k in (1, 2, 4, 8, 16, 32):
        ff.spmm(h, np.ones((args.n, k), np.float32), device=dev)
        points.append((f"k = {k}", dev.last_stats))
    plots = roofline_plot(
        args.out / "spmm-roofline.png", points, f"SpMM on emu, nnz {A.nnz:,}: model estimate"
    )
    notes = [
        f"A {args.n:,} x {args.n:,}, nnz {A.nnz:,}, B {args.n:,} x {args.cols}, float32; {verdict}",
        f"emu resident / scipy throughput = {ratio:.2f}, medians of {args.repeat} interleaved "
        "rounds in this one run",
        f"resident image {h.image_bytes / A.nnz:.2f} B/nnz; peak extra memory of one resident "
        f"spmm call: {call_peak / 1e6:.2f} MB ({call_peak / (4 * 2 * args.n * args.cols):.2f}x "
        "the bytes of B and C)",
        f"model for k = {args.cols}: {stats.cycles:,} cycles = {stats.seconds_est * 1e3:.1f} ms "
        f"at {stats.clock_mhz:g} MHz, efficiency {stats.efficiency:.2f}, {stats.bound}-bound",
        "model as k grows (a lane multiplies one nonzero by one column of B per cycle, and "
        "each tile loads its k-wide rows of B, so both the work and the B traffic grow with "
        "k; the image's share of the traffic shrinks): "
        + "; ".join(
            f"{label}: {s.work / s.cycles:.2f} ops/cycle ({s.bound})" for label, s in points
        ),
    ]
    return Report(
        target="spmm",
        title="SpMM on the emulator",
        command=f"fiberflow bench spmm --nnz {args.nnz} --n {args.n} --cols {args.cols} "
        f"--repeat {args.repeat}",
        columns=["path", "median ms", "M nnz*k/s", "vs scipy"],
        rows=rows,
        notes=notes if plots else [*notes, NO_PLOT],
        data={
            "seconds": secs,
            "ratio_resident_vs_scipy": ratio,
            "image_bytes_per_nnz": h.image_bytes / A.nnz,
            "peak_extra_call": call_peak,
            "model": {label: stats_dict(s) for label, s in points},
        },
        plots=plots,
    )
