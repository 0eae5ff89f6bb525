"""``fiberflow bench lane``: cycles per nonzero (SpMV) and per multiply-add (SpMM) of one
SpMV/SpMM lane in Verilator, and its yosys ``synth_xilinx`` resource use.

Each case is one tile of synthetic rows with a fixed number of nonzeros, run with
:func:`fiberflow.overlay.sim.lane_sim.run_matrix` with the tile port always granted; cycles run
from ``start`` to ``done``. Results are checked bit for bit against the documented order
(:func:`fiberflow.overlay.sim.lane_sim.reference`) on the way.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp

from fiberflow.bench import Report
from fiberflow.errors import BuildError
from fiberflow.progress import progress

DESCRIPTION = "one SpMV/SpMM lane in Verilator: nonzeros and multiply-adds per cycle; resources"

SPMV_ROWS = (1, 2, 4, 8, 16, 32)
SPMM_K = (1, 2, 3, 8)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bus", type=int, nargs="*", default=[64, 128], help="bus widths (bits)")
    p.add_argument("--nnz", type=int, default=2000, help="nonzeros per case (default 2000)")
    p.add_argument("--no-synth", action="store_true", help="skip the yosys resource estimate")
    p.add_argument("--seed", type=int, default=0)


def _tile(rng: np.random.Generator, per_row: int, nnz: int, cols: int = 256) -> sp.csr_matrix:
    rows = max(1, min(256, nnz // per_row))
    dense = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        dense[r, rng.choice(cols, size=per_row, replace=False)] = rng.standard_normal(per_row)
    return sp.csr_matrix(dense)


def run(args: argparse.Namespace) -> Report:
    from fiberflow.overlay.lanes.lane import QUEUE_DEPTH
    from fiberflow.overlay.sim.lane_sim import LaneSim, reference, run_matrix

    rows: list[list[object]] = []
    data: dict[str, object] = {}
    rng = np.random.default_rng(args.seed)
    cases = [("spmv", p, cb) for p in SPMV_ROWS for cb in (16, 32)]
    cases += [("spmm", k, 16) for k in SPMM_K]
    for bus in args.bus:
        sim = LaneSim(value_types=("fp32",), bus_bits=bus, tile_depth=65536 // (bus // 8),
                      x_depth=1024, y_depth=1024, max_k=8)  # fmt: skip
        turn = sim.turn
        for kernel, n, cb in progress(cases, desc=f"lane, {bus}-bit bus"):
            per_row, k = (n, 1) if kernel == "spmv" else (8, n)
            A = _tile(rng, per_row, args.nnz if kernel == "spmv" else args.nnz // k)
            X = rng.standard_normal((A.shape[1], k)).astype(np.float32)
            Y, ((t, lane_run),) = run_matrix(
                sim, A, X, A.shape, kernel, rng, p_en=1.0, coord_bits=cb
            )
            want = reference(t, X.view(np.uint32), np.zeros((A.shape[0], k), np.uint32))
            if lane_run.error or not np.array_equal(Y, want):
                raise BuildError(f"lane result differs from the reference ({kernel}, {n})")
            work = A.nnz * k
            rate = work / lane_run.cycles
            name = (
                f"SpMV, {per_row}/row, {cb}-bit crd" if kernel == "spmv" else f"SpMM k={k}, 8/row"
            )
            rows.append([f"{bus}", name, work, lane_run.cycles, round(rate, 3),
                         round(lane_run.cycles / work, 3), lane_run.stall])  # fmt: skip
            data[f"{bus}/{name}"] = {"work": work, "cycles": lane_run.cycles,
                                     "stall": lane_run.stall, "rate": rate}  # fmt: skip
    _matrices(rows, data, rng)
    notes = [
        f"Matrices: {MATRIX_N} x {MATRIX_N}, about {MATRIX_NNZ:,} nonzeros (the pack "
        "benchmark's generators), cut into the tiles the default overlay's devices choose for "
        "them, on a lane with the default overlay's buffers; "
        "each row sums the whole matrix's tiles, checked bit for bit against the emulator.",
        f"Long rows are the worst case: each row's sum is sequential, one add per turn of "
        f"the accumulator ({turn} cycles: the adder's latency + 1), and a row longer than its "
        f"context's queue ({QUEUE_DEPTH}) holds up the rows behind it.",
        "work = nonzeros x k (multiply-adds); rate = work / cycles, start-up and drain "
        "included (about 30 cycles per tile).",
        "Rows of one nonzero are bound by the y port (a read and a write per row); 32-bit "
        "coordinates on a 64-bit bus by the tile port (8 bytes per nonzero).",
    ]
    if not args.no_synth:
        notes += _resources(data)
    return Report(
        target="lane",
        title="SpMV/SpMM lane: throughput (Verilator) and resources",
        command="fiberflow bench lane",
        columns=["bus", "case", "work", "cycles", "work/cycle", "cycles/work", "stall"],
        rows=rows,
        notes=notes,
        data=data,
    )


MATRIX_N, MATRIX_NNZ = 8000, 80_000


def _matrices(rows: list[list[object]], data: dict[str, object],
              rng: np.random.Generator) -> None:  # fmt: skip
    """SpMV on whole generated matrices at the devices' tile shape, tile after tile."""
    import fiberflow as ff
    from fiberflow.bench.pack import MAKERS
    from fiberflow.overlay.sim.lane_sim import LaneSim, run_matrix

    sim = LaneSim(value_types=("fp32",), bus_bits=64, tile_depth=4096, x_depth=4096,
                  y_depth=2048, max_k=8)  # fmt: skip
    emu = ff.open("emu")
    for name, make in progress(list(MAKERS.items()), desc="lane, matrices"):
        A = sp.csr_matrix(make(MATRIX_N, MATRIX_NNZ, 0)).astype(np.float32)
        x = rng.standard_normal((MATRIX_N, 1)).astype(np.float32)
        # The tiles the default overlay's devices choose for this matrix.
        tile = tuple(emu.pack_to_fit(ff.Tensor.from_scipy(A)).tile)
        Y, runs = run_matrix(sim, A, x, tile, "spmv", rng, p_en=1.0)
        want = ff.spmv(A, x[:, 0], device=emu).view(np.uint32)
        if any(r.error for _, r in runs) or not np.array_equal(Y[:, 0], want):
            raise BuildError(f"lane result differs from the emulator ({name})")
        cycles = sum(r.cycles for _, r in runs)
        stall = sum(r.stall for _, r in runs)
        label = f"SpMV, {name} matrix, {len(runs)} tiles of {tile[0]} x {tile[1]}"
        rows.append(["64", label, A.nnz, cycles, round(A.nnz / cycles, 3),
                     round(cycles / A.nnz, 3), stall])  # fmt: skip
        data[f"64/{label}"] = {"work": A.nnz, "cycles": cycles, "stall": stall,
                               "rate": A.nnz / cycles}  # fmt: skip


def _resources(data: dict[str, object]) -> list[str]:
    from fiberflow.boards.estimate import _cells, synth_stat, usage_from_cells
    from fiberflow.overlay.lanes.lane import Lane

    out = []
    builds = {
        "fp32, 64-bit, SpMV+SpMM, max_k=8": {"bus_bits": 64},
        "fp32, 64-bit, SpMV only": {"bus_bits": 64, "max_k": 1, "kernels": ("spmv",)},
        "fp32+int32, 128-bit, max_k=8": {"bus_bits": 128, "value_types": ("fp32", "int32")},
    }
    for label, kw in progress(list(builds.items()), desc="synth_xilinx"):
        stat, _ = synth_stat({"lane.v": Lane(**kw).to_verilog("lane")}, "lane", "xc7")
        cells = _cells(stat, "lane")
        u = usage_from_cells(cells)
        data[f"resources/{label}"] = vars(u)
        out.append(f"Resources, {label} (yosys synth_xilinx xc7): {u.lut} LUT, {u.ff} FF, "
                   f"{u.dsp} DSP, {u.bram36:g} BRAM36")  # fmt: skip
    return out
