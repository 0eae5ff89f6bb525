"""``fiberflow lint`` on what ships: the generated shell with picorv32, every lane variant, with
Verilator -Wall and no warning outside the documented waivers."""

from __future__ import annotations

import pytest

from fiberflow.cli import main
from fiberflow.overlay.sim.lint import SHELL_VARIANTS, WAIVERS, lint_shell
from fiberflow.overlay.sim.verilator_build import lint

pytest.importorskip("migen")
pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("variant", sorted(SHELL_VARIANTS))
def test_shell_lints_clean(variant: str) -> None:
    bad, waived = lint_shell(variant)
    assert bad == []
    # The lint really ran over the shell and picorv32 (Migen's style gives waived warnings).
    assert any("fiberflow_shell.v" in w for w in waived)
    assert any("picorv32.v" in w for w in waived)


def test_picorv32_waivers_do_not_cover_the_shell() -> None:
    # The third-party core's waivers are tied to its file: the same findings in the shell's
    # own Verilog stay findings.
    text = """`timescale 1ns / 1ps
module fiberflow_shell(input wire clk, input wire [3:0] a, output reg [1:0] q);
reg [1:0] t;
wire dbg_spare;
always @(posedge clk) begin t = a[1:0]; q <= t; end
endmodule
"""
    warnings = lint({"fiberflow_shell.v": text}, "fiberflow_shell")
    unwaived = [w for w in warnings if not any(v.covers(w) for v in WAIVERS)]
    assert any("BLKSEQ" in w for w in unwaived)
    assert any("dbg_spare" in w for w in unwaived)
    assert any("'a'[3:2]" in w for w in unwaived)  # unused input bits of the shell's own


def test_cli_lint_covers_the_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint"]) == 0
    out = capsys.readouterr().out
    for variant in SHELL_VARIANTS:
        assert f"shell {variant} " in out
    assert f"lint: {len(SHELL_VARIANTS)} shell variants and" in out
