"""The shell outside the lanes and outside picorv32's own logic (the CPU's memory interface,
AXI4-Lite front end, register decode, DMA engines, buffer muxes) stays within 8 LUT levels of
the xc7 mapping between registers: the 100 MHz budget of a PYNQ-Z2's -1 part. Also the
per-endpoint path listing used to find what to pipeline."""

from __future__ import annotations

import pytest
from netlists import cell as _cell

from fiberflow.boards import timing, timing_paths


def netlist() -> dict:
    # q0 -> a -> b -> q1 (two LUTs; b drives an unnamed net, so it goes by its cell name),
    # q0 -> s -> q1 (one MUXF7), q1 -> c -> ram.ADDR (one LUT and a CARRY4), and
    # q2 -> d -> q3: a register of two bits (q3, q3b), one level deep.
    cells = {
        "q0": _cell("FDRE", {"D": [20], "C": [1]}, {"Q": [2]}),
        "a": _cell("LUT2", {"I0": [2], "I1": ["0"]}, {"O": [3]}),
        "b": _cell("LUT6", {"I0": [3], "I1": [2]}, {"O": [4]}),
        "s": _cell("MUXF7", {"I0": [2], "I1": [2], "S": [2]}, {"O": [5]}),
        "q1": _cell("FDRE", {"D": [4], "CE": [5], "C": [1]}, {"Q": [6]}),
        "c": _cell("LUT1", {"I0": [6]}, {"O": [7]}),
        "cc": _cell("CARRY4", {"S": [7, 7, 7, 7], "CI": ["0"]}, {"O": [8, 80, 81, 82]}),
        "ram": _cell("RAMB36E1", {"ADDRARDADDR": [8], "CLKARDCLK": [1]}, {"DOADO": [9]}),
        "q2": _cell("FDRE", {"D": [9], "C": [1]}, {"Q": [10]}),
        "d": _cell("LUT1", {"I0": [10]}, {"O": [11]}),
        "q3": _cell("FDRE", {"D": [11], "C": [1]}, {"Q": [12]}),
        "q3b": _cell("FDRE", {"D": [11], "C": [1]}, {"Q": [13]}),
    }
    netnames = {
        "start": {"bits": [2]},
        "mid": {"bits": [6]},
        "after_ram": {"bits": [10]},
        "pair": {"bits": [12, 13]},
        "$abc$1": {"bits": [3], "hide_name": 1},
    }
    return {"modules": {"t": {"cells": cells, "netnames": netnames}}}


def test_endpoints_lists_each_register_once_deepest_first() -> None:
    ends = timing_paths.endpoints(netlist(), "t")
    assert [(e.name, e.lut_levels, e.carry) for e in ends] == [
        ("mid", 2, 0),  # q1: D through a and b (its CE path, one MUXF7, is shallower)
        ("ram.ADDRARDADDR", 1, 1),
        ("pair", 1, 0),  # q3 and q3b: the two bits of one register
    ]
    assert ends[0].start == "start" and ends[0].path == ("LUT2 $abc$1", "LUT6 b")
    assert ends[1].start == "mid" and ends[2].start == "after_ram"
    assert "2 LUT +  0 CARRY4  start -> mid" in ends[0].summary()
    # The longest of them is timing's longest path.
    assert timing.longest_path(netlist(), "t").lut_levels == ends[0].lut_levels
    assert [e.name for e in timing_paths.endpoints(netlist(), "t", exclude="^(mid|pair)")] == [
        "ram.ADDRARDADDR"
    ]


@pytest.mark.rtl
@pytest.mark.slow
def test_shell_without_lanes_is_within_eight_lut_levels() -> None:
    """The default overlay's shell with placeholder lanes (the lanes' own datapath is measured
    with the lanes, by ``python -m fiberflow.boards.timing_paths --kernels``): every path that
    ends in a register of the shell, picorv32's outputs included as starts, is at most 8
    LUT/MUXF levels.

    Paths ending inside picorv32 are its own logic, fed by the glue from flip-flops (mem_ready)
    or through one multiplexer (mem_rdata): the next test maps exactly that, alone, at 8. In
    the flattened shell abc9 first maps for the least delay of the design's slowest path, by
    a delay model that counts carry chains (here the deepest paths have 6-7 LUTs and 7-8
    CARRY4), then trades depth for area on every path with slack, so picorv32's
    ``mem_valid -> mem_wordsize`` has come out at 8 or at 9 (mostly LUT2s) with unrelated
    changes to the logic around it (docs/benchmarks.md)."""
    from fiberflow.overlay.shell.top import TOP, ShellConfig, verilog

    netlist = timing.xc7_netlist(verilog(ShellConfig(kernels=())), TOP)
    ends = timing_paths.endpoints(netlist, TOP, exclude=r"^picorv32\.")
    assert not any(e.name.startswith("picorv32.") for e in ends)
    assert any(e.start.startswith("picorv32.") for e in ends[:50])
    assert ends[0].lut_levels <= 8, "\n".join(e.summary() for e in ends[:10])


@pytest.mark.rtl
@pytest.mark.slow
def test_control_cpu_alone_is_within_eight_lut_levels() -> None:
    """picorv32 with its RAM and memory-interface glue, mapped alone: every path is at most 8
    LUT/MUXF levels. Its two-cycle ALU and compare are what keep it there (without them its
    decode-to-state-machine paths map to 9)."""
    from migen.fhdl.verilog import convert

    from fiberflow.overlay.shell.cpu import ControlCPU, picorv32_verilog

    c = ControlCPU(16384)
    ios = {c.reset, c.trap, c.hold, c.host_adr, c.host_we, c.host_dat_w, c.host_dat_r,
           c.p_valid, c.p_addr, c.p_wdata, c.p_wstrb, c.p_ready, c.p_rdata}  # fmt: skip
    files = {
        "cpu.v": str(convert(c, ios=ios, name="cpu")),
        "picorv32.v": picorv32_verilog().read_text(),
    }
    ends = timing_paths.endpoints(timing.xc7_netlist(files, "cpu", timeout_s=600), "cpu")
    assert any(e.name.startswith("picorv32.") for e in ends[:20])
    assert ends[0].lut_levels <= 8, "\n".join(e.summary() for e in ends[:10])
