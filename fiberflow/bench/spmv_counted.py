"""``fiberflow bench spmv --device rtl`` (or ``--device pynq --overlay DIR [--emulate]``): SpMV
on a device with hardware counters, the cycle-accurate one (the generated shell with its
firmware in Verilator) or a board, reported as a user sees it: nonzeros per cycle against the
lanes' capacity, lane utilisation, the share of the board's DDR bandwidth the job used and the
projected nonzeros per second at the overlay's clock; with per-tile control overhead, and on
rtl the simulation speed and Verilator build time. Every result is checked bit for bit against
the emulator.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import boards
from fiberflow.bench import Report, uncached_build_seconds
from fiberflow.bench._roofline import roofline_plot, stats_dict
from fiberflow.commands._device import open_device
from fiberflow.progress import progress


def goal(per_row: float) -> float | None:
    """Nonzeros per cycle the default overlay is to reach at ``per_row`` nonzeros per row
    (none is set below 5: such rows are bound by their y traffic)."""
    return 2.5 if per_row >= 10 else 2.0 if per_row >= 5 else None


def cases(scale: float) -> list[tuple[str, sp.csr_array]]:
    """(label, matrix): random ones whose x fits one column tile (n = 8000) unless said
    otherwise, and the finite-difference matrices of 2-D and 3-D Poisson problems (5 and 7
    nonzeros per row, banded: their x spans many column tiles)."""

    def rnd(m: int, n: int, per_row: int, seed: int) -> sp.csr_array:
        r = np.random.default_rng(seed)
        rows = np.repeat(np.arange(m), per_row)
        cols = r.integers(0, n, m * per_row)
        vals = r.standard_normal(m * per_row).astype(np.float32)
        A = sp.csr_array((vals, (rows, cols)), shape=(m, n))
        A.sum_duplicates()
        return A

    def poisson(side: int, dims: int) -> sp.csr_array:
        line = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(side, side))
        eye = sp.eye_array(side)
        A = line
        for _ in range(dims - 1):
            A = sp.kron(A, eye) + sp.kron(sp.eye_array(A.shape[0]), line)
        return sp.csr_array(A, dtype=np.float32)

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


def run(args: argparse.Namespace) -> Report:
    rtl = args.device == "rtl"
    if rtl:
        options: dict[str, object] = {"lanes": args.lanes}
        build_s = float("nan") if args.cached else build_seconds(options)
        dev: Any = ff.open("rtl", **options)
    else:
        build_s = float("nan")
        dev = open_device(args)
    emu = ff.open("emu", lanes=dev.lanes)
    rows, points, data = [], [], {}
    # Each case simulates millions of cycles (seconds to minutes): one bar step per case.
    ddr_bpc = ddr_bytes_per_cycle(dev)
    for label, A in progress(cases(args.scale), desc=f"spmv on {args.device}"):
        x = np.random.default_rng(0).standard_normal(A.shape[1]).astype(np.float32)
        h = dev.put(A)
        cpu = time.process_time()
        y = ff.spmv(h, x, device=dev, timeout=600)
        cpu = time.process_time() - cpu
        s, c = dev.last_stats, dev.last_counters  # type: ignore[attr-defined]
        want = ff.spmv(A, x, device=emu)
        if not np.array_equal(y.view(np.uint32), want.view(np.uint32)):
            raise AssertionError(f"{label}: rtl and emu results differ")
        engines_busy = [b / s.cycles for b in c.dma_busy]
        per_cycle = s.nnz / s.cycles
        target = goal(round(A.nnz / A.shape[0]))  # a Poisson matrix' edge rows have fewer
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
                round(s.nnz_per_second / 1e6, 1),
                " / ".join(f"{b:.2f}" for b in engines_busy),
                round(s.cycles / cpu / 1e6, 2),
            ]
        )
        points.append((label, s))
        data[label] = {
            **stats_dict(s),
            "tile": list(h.tile),
            "tiles": s.tiles,
            "nnz_per_cycle": per_cycle,
            "lane_utilisation": list(s.lane_utilisation),
            "ddr_share": ddr_share,
            "nnz_per_second": s.nnz_per_second,
            "dma_busy": list(c.dma_busy),
            "dma_stall": list(c.dma_stall),
            "lane_stall_counter": list(c.lane_stall),
            "engines_busy": engines_busy,
            "sim_cycles_per_cpu_second": s.cycles / cpu,
            "goal_nnz_per_cycle": target,
            "met": met,
        }
        h.free()
    plot = roofline_plot(
        args.out / f"spmv-{args.device}-roofline.png",
        points,
        f"SpMV on {args.device} ({dev.lanes} lanes): measured",
    )
    notes = [
        overlay_note(dev),
        "cycles: the firmware's count from doorbell to status; nnz/cycle = stored nonzeros / "
        f"cycles, against the {dev.lanes} the lanes could take; goal: the default overlay's "
        "targets, >= 2.0 at 5-9 nonzeros per row and >= 2.5 at 10 or more",
        "lane util: the mean over the lanes of the cycles each consumed nonzeros, over the "
        "job's cycles",
        f"DDR share: bytes the DMA engines moved over cycles x {ddr_bpc:g} B, the board's "
        "sustained DDR bandwidth per fabric cycle: how much of the memory system the job used "
        f"(its DMA engines move at most {dev.bus_bytes_per_cycle} B per cycle)",
        f"M nnz/s: projected at the overlay's {dev.clock_mhz:g} MHz clock (a clock the build "
        "must close timing at); the board's own CPU running CSR SpMV is not measured here",
        "DMA engines busy: the share of the job's cycles each engine had a transfer under way "
        "(DDR latency included). An engine idles at the job's start (the descriptor's read and "
        "checks, about 3,000 cycles on picorv32 at 3-6 cycles per instruction) and end, and "
        "while the lanes it serves compute the tiles it has loaded: a lane's tile buffer is "
        "loaded again only once the lane is done with it",
        f"Verilator build of this overlay, uncached: {build_s:.1f} s"
        if build_s == build_s
        else "Verilator build time not measured (--cached)",
        "sim Mcycles/s: simulated cycles per second of process CPU time (goal >= 1M), on a "
        "2-core machine shared with other work"
        if rtl or args.emulate
        else "sim Mcycles/s: cycles counted per second of host CPU time (not a simulation)",
        "every result equals the emulator's bit for bit",
        "DMA B/nnz counts everything moved: the tiles (about 6 B/nnz with 16-bit coordinates, "
        "plus 4 B per row of each tile), x once per lane per column tile, zeroing y and writing "
        "it out; the 40k-wide matrix and the Poisson ones reload an x slice for each of their "
        "tiles",
    ]
    dev.close()
    return Report(
        target=f"spmv-{args.device}",
        title=f"SpMV on the {args.device} device",
        command=f"fiberflow bench spmv --device {args.device} --scale {args.scale:g}"
        + (f" --overlay {args.overlay}" if args.overlay else "")
        + (" --emulate" if args.emulate else ""),
        columns=[
            "matrix",
            "nnz",
            "tile",
            "tiles",
            "cycles",
            "nnz/cycle",
            "goal",
            "lane util",
            "DMA B/nnz",
            "DDR share",
            "M nnz/s",
            "DMA engines busy",
            "sim Mcycles/s",
        ],
        rows=rows,
        notes=notes,
        data={"build_seconds": build_s, "cases": data},
        plots=[plot],
    )
