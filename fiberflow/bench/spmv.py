"""``fiberflow bench spmv``: emulator SpMV on a resident matrix against scipy, memory, roofline."""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import datasets
from fiberflow.bench import Report, counted
from fiberflow.bench._roofline import NO_PLOT, check_and_time, peak_extra, roofline_plot, stats_dict
from fiberflow.bench.pack import random_csr

DESCRIPTION = "emulator SpMV on a resident 4M-nonzero float32 matrix vs scipy's A @ x; roofline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nnz", type=int, default=4_000_000, help="nonzeros (default 4M)")
    p.add_argument("--n", type=int, default=200_000, help="rows = columns (default 200k)")
    p.add_argument("--repeat", type=int, default=9, help="timed rounds; medians reported")
    p.add_argument("--seed", type=int, default=0)
    # emu: the emulator against scipy. rtl, pynq: the same suite of matrices on a device with
    # hardware counters (efficiency, control overhead; on rtl also simulation speed and build
    # time), every result checked against the emulator.
    counted.add_arguments(p)


def model_points(dev: ff.Device, A: sp.csr_array) -> list[tuple[str, ff.RunStats]]:
    """The performance model's estimate for the benchmark matrix and a few others."""
    cases = {
        f"random {A.shape[0]:,}^2, {A.nnz / A.shape[0]:.0f}/row": A,
        "banded (poisson2d_32)": datasets.load("poisson2d_32"),
        "power law (powerlaw_2000)": datasets.load("powerlaw_2000"),
    }
    n = max(A.shape[0] // 10, 1)  # the same nonzeros, ten times denser rows
    cases[f"random {n:,}^2, {A.nnz / n:.0f}/row"] = random_csr(n, A.nnz, 1)
    points = []
    for label, M in cases.items():
        M = sp.csr_array(M, dtype=np.float32)
        ff.spmv(M, np.ones(M.shape[1], np.float32), device=dev)
        points.append((label, dev.last_stats))
    return points


def run(args: argparse.Namespace) -> Report:
    if args.device != "emu":
        return counted.run(args, "spmv")
    counted.check_emu_options(args)
    A = random_csr(args.n, args.nnz, args.seed)
    x = np.random.default_rng(args.seed).standard_normal(args.n).astype(np.float32)
    dev = ff.open("emu")
    put_peak = peak_extra(lambda: dev.put(A).free())
    h = dev.put(A)
    verdict, stats, secs = check_and_time("spmv", A, h, x, dev, args.repeat)
    call_peak = peak_extra(lambda: ff.spmv(h, x, device=dev))
    base = secs["scipy A @ x"]
    rows = [[name, s * 1e3, A.nnz / s / 1e6, base / s] for name, s in secs.items()]
    ratio = base / secs["emu ff.spmv, resident A"]
    points = model_points(dev, A)
    plots = roofline_plot(args.out / "spmv-roofline.png", points, "SpMV on emu: model estimate")
    notes = [
        f"matrix {args.n:,} x {args.n:,}, nnz {A.nnz:,}, float32; {verdict}",
        f"emu resident / scipy throughput = {ratio:.2f} (target >= 0.5), medians of "
        f"{args.repeat} interleaved rounds in this one run",
        f"resident image: {h.image_bytes:,} bytes = {h.image_bytes / A.nnz:.2f} B/nnz "
        f"({h.tile[0]} x {h.tile[1]} tiles, 16-bit coordinates); peak extra memory of put(): "
        f"{put_peak / 1e6:.1f} MB ({put_peak / h.image_bytes:.2f}x the image); of one resident "
        f"spmv call: {call_peak / 1e6:.2f} MB (x, y and the descriptor: "
        f"{call_peak / (8 * args.n):.2f}x the bytes of x and y)",
        f"model (PYNQ-Z2 defaults, {stats.lanes} lanes, {stats.bus_bytes_per_cycle} B/cycle, "
        f"{stats.clock_mhz:g} MHz): {stats.cycles:,} cycles = {stats.seconds_est * 1e3:.1f} ms, "
        f"efficiency {stats.efficiency:.2f}, {stats.bound}-bound; DMA {stats.dma_bytes:,} B "
        f"({stats.dma_bytes / A.nnz:.1f} B/nnz: x is reloaded for every tile)",
        "the plot places each matrix's estimate under the model's roof: "
        + "; ".join(
            f"{label}: {s.work / s.cycles:.2f} nnz/cycle, efficiency {s.efficiency:.2f}"
            for label, s in points
        ),
    ]
    return Report(
        target="spmv",
        title="SpMV on the emulator",
        command=f"fiberflow bench spmv --nnz {args.nnz} --n {args.n} --repeat {args.repeat}",
        columns=["path", "median ms", "M nnz/s", "vs scipy"],
        rows=rows,
        notes=notes if plots else [*notes, NO_PLOT],
        data={
            "seconds": secs,
            "ratio_resident_vs_scipy": ratio,
            "image_bytes": h.image_bytes,
            "image_bytes_per_nnz": h.image_bytes / A.nnz,
            "peak_extra_put": put_peak,
            "peak_extra_call": call_peak,
            "model": {label: stats_dict(s) for label, s in points},
        },
        plots=plots,
    )
