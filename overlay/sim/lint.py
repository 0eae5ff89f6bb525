"""Lint with ``verilator --lint-only -Wall``, minus a short waiver list: what ships (the
generated shell with picorv32, in each lane variant) and every primitive.

Migen's Verilog style and the third-party picorv32 core trip some Verilator warnings that say
nothing about the design. Each waiver names the warning, the lines it covers (a pattern on the
message; ``None`` = all of that code) and why it is safe. Anything else is a finding:
``fiberflow lint`` fails on it. Design bits that are deliberately not decoded are not waived
here: the Migen source routes them into a signal named ``*_unused`` with a comment saying why,
which Verilator's default ``--unused-regexp`` accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fiberflow.overlay.primitives.registry import PRIMITIVES
from fiberflow.overlay.sim.verilator_build import lint as verilator_lint

__all__ = ["SHELL_VARIANTS", "WAIVERS", "Waiver", "lint_primitive", "lint_shell"]

# The shells linted: the default overlay (4 fp32 lanes with SpMV and SpMM, 64-bit bus) and one
# lane of every other value type and kernel set, plus the 128-bit bus with two DMA engines
# (the UltraScale+ boards' default). Each parameter changes generated code; lane count does not.
SHELL_VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "int32": {"lanes": 1, "value_type": "int32"},
    "fp32+int32": {"lanes": 1, "value_type": "fp32+int32"},
    "spmv": {"lanes": 1, "kernels": ("spmv",)},
    "spmm": {"lanes": 1, "kernels": ("spmm",)},
    "int32-spmv": {"lanes": 1, "value_type": "int32", "kernels": ("spmv",)},
    "bus128x2": {"lanes": 2, "bus_bits": 128, "dma_engines": 2},
}


@dataclass(frozen=True)
class Waiver:
    code: str
    pattern: str | None
    why: str

    def covers(self, line: str) -> bool:
        if not line.startswith(f"%Warning-{self.code}:"):
            return False
        return self.pattern is None or re.search(self.pattern, line) is not None


WAIVERS = [
    Waiver(
        "COMBDLY",
        None,
        "Migen writes combinational always @(*) blocks with non-blocking assignments; "
        "simulation and synthesis treat them the same as blocking ones there.",
    ),
    Waiver(
        "WIDTHEXPAND",
        None,
        "Migen prints constants and narrow operands at their minimal width and relies on "
        "Verilog's zero/sign extension, which its own width rules already account for.",
    ),
    Waiver(
        "PROCASSINIT",
        None,
        "Migen declares registers with their reset value as an initializer (reg x = 0) and "
        "assigns them in always blocks; the initializer is the FPGA power-up value.",
    ),
    Waiver(
        "INITIALDLY",
        None,
        "Migen's `initial dummy_s <= 0` makes simulators run combinational blocks at time 0.",
    ),
    Waiver(
        "UNUSEDSIGNAL",
        r"'dummy_[sd]\w*'",
        "The same Migen simulation helpers (dummy_s, dummy_d*) are never read.",
    ),
    Waiver(
        "UNUSEDSIGNAL",
        r"'\w+_(first|last)'",
        "LiteX endpoints carry first/last; token streams leave them unused (stops nest).",
    ),
    Waiver(
        "UNUSEDSIGNAL",
        r"'\w*slice_proxy\w*'",
        "Migen slices an expression through a proxy wire as wide as the whole expression.",
    ),
    Waiver(
        "UNUSEDSIGNAL",
        r"'\w*wrport_dat_r'",
        "LiteX's SyncFIFO memory declares a read-data output on its write port.",
    ),
    # The control CPU: picorv32 is third-party Verilog (pythondata-cpu-picorv32), linted as
    # it ships. Its findings are in its own file; the shell's use of it is linted like the rest.
    Waiver(
        "BLKSEQ",
        r"^%Warning-BLKSEQ: picorv32\.v:",
        "picorv32 assigns temporaries with '=' inside its clocked always blocks (its style).",
    ),
    Waiver(
        "GENUNNAMED",
        r"^%Warning-GENUNNAMED: picorv32\.v:",
        "picorv32's generate blocks are unnamed (Verilog-2005 style).",
    ),
    Waiver(
        "UNUSEDSIGNAL",
        r"^%Warning-UNUSEDSIGNAL: picorv32\.v:",
        "picorv32's debug signals (dbg_*) and the parts of its optional units (PCPI "
        "multiplier/divider instruction fields, mem_busy) that the chosen parameters leave "
        "unused.",
    ),
    Waiver(
        "DECLFILENAME",
        r"'picorv32' does not match MODULE name",
        "picorv32.v holds several modules (picorv32_regs, picorv32_pcpi_*, ...).",
    ),
]


def lint_primitive(name: str) -> tuple[list[str], list[str]]:
    """(unwaived warnings, waived warnings) of one primitive from the registry."""
    module = f"ff_{name}"  # a prefix keeps names like "intersect" clear of SystemVerilog keywords
    text = PRIMITIVES[name]().to_verilog(module)
    return _split(verilator_lint({f"{module}.v": text}, module))


def _split(warnings: list[str]) -> tuple[list[str], list[str]]:
    bad = [w for w in warnings if not any(v.covers(w) for v in WAIVERS)]
    return bad, [w for w in warnings if w not in bad]


def lint_shell(variant: str) -> tuple[list[str], list[str]]:
    """(unwaived warnings, waived warnings) of the shell ``variant`` (a key of
    :data:`SHELL_VARIANTS`): the generated top with picorv32, as ``fiberflow build`` ships it."""
    from fiberflow.overlay.shell import top

    files = top.verilog(top.ShellConfig(**SHELL_VARIANTS[variant]))  # type: ignore[arg-type]
    return _split(verilator_lint(files, top.TOP))
