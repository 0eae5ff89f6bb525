"""Lint every primitive's Verilog with ``verilator --lint-only -Wall``, minus a short waiver list.

Migen's Verilog style trips some Verilator warnings that say nothing about the design. Each
waiver names the warning, the lines it covers (a pattern on the message; ``None`` = all of that
code) and why it is safe. Anything else is a finding: ``fiberflow lint`` fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fiberflow.overlay.registry import PRIMITIVES
from fiberflow.overlay.verilator_build import lint as verilator_lint


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
        r"'wrport_dat_r'",
        "LiteX's SyncFIFO memory declares a read-data output on its write port.",
    ),
]


def lint_primitive(name: str) -> tuple[list[str], list[str]]:
    """(unwaived warnings, waived warnings) of one primitive from the registry."""
    module = f"ff_{name}"  # a prefix keeps names like "intersect" clear of SystemVerilog keywords
    text = PRIMITIVES[name]().to_verilog(module)
    warnings = verilator_lint({f"{module}.v": text}, module)
    bad = [w for w in warnings if not any(v.covers(w) for v in WAIVERS)]
    return bad, [w for w in warnings if w not in bad]
