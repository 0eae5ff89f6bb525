"""``fiberflow bench energy``: each board's default overlay against the board's own CPU, in time
and energy, by the models of docs/energy.md.

The overlay's side is the emulator modelling the board's default build (its cycle model is
within 15% of the rtl device's measured cycles: docs/emulator.md) at the build's clock, with
``RunStats.energy_j``; the CPU's side is the board file's ``[cpu]`` model of scipy's CSR kernels
on one core (:func:`fiberflow.host.energy.cpu_run`). Nothing here is measured on a board.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import boards
from fiberflow.bench import Report
from fiberflow.bench.counted import cases
from fiberflow.bench.pack import power_law_csr
from fiberflow.host.energy import cpu_run
from fiberflow.progress import progress

DESCRIPTION = (
    "projected time and energy of SpMV / SpMM on each board's default overlay (emulator) "
    "against the board's own CPU running scipy (model)"
)
SPMM_K = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--board",
        action="append",
        metavar="NAME",
        help="a board to model (repeatable; default: every board fiberflow ships)",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="matrix size factor (1: 355k-760k nonzeros)"
    )
    p.add_argument(
        "--device",
        choices=("emu", "rtl"),
        default="emu",
        help="the overlay's side: the emulator's cycle model (default) or the cycles the rtl "
        "device counts (minutes a board: the generated overlay and its firmware in Verilator)",
    )


def matrices(scale: float) -> dict[str, sp.csr_array]:
    """The spread of shapes users bring: the rtl bench's meshes and its random matrix with
    many nonzeros a row, and a power-law graph."""
    mine = ("2-D Poisson, 5/row", "3-D Poisson, 7/row", "random 32k x 8k, 12/row")
    spread = dict(cases(scale))
    out = {label: spread[label] for label in mine}
    n = max(100, int(50_000 * scale))
    out["power law, 7/row"] = sp.csr_array(power_law_csr(n, 7 * n, 3), dtype=np.float32)
    return out


def compare(dev: Any, board: Any, name: str, A: sp.csr_array, k: int) -> list[Any]:
    """One row: the overlay's and the CPU's M nonzeros/s and nJ a nonzero for ``A``."""
    rng = np.random.default_rng(0)
    shape = (A.shape[1],) if k == 1 else (A.shape[1], k)
    x = rng.standard_normal(shape).astype(np.float32)
    y = ff.spmv(A, x, device=dev) if k == 1 else ff.spmm(A, x, device=dev)
    want = A @ x
    if not np.allclose(y, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max())):
        raise AssertionError(f"{board.name}, {name}: the device's result differs from scipy's")
    st = dev.last_stats
    assert st is not None
    cpu = cpu_run(board, nnz=A.nnz, rows=A.shape[0], cols=A.shape[1], k=k)
    cpu_nj = cpu.energy_j / A.nnz * 1e9
    return [
        board.name,
        "SpMV" if k == 1 else f"SpMM k={k}",
        name,
        A.nnz,
        st.nnz_per_second / 1e6,
        A.nnz / cpu.seconds / 1e6,
        cpu.seconds / st.seconds_est,
        st.nj_per_nnz,
        cpu_nj,
        cpu_nj / st.nj_per_nnz,
    ]


def run(args: argparse.Namespace) -> Report:
    chosen = [boards.load(b) for b in (args.board or boards.names())]
    cases = matrices(args.scale)
    rows = []
    for board in progress(chosen, desc="boards"):
        with ff.open(args.device, board=board.key) as dev:
            for name, A in cases.items():
                rows.append(compare(dev, board, name, A, 1))
            name = "2-D Poisson, 5/row"
            rows.append(compare(dev, board, name, cases[name], SPMM_K))
    summary = {}
    for board in chosen:
        mine = [r for r in rows if r[0] == board.name]
        summary[board.name] = {
            "speedup": [min(r[6] for r in mine), max(r[6] for r in mine)],
            "energy_ratio": [min(r[9] for r in mine), max(r[9] for r in mine)],
            "board_power_w": board.energy.board_power_w.value,
            "board_power_confidence": board.energy.board_power_w.confidence,
            "cpu": f"{board.cpu.name} {board.cpu.clock_mhz.value:g} MHz, one core",
        }
    side = (
        "the emulator modelling the board's default build at its fabric clock (cycles within "
        "15% of the rtl device's on the PYNQ-Z2: docs/emulator.md)"
        if args.device == "emu"
        else "the rtl device (the board's default build and its firmware in Verilator, cycles "
        "from its counters) at the board's fabric clock"
    )
    notes = [
        f"overlay: {side}; M nnz/s = stored nonzeros over the projected time (SpMM: a nonzero "
        "with its k columns); every result checked against scipy",
        "CPU: the board file's model of scipy's CSR kernel on one core of the board's own "
        "processor, at its best (A, x and y each read once): max(cycles / clock, bytes / "
        "one core's DDR bandwidth); energy = (board power + one busy core's) x time",
        "overlay energy = (board power + the overlay's) x time + 'lane_op_pj' a multiply-add "
        "+ 'ddr_pj_per_byte' a DMA byte; every figure, its source and confidence in the board "
        "files and docs/energy.md. No figure here was measured on a board: most are "
        "estimates or assumptions",
        "speed-up = CPU time / overlay time; energy ratio = CPU joules / overlay joules "
        "(above 1: the overlay uses less)",
    ]
    for b, s in summary.items():
        notes.append(
            f"{b}: speed-up {s['speedup'][0]:.2f}-{s['speedup'][1]:.2f}x, energy ratio "
            f"{s['energy_ratio'][0]:.2f}-{s['energy_ratio'][1]:.2f}x against {s['cpu']} "
            f"(board power {s['board_power_w']:g} W, {s['board_power_confidence']})"
        )
    return Report(
        target="energy" if args.device == "emu" else f"energy-{args.device}",
        title="The overlay against the board's own CPU: projected time and energy",
        command="python -m fiberflow bench energy"
        + ("" if args.device == "emu" else f" --device {args.device}")
        + "".join(f" --board {b}" for b in args.board or ()),
        columns=[
            "board",
            "kernel",
            "matrix",
            "nnz",
            "overlay M nnz/s",
            "CPU M nnz/s",
            "speed-up",
            "overlay nJ/nnz",
            "CPU nJ/nnz",
            "energy ratio",
        ],
        rows=rows,
        notes=notes,
        data={"summary": summary},
    )
