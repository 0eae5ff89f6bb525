"""An emulation ``.hwh`` for a build folder: the hardware handoff PYNQ's ``Overlay`` parses.

On a board, Vivado writes ``overlay/fiberflow.hwh`` next to the bitstream. Without Vivado
(emulation, ``ff.open("pynq", overlay=DIR, emulate=True)``) PYNQ still needs one to build its
``ip_dict`` (the overlay's control address and range) and ``clock_dict`` (the fabric clock it
programs on download). This module writes the smallest ``.hwh`` that says the same things as
the block design of ``vivado/build.tcl`` about those two points:

* the processing system (instance ``ps``, ``processing_system7`` or ``zynq_ultra_ps_e``) with
  fabric clock 0 at the board's frequency, as the PS parameters Vivado records
  (``PCW_FPGA0_PERIPHERAL_FREQMHZ`` and the two divisors on Zynq-7000,
  ``PSU__CRL_APB__PL0_REF_CTRL__*`` on UltraScale+), and its control master with a memory-map
  entry for the overlay's ``S_AXI_CTRL`` at the board's control base;
* the overlay (instance ``overlay``, the ``fiberflow_overlay`` module reference) with that
  AXI4-Lite slave interface.

It leaves out what PYNQ does not read for this design: the SmartConnects (the control master
is shown connected straight to the overlay), the reset block, the HP ports and the per-signal
port lists. It is not a Vivado file and never replaces one: a real build's ``.hwh`` comes from
Vivado. The companion ``.bit`` is a placeholder (:data:`PLACEHOLDER_BIT`), not a bitstream;
PYNQ only checks that the file exists before the (simulated) device "downloads" it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from fiberflow.boards import vivado_tcl as vt

__all__ = [
    "EMULATION_DIR",
    "PLACEHOLDER_BIT",
    "fabric_clock_mhz",
    "hwh_text",
    "write_emulation_pair",
]

EMULATION_DIR = "emulation"  # build folder sub-folder holding fiberflow.bit + fiberflow.hwh
PLACEHOLDER_BIT = b"fiberflow emulation placeholder: not a bitstream\n"

# The PS reference clock PYNQ assumes (pynq.ps: 50 MHz on Zynq-7000, 33.333 MHz on
# UltraScale+), and the PLL rates the emulated PS is seeded with (pynq_sim): the IO PLL at
# 1000 MHz on Zynq-7000 (feedback divisor 20), the IO PLL at 1500 MHz on UltraScale+.
ZYNQ_PLL_MHZ = 1000.0
ZYNQMP_PLL_MHZ = 1500.0


@dataclass(frozen=True)
class _PsFacts:
    """What the emulation .hwh says about one kind of processing system."""

    vlnv: str
    arch: str  # SYSTEMINFO ARCH
    package: str
    device: Callable[[str], str]  # SYSTEMINFO DEVICE from the part
    pll_mhz: float  # the PLL fabric clock 0 divides
    pll_name: str  # the clock source parameters' value for it
    act_freq: str  # fabric clock 0's actual frequency
    fclk: tuple[str, str, str, str]  # clock {n}'s source, divisor 0, divisor 1, enable


_PS = {
    "ps7": _PsFacts(
        vlnv="xilinx.com:ip:processing_system7:5.5",
        arch="zynq",
        package="clg400",
        device=lambda part: part[:6],
        pll_mhz=ZYNQ_PLL_MHZ,
        pll_name="IO PLL",
        act_freq="PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ",
        fclk=(
            "PCW_FCLK{n}_PERIPHERAL_CLKSRC",
            "PCW_FCLK{n}_PERIPHERAL_DIVISOR0",
            "PCW_FCLK{n}_PERIPHERAL_DIVISOR1",
            "PCW_FPGA_FCLK{n}_ENABLE",
        ),
    ),
    "zynq_ultra_ps_e": _PsFacts(
        vlnv="xilinx.com:ip:zynq_ultra_ps_e:3.3",
        arch="zynquplus",
        package="ffvb1156",
        device=lambda part: part.split("-")[0],
        pll_mhz=ZYNQMP_PLL_MHZ,
        pll_name="IOPLL",
        act_freq="PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ",
        fclk=(
            "PSU__CRL_APB__PL{n}_REF_CTRL__SRCSEL",
            "PSU__CRL_APB__PL{n}_REF_CTRL__DIVISOR0",
            "PSU__CRL_APB__PL{n}_REF_CTRL__DIVISOR1",
            "PSU__FPGA_PL{n}_ENABLE",
        ),
    ),
}


def divisors(pll_mhz: float, want_mhz: float) -> tuple[int, int]:
    """Two 6-bit divisors (each 1..63) whose product brings ``pll_mhz`` closest to
    ``want_mhz`` (what Vivado's PS configuration does for a requested fabric clock)."""
    best = (1, 1)
    err = float("inf")
    for d0 in range(1, 64):
        for d1 in range(1, 64):
            e = abs(pll_mhz / (d0 * d1) - want_mhz)
            if e < err - 1e-9:
                best, err = (d0, d1), e
    return best


def fabric_clock_mhz(ps: str, want_mhz: float) -> float:
    """The fabric clock closest to ``want_mhz`` that processing system ``ps`` divides from
    its PLL (what PYNQ programs when it loads the overlay)."""
    if ps not in _PS:
        raise ValueError(f"unknown processing system {ps!r}; expected one of {sorted(_PS)}")
    pll = _PS[ps].pll_mhz
    d0, d1 = divisors(pll, want_mhz)
    return pll / (d0 * d1)


def _param(name: str, value: Any) -> str:
    return f"        <PARAMETER NAME={quoteattr(name)} VALUE={quoteattr(str(value))}/>"


def hwh_text(manifest: Mapping[str, Any]) -> str:
    """The ``.hwh`` XML for a build folder's ``manifest`` (``manifest.json`` as a dict)."""
    board = manifest["board"]
    overlay = manifest["overlay"]
    ps = board["ps"]
    if ps not in _PS:
        raise ValueError(f"unknown processing system {ps!r}; expected one of {sorted(_PS)}")
    facts, bd = _PS[ps], vt.PS_FACTS[ps]  # bd: what build.tcl's block design sets
    base = int(board["control_base"])
    span = int(overlay["control_range"])
    mhz = float(board["fabric_clock_mhz"])
    d0, d1 = divisors(facts.pll_mhz, mhz)
    actual = facts.pll_mhz / (d0 * d1)
    clock = [
        _param(bd.clock_freq_prop.removeprefix("CONFIG."), f"{mhz:g}"),
        _param(facts.act_freq, f"{actual:.6f}"),
    ]
    # PYNQ reads the enable, both divisors and (from pynq 4.0) the source of all four
    # fabric clocks.
    for n in range(4):
        values = (facts.pll_name, *((d0, d1) if n == 0 else (1, 1)), int(n == 0))
        clock += [_param(name.format(n=n), v) for name, v in zip(facts.fclk, values, strict=True)]
    modtype, vlnv, arch, master = bd.ip, facts.vlnv, facts.arch, board["control_port"]
    device, package, clk_port = facts.device(board["part"]), facts.package, bd.clock_pin
    net = f"ps_{master}"
    hz = round(actual * 1e6)
    high = base + span - 1
    wrapper = overlay.get("wrapper", "fiberflow_overlay")
    lines = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>',
        '<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="fiberflow emulation" VIVADOVERSION="none">',
        f"  <!-- Written by fiberflow for emulation (build {manifest.get('build_id', '?')}); "
        "not a Vivado file. -->",
        f'  <SYSTEMINFO ARCH="{arch}" DEVICE="{device}" NAME="fiberflow" '
        f'PACKAGE="{package}" SPEEDGRADE="-1"/>',
        "  <EXTERNALPORTS/>",
        "  <EXTERNALINTERFACES/>",
        "  <MODULES>",
        f'    <MODULE CONFIGURABLE="TRUE" FULLNAME="/ps" HWVERSION="{vlnv.rsplit(":", 1)[1]}" '
        f'INSTANCE="ps" IPTYPE="PERIPHERAL" IS_ENABLE="1" IS_PL="FALSE" MODTYPE="{modtype}" '
        f'VLNV="{vlnv}">',
        "      <PARAMETERS>",
        *clock,
        "      </PARAMETERS>",
        "      <PORTS>",
        f'        <PORT DIR="O" NAME="{clk_port}" SIGIS="clk" SIGNAME="ps_{clk_port}">',
        "          <CONNECTIONS>",
        '            <CONNECTION INSTANCE="overlay" PORT="clk"/>',
        "          </CONNECTIONS>",
        "        </PORT>",
        "      </PORTS>",
        "      <BUSINTERFACES>",
        f'        <BUSINTERFACE BUSNAME="{net}" DATAWIDTH="32" NAME="{master}" TYPE="MASTER" '
        'VLNV="xilinx.com:interface:aximm:1.0">',
        _param("DATA_WIDTH", 32),
        _param("FREQ_HZ", hz),
        "        </BUSINTERFACE>",
        "      </BUSINTERFACES>",
        "      <MEMORYMAP>",
        f'        <MEMRANGE ADDRESSBLOCK="reg0" BASENAME="C_BASEADDR" BASEVALUE="{base:#010x}" '
        f'HIGHNAME="C_HIGHADDR" HIGHVALUE="{high:#010x}" INSTANCE="overlay" IS_DATA="TRUE" '
        f'IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="{master}" MEMTYPE="REGISTER" '
        'SLAVEBUSINTERFACE="S_AXI_CTRL"/>',
        "      </MEMORYMAP>",
        "    </MODULE>",
        f'    <MODULE FULLNAME="/overlay" HWVERSION="1.0" INSTANCE="overlay" IPTYPE="PERIPHERAL" '
        f'IS_ENABLE="1" MODCLASS="PERIPHERAL" MODTYPE="{wrapper}" '
        f'VLNV="xilinx.com:module_ref:{wrapper}:1.0">',
        "      <PARAMETERS>",
        *(_param(f"FIBERFLOW_{k.upper()}", v) for k, v in sorted(overlay["params"].items())),
        "      </PARAMETERS>",
        "      <PORTS>",
        f'        <PORT DIR="I" NAME="clk" SIGIS="clk" SIGNAME="ps_{clk_port}">',
        "          <CONNECTIONS>",
        f'            <CONNECTION INSTANCE="ps" PORT="{clk_port}"/>',
        "          </CONNECTIONS>",
        "        </PORT>",
        "      </PORTS>",
        "      <BUSINTERFACES>",
        f'        <BUSINTERFACE BUSNAME="{net}" DATAWIDTH="32" NAME="S_AXI_CTRL" TYPE="SLAVE" '
        'VLNV="xilinx.com:interface:aximm:1.0">',
        _param("DATA_WIDTH", 32),
        _param("PROTOCOL", "AXI4LITE"),
        _param("FREQ_HZ", hz),
        "        </BUSINTERFACE>",
        "      </BUSINTERFACES>",
        "    </MODULE>",
        "  </MODULES>",
        "</EDKSYSTEM>",
        "",
    ]
    return "\n".join(lines)


def write_emulation_pair(folder: Path, manifest: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``emulation/fiberflow.hwh`` and the placeholder ``emulation/fiberflow.bit`` into
    ``folder``; return their paths (bit, hwh)."""
    out = Path(folder) / EMULATION_DIR
    out.mkdir(parents=True, exist_ok=True)
    bit, hwh = out / "fiberflow.bit", out / "fiberflow.hwh"
    hwh.write_text(hwh_text(manifest))
    bit.write_bytes(PLACEHOLDER_BIT)
    return bit, hwh
