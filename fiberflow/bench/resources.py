"""``fiberflow bench resources``: the default overlay's resource estimate on every board
(yosys ``synth_xilinx``, the same run as ``fiberflow build --estimate``)."""

from __future__ import annotations

import argparse
import time

from fiberflow import boards
from fiberflow.bench import Report
from fiberflow.progress import progress

DESCRIPTION = "yosys resource estimate of the default overlay against each board's capacity"

# Issue goal for the default 4-lane fp32 overlay on PYNQ-Z2.
GOAL = {"LUT": 0.60, "BRAM36": 0.70}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--boards", nargs="*", default=None, help="board names (default: all)")
    p.add_argument("--lanes", type=int, default=None, help="lanes (default: the overlay's)")


def run(args: argparse.Namespace) -> Report:
    from fiberflow.boards import build, estimate

    keys = args.boards or boards.names()
    rows, data, warnings = [], {}, set()
    estimates = {}
    for key in progress(keys, desc="synth_xilinx"):
        board = boards.load(key)
        lanes = {} if args.lanes is None else {"lanes": args.lanes}
        src = build.overlay_sources(build.with_defaults(board, lanes))
        start = time.perf_counter()
        est = estimate.estimate(src.files, src.top, board)
        seconds = time.perf_counter() - start
        estimates[key] = est
        u = est.usage
        rows.append(
            [
                board.name,
                board.yosys_family,
                f"{src.params['lanes']} x {src.params['value_type']}, "
                f"{src.params['dma_engines']} x {src.params['bus_bits']}-bit DMA",
                f"{u.lut:,} ({100 * est.fraction('LUT'):.1f}%)",
                f"{u.ff:,} ({100 * est.fraction('FF'):.1f}%)",
                f"{u.bram36:g} ({100 * est.fraction('BRAM36'):.1f}%)",
                f"{u.uram} ({100 * est.fraction('URAM'):.1f}%)" if board.resources.uram else "-",
                f"{u.dsp} ({100 * est.fraction('DSP'):.1f}%)",
                round(seconds, 1),
            ]
        )
        data[key] = {"params": dict(src.params), "usage": vars(u), "cells": est.cells,
                     "seconds": seconds, "warnings": est.warnings}  # fmt: skip
        warnings.update(est.warnings)
    notes = []
    if any(not d["params"].get("kernels") for d in data.values()):
        notes.append(
            "Overlays without a kernel set have placeholder lanes "
            "(overlay/lanes/lane_placeholder.py): their numbers are the shell plus stand-in lanes."
        )
    goal = (
        f"Goal for the default 4-lane fp32 overlay on PYNQ-Z2: at most {GOAL['LUT']:.0%} of "
        f"LUTs and {GOAL['BRAM36']:.0%} of BRAM"
    )
    if "pynq-z2" in estimates:
        lut = estimates["pynq-z2"].fraction("LUT")
        bram = estimates["pynq-z2"].fraction("BRAM36")
        met = lut <= GOAL["LUT"] and bram <= GOAL["BRAM36"]
        goal += f": LUT {lut:.1%}, BRAM {bram:.1%}, {'met' if met else 'NOT met'}"
    notes += [
        "yosys' mapping is not Vivado's: inverters count as LUTs and LUT RAM is packed "
        "differently, so the numbers are a pessimistic estimate; Vivado's own report is in "
        "vivado/reports/utilization.txt of a build folder.",
        goal + ".",
        *sorted(warnings),
    ]
    return Report(
        target="resources",
        title="Resource estimates (yosys synth_xilinx)",
        command="fiberflow bench resources",
        columns=["board", "family", "overlay", "LUT", "FF", "BRAM36", "URAM", "DSP", "synth s"],
        rows=rows,
        notes=notes,
        data=data,
    )
