import pytest

from fiberflow.cli import main
from fiberflow.overlay.primitives.registry import PRIMITIVES
from fiberflow.overlay.sim.lint import WAIVERS, lint_primitive
from fiberflow.overlay.sim.verilator_build import lint

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_lints_clean(name):
    bad, _ = lint_primitive(name)
    assert bad == []


def test_waivers_do_not_hide_real_findings():
    text = """module t(input wire clk, input wire [3:0] a, output reg [1:0] q);
wire spare_wire;
always @(posedge clk) q <= a;
endmodule
"""
    warnings = lint({"t.v": text}, "t")
    unwaived = [w for w in warnings if not any(v.covers(w) for v in WAIVERS)]
    assert any("WIDTHTRUNC" in w for w in unwaived)
    assert any("spare_wire" in w for w in unwaived)


def test_cli_lint_exit_code(capsys):
    assert main(["lint"]) == 0
    assert "primitives clean" in capsys.readouterr().out
