"""``fiberflow bench timing``: how fast the default overlay could be clocked, from two tools
without Vivado: nextpnr's Fmax of the whole shell on an ECP5 (a proxy for comparing designs)
and the LUT/MUXF levels of its longest register-to-register path in yosys' xc7 mapping (the
Xilinx-relevant figure). The same run as ``fiberflow build --timing-proxy``."""

from __future__ import annotations

import argparse
import time

from fiberflow import boards
from fiberflow.bench import Report
from fiberflow.boards import timing

DESCRIPTION = "ECP5 Fmax (nextpnr) and xc7 LUT levels (yosys) of the whole shell"

# Goals for the overlay: a PYNQ-Z2 (xc7z020-1) at its 100 MHz fabric clock needs shallow paths.
GOAL_LUT_LEVELS = 8
GOAL_FMAX_MHZ = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default="pynq-z2", help="board whose default overlay is measured")
    p.add_argument("--lanes", type=int, default=None, help="lanes (default: the overlay's)")
    p.add_argument(
        "--no-route",
        action="store_true",
        help=timing.NO_ROUTE_HELP,
    )
    # One netlist placed with different seeds lands a few MHz apart (docs/benchmarks.md): a
    # change smaller than that needs several seeds to be told apart from the placer's spread.
    p.add_argument("--seed", type=int, default=1, help="nextpnr's placer seed (default 1)")


def run(args: argparse.Namespace) -> Report:
    from fiberflow.boards import build

    board = boards.load(args.board)
    lanes = {} if args.lanes is None else {"lanes": args.lanes}
    src = build.overlay_sources(build.with_defaults(board, lanes))
    start = time.perf_counter()
    proxy, depth = timing.measure(
        src.files,
        src.top,
        target_mhz=board.fabric_clock_mhz,
        route=not args.no_route,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    p = src.params
    overlay = f"{p['lanes']} x {p['value_type']}, {'+'.join(p['kernels'])}, {p['bus_bits']} bit"
    bram = proxy.utilization.get("DP16KD", {})
    rows = [
        [
            overlay,
            f"{proxy.worst_mhz:.1f}",
            depth.lut_levels,
            depth.carry,
            f"{bram.get('used', '?')} of {bram.get('available', '?')}",
            round(seconds),
        ]
    ]
    met = depth.lut_levels <= GOAL_LUT_LEVELS and proxy.worst_mhz >= GOAL_FMAX_MHZ
    how = (
        "placed and routed out of context on an LFE5U-85F with nextpnr's router2"
        if proxy.routed
        else "placed (not routed) out of context on an LFE5U-85F: the Fmax is nextpnr's "
        "estimate after placement, from estimated routing delays, usually somewhat optimistic"
    ) + f"; placer seed {args.seed}"
    notes = [
        f"Goal: at most {GOAL_LUT_LEVELS} LUT levels and at least {GOAL_FMAX_MHZ:g} MHz on the "
        f"ECP5: {'met' if met else 'NOT met'}"
        f"{'' if proxy.routed else ' (by the placement estimate; routed Fmax not measured)'}.",
        f"{timing.LABEL}: {how} (DP16KD: block RAMs used by the tile, x and y buffers, the "
        "CPU RAM and the lanes' accumulator queues, which are LUT RAM on xc7 but would be "
        "16-deep LUT RAM behind wide multiplexers on the ECP5).",
        "LUT levels: yosys synth_xilinx -family xc7 of the whole shell, cut at flip-flops, "
        "RAMs and DSPs; LUT/MUXF cells on the longest path, its CARRY4 cells counted apart.",
        "Two tool runs side by side on a shared 2-core machine: the time is wall-clock.",
        _ends("ECP5 critical path (nextpnr)", proxy.critical_path, " -> ")
        if proxy.routed
        else _placed_ends(proxy.critical_path),
        f"xc7 longest path: {len(depth.path)} cells, from {depth.path[0]} to {depth.path[-1]}"
        if depth.path
        else "",
        "The full paths are in timing.json's critical_path and xc7_path (docs/bench).",
        *proxy.warnings,
    ]
    return Report(
        target="timing",
        title="Timing proxy: ECP5 Fmax and xc7 LUT levels",
        command=f"python -m fiberflow bench timing --board {args.board}"
        f"{'' if proxy.routed else ' --no-route'} --doc docs/benchmarks.md --out docs/bench",
        columns=[
            "overlay",
            "ECP5 Fmax MHz" + ("" if proxy.routed else " (after placement)"),
            "xc7 LUT levels",
            "CARRY4",
            "DP16KD",
            "wall s",
        ],
        rows=rows,
        notes=[n for n in notes if n],
        data={**timing.timing_json(proxy, depth), "overlay": dict(p), "seconds": seconds},
    )


def _ends(what: str, segments: tuple[str, ...], arrow: str) -> str:
    if not segments:
        return f"{what}: none reported."
    first, last = segments[0].split(arrow)[0].split()[-1], segments[-1].split(arrow)[-1]
    return f"{what}: {len(segments)} segments, from {first} to {last}"


def _placed_ends(steps: tuple[str, ...]) -> str:
    what = (
        "ECP5 slowest path, estimated from the placement (boards/placed_paths.py: nextpnr names "
        "none before routing)"
    )
    if not steps:
        return f"{what}: none found."
    ns = float(steps[-1].split()[0])
    return (
        f"{what}: {ns:.1f} ns ({1000 / ns:.1f} MHz), {len(steps)} steps, from "
        f"{steps[0].split()[-1]} to {steps[-1].split()[-1]}"
    )
