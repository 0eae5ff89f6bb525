"""``fiberflow bench spmv --device rtl`` and ``fiberflow bench spmm --device rtl`` (or
``--device pynq --overlay DIR [--emulate]``): SpMV or SpMM on a device with hardware counters,
the cycle-accurate one (the generated shell with its firmware in Verilator) or a board,
reported as a user sees it: nonzeros (SpMM: multiply-adds) per cycle against the lanes'
capacity, lane utilisation, the share of the board's DDR bandwidth the job used, the projected
rate at the overlay's clock and how busy each DMA engine was; on rtl also the simulation speed
and Verilator build time. Every result is checked bit for bit against the emulator.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import boards
from fiberflow.bench import Report, sharded, uncached_build_seconds
from fiberflow.bench._roofline import NO_PLOT, roofline_plot, stats_dict
from fiberflow.commands._device import add_arguments as device_options
from fiberflow.commands._device import open_device
from fiberflow.errors import FiberflowError
from fiberflow.progress import progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the device suite, shared by bench spmv and bench spmm (whose default
    device, emu, runs their own emulator benchmark instead)."""
    device_options(p, more=("dask",))
    sharded.add_arguments(p)
    p.add_argument("--lanes", type=int, default=4, help="rtl: lanes of the overlay (default 4)")
    p.add_argument("--scale", type=float, default=1.0, help="rtl: scale the matrices' rows")
    p.add_argument("--cached", action="store_true", help="rtl: skip the uncached build timing")
    p.add_argument(
        "--dma-engines",
        type=int,
        default=None,
        help="rtl: DMA engines of the overlay (default: the board's, 2 on a PYNQ-Z2)",
    )


def check_emu_options(args: argparse.Namespace) -> None:
    """Refuse the board options with the emulator benchmark."""
    if args.overlay is not None or args.emulate:
        raise FiberflowError("--overlay and --emulate are options of --device pynq")


def goal(per_row: float, k: int = 1) -> float | None:
    """Nonzeros per cycle (SpMM: multiply-adds) the default overlay is to reach at ``per_row``
    nonzeros per row: SpMV 2.0 at 5-9 and 2.5 at 10 or more (none below 5: such rows are bound
    by their y traffic); SpMM 3.0 at k = 8 (none set for other k)."""
    if k > 1:
        return 3.0 if k == 8 else None
    return 2.5 if per_row >= 10 else 2.0 if per_row >= 5 else None


def random_rows(m: int, n: int, per_row: int, seed: int) -> sp.csr_array:
    """An m x n float32 matrix with ``per_row`` random columns in every row (fewer where two
    coincide)."""
    r = np.random.default_rng(seed)
    rows = np.repeat(np.arange(m), per_row)
    cols = r.integers(0, n, m * per_row)
    vals = r.standard_normal(m * per_row).astype(np.float32)
    A = sp.csr_array((vals, (rows, cols)), shape=(m, n))
    A.sum_duplicates()
    return A


def poisson(side: int, dims: int) -> sp.csr_array:
    """The finite-difference matrix of a ``dims``-D Poisson problem on a grid of ``side`` points
    a dimension, float32 (5 nonzeros a row in 2-D, 7 in 3-D)."""
    line = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(side, side))
    eye = sp.eye_array(side)
    A = line
    for _ in range(dims - 1):
        A = sp.kron(A, eye) + sp.kron(sp.eye_array(A.shape[0]), line)
    return sp.csr_array(A, dtype=np.float32)


def cases(scale: float) -> list[tuple[str, sp.csr_array]]:
    """(label, matrix): random ones whose x fits one column tile (n = 8000) unless said
    otherwise, and the finite-difference matrices of 2-D and 3-D Poisson problems (5 and 7
    nonzeros per row, banded: their x spans many column tiles)."""
    rnd = random_rows
    s = scale
    return [
        ("random 32k x 8k, 12/row", rnd(int(32000 * s), 8000, 12, 1)),
        ("random 16k x 8k, 32/row", rnd(int(16000 * s), 8000, 32, 2)),
        ("random 64k x 8k, 3/row", rnd(int(64000 * s), 8000, 3, 3)),
        ("random 64k x 8k, 2/row", rnd(int(64000 * s), 8000, 2, 4)),
        ("random 40k x 40k, 12/row (x in 5 slices)", rnd(int(40000 * s), 40000, 12, 5)),
        ("2-D Poisson, 5/row", poisson(max(8, int(300 * s**0.5)), 2)),
        ("3-D Poisson, 7/row", poisson(max(4, int(48 * s ** (1 / 3))), 3)),
    ]


def ddr_bytes_per_cycle(dev: Any) -> float:
    """The board's sustained DDR bandwidth in bytes per fabric cycle: the rtl device's DDR
    model, or the board file of the build a board device runs."""
    ddr = getattr(dev, "ddr", None)
    if ddr is not None:
        return float(ddr.total_bytes_per_cycle)
    return float(boards.load(dev.manifest["board"]["key"]).ddr.bytes_per_cycle)


def build_seconds(dev_options: dict[str, object]) -> float:
    """Uncached Verilator build of the device's shell, in a throw-away cache folder."""
    probe = ff.open("rtl", **dev_options)
    cfg = probe.config  # type: ignore[attr-defined]
    probe.close()
    return uncached_build_seconds(cfg)


def overlay_note(dev: Any) -> str:
    """What the device runs: the generated configuration (rtl), or what a board's shell reports
    in its CONFIG registers."""
    cfg = getattr(dev, "config", None)
    if cfg is not None:
        return (
            f"overlay: {cfg.lanes} lanes {cfg.value_type}, {cfg.bus_bits}-bit bus, "
            f"{cfg.dma_engines} DMA engine(s), tile / x / y buffers {cfg.tile_bytes} / "
            f"{cfg.x_bytes} / {cfg.y_bytes} bytes per lane; DDR model of the PYNQ-Z2 "
            f"({dev.ddr}); bus_bytes_per_cycle = {dev.bus_bytes_per_cycle}"
        )
    info = dev.info
    return (
        f"overlay (as its shell reports it): {info.lanes} lanes, {8 * info.bus_bytes}-bit bus, "
        f"{info.dma_engines} DMA engine(s), tile / x / y buffers {info.tile_bytes} / "
        f"{info.x_bytes} / {info.y_bytes} bytes per lane; "
        f"bus_bytes_per_cycle = {dev.bus_bytes_per_cycle}"
    )


def spmm_tile(dev: Any, k: int, shape: tuple[int, int]) -> tuple[int, int]:
    """A tile shape whose rows of C and of B, k values each, fit the lanes' y and x buffers, so
    that an SpMM runs as one job. (The device's own choice, made at put() without knowing k, is
    SpMV's: an SpMM with k columns then runs as k / (columns that fit) jobs, each reading the
    whole image again.)"""
    rows, cols = dev.tile_limits()
    # Multiples of 4: a y block then spans whole beats of a 128-bit bus for every k.
    cut = [max(4, v // k // 4 * 4) for v in (rows, cols)]
    return min(cut[0], shape[0]), min(cut[1], shape[1])


def run(args: argparse.Namespace, kernel: str = "spmv") -> Report:
    """The suite for ``kernel``: "spmv", or "spmm" with ``args.cols`` columns of B."""
    if args.device == "dask":
        return sharded.run(args, kernel)
    k = args.cols if kernel == "spmm" else 1
    name = "SpMV" if k == 1 else f"SpMM (k = {k})"
    unit = "nnz/cycle" if k == 1 else "madds/cycle"
    rtl = args.device == "rtl"
    if rtl:
        options: dict[str, object] = {"lanes": args.lanes, "dma_engines": args.dma_engines}
        build_s = float("nan") if args.cached else build_seconds(options)
        dev: Any = ff.open("rtl", **options)
    else:
        build_s = float("nan")
        dev = open_device(args)
    emu = ff.open("emu", lanes=dev.lanes)
    rows, points, data = [], [], {}
    # Each case simulates millions of cycles (seconds to minutes): one bar step per case.
    ddr_bpc = ddr_bytes_per_cycle(dev)
    run_kernel = getattr(ff, kernel)
    # SpMM: each matrix as put() packs it (SpMV's tiles: the job runs in column blocks of B),
    # and packed with tiles for k (spmm_tile: one job).
    runs = [(label, A, None) for label, A in cases(args.scale)]
    if k > 1:
        runs = [
            (
                f"{label}{', tiles for k' if fit else ''}",
                A,
                spmm_tile(dev, k, A.shape) if fit else None,
            )
            for label, A, _ in runs
            for fit in (False, True)
        ]
    for label, A, tile in progress(runs, desc=f"{kernel} on {args.device}"):
        shape = (A.shape[1],) if k == 1 else (A.shape[1], k)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        h = dev.put(A, tile=tile)
        cpu = time.process_time()
        y = run_kernel(h, x, device=dev, timeout=600)
        cpu = time.process_time() - cpu
        s, c = dev.last_stats, dev.last_counters  # type: ignore[attr-defined]
        want = run_kernel(A, x, device=emu)
        if not np.array_equal(y.view(np.uint32), want.view(np.uint32)):
            raise AssertionError(f"{label}: {args.device} and emu results differ")
        engines_busy = [b / s.cycles for b in c.dma_busy]
        per_cycle = s.work / s.cycles
        target = goal(round(A.nnz / A.shape[0]), k)  # a Poisson matrix' edge rows have fewer
        met = target is not None and per_cycle >= target
        ddr_share = s.dma_bytes / (s.cycles * ddr_bpc)
        rows.append(
            [
                label,
                A.nnz,
                f"{h.tile[0]} x {h.tile[1]}",
                s.tiles,
                s.cycles,
                round(per_cycle, 2),
                "-" if target is None else f">= {target} {'met' if met else 'NOT met'}",
                round(s.mean_utilisation, 2),
                round(s.dma_bytes / A.nnz, 2),
                round(ddr_share, 2),
                round(s.nnz_per_second * k / 1e6, 1),
                " / ".join(f"{b:.2f}" for b in engines_busy),
                round(s.cycles / cpu / 1e6, 2),
            ]
        )
        points.append((label, s))
        data[label] = {
            **stats_dict(s),
            "tile": list(h.tile),
            "tiles": s.tiles,
            "work_per_cycle": per_cycle,
            "lane_utilisation": list(s.lane_utilisation),
            "ddr_share": ddr_share,
            "nnz_per_second": s.nnz_per_second,
            "dma_busy": list(c.dma_busy),
            "dma_stall": list(c.dma_stall),
            "lane_stall_counter": list(c.lane_stall),
            "engines_busy": engines_busy,
            "sim_cycles_per_cpu_second": s.cycles / cpu,
            "goal_work_per_cycle": target,
            "met": met,
        }
        h.free()
    plots = roofline_plot(
        args.out / f"{kernel}-{args.device}-roofline.png",
        points,
        f"{name} on {args.device} ({dev.lanes} lanes): measured",
    )
    notes = [
        overlay_note(dev),
        "cycles: the firmware's count from doorbell to status; "
        + (
            "nnz/cycle = stored nonzeros / cycles, against the "
            f"{dev.lanes} the lanes could take; goal: the default overlay's targets, >= 2.0 at "
            "5-9 nonzeros per row and >= 2.5 at 10 or more"
            if k == 1
            else f"madds/cycle = stored nonzeros x {k} / cycles (a lane multiplies one nonzero "
            f"by one column of B per cycle), against the {dev.lanes} the lanes could do; goal: "
            ">= 3.0 at k = 8"
        ),
        "lane util: the mean over the lanes of the cycles each was computing, over the job's "
        "cycles",
        f"DDR share: bytes the DMA engines moved over cycles x {ddr_bpc:g} B, the board's "
        "sustained DDR bandwidth per fabric cycle: how much of the memory system the job used "
        f"(its DMA engines move at most {dev.bus_bytes_per_cycle} B per cycle)",
        f"M {'nnz' if k == 1 else 'madds'}/s: projected at the overlay's {dev.clock_mhz:g} MHz "
        "clock (a clock the build must close timing at); the board's own CPU is not measured "
        "here",
        "DMA engines busy: the share of the job's cycles each engine had a transfer under way "
        "(DDR latency included). An engine idles at the job's start (the descriptor's read and "
        "checks and the lanes' set-up, about 6,500-9,000 cycles of the control CPU's work) and "
        "end, while the CPU has not yet queued a lane's next tile (about 2,300 cycles of its work "
        "per tile on picorv32, the limit here: docs/firmware.md, scripts/firmware_phases.py), "
        "and while a transfer waits for its lane to finish the tile it computes (a lane's "
        "buffers are loaded again only once it is done with them, except SpMM's tiles of at "
        "most half the tile buffer: they take its halves in turn, each landing while the lane "
        "computes the one before)",
        f"Verilator build of this overlay, uncached: {build_s:.1f} s"
        if build_s == build_s
        else "Verilator build time not measured (--cached)",
        "sim Mcycles/s: simulated cycles per second of process CPU time (goal >= 1M), on a "
        "2-core machine shared with other work"
        if rtl or args.emulate
        else "sim Mcycles/s: cycles counted per second of host CPU time (not a simulation)",
        "every result equals the emulator's bit for bit",
        *(
            [
                "each matrix twice: as put() packs it, with SpMV's tiles (the job then runs in "
                "column blocks of B that fit the x buffer: with these 8000-wide tiles, "
                f"{k} jobs of one column each, each reading the whole image again), and ', tiles "
                "for k': with tiles whose "
                f"{k}-wide rows of B and C fit the x and y buffers (one job; each tile loads its "
                "slice of B). Rows with many nonzeros gain from the second; sparse wide matrices "
                "load a B slice for few nonzeros and lose"
            ]
            if k > 1
            else []
        ),
        "DMA B/nnz counts everything moved: the tiles (about 6 B/nnz with 16-bit coordinates, "
        "plus 4 B per row of each tile), x (SpMM: the rows of B) once per lane per column "
        "tile, zeroing y (C) unless every row tile has a tile (these all do) and writing it "
        "out; the 40k-wide matrix and the Poisson ones "
        "reload an x slice for each of their tiles",
    ]
    dev.close()
    return Report(
        target=f"{kernel}-{args.device}",
        title=f"{name} on the {args.device} device",
        command=f"fiberflow bench {kernel} --device {args.device} --scale {args.scale:g}"
        + (f" --dma-engines {args.dma_engines}" if args.dma_engines else "")
        + (f" --cols {k}" if k > 1 else "")
        + (f" --overlay {args.overlay}" if args.overlay else "")
        + (" --emulate" if args.emulate else ""),
        columns=[
            "matrix",
            "nnz",
            "tile",
            "tiles",
            "cycles",
            unit,
            "goal",
            "lane util",
            "DMA B/nnz",
            "DDR share",
            "M nnz/s" if k == 1 else "M madds/s",
            "DMA engines busy",
            "sim Mcycles/s",
        ],
        rows=rows,
        notes=notes if plots else [*notes, NO_PLOT],
        data={"build_seconds": build_s, "cases": data},
        plots=plots,
    )
