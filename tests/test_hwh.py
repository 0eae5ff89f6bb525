"""The emulation .hwh that fiberflow build writes (parsed by pynq in tests/test_pynq_board.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from fiberflow.boards import build, hwh
from fiberflow.boards import load as load_board

# The PS parameters Vivado records for fabric clock 0's two divisors.
ZYNQ_DIV = "PCW_FCLK0_PERIPHERAL_DIVISOR"
ZU_DIV = "PSU__CRL_APB__PL0_REF_CTRL__DIVISOR"


@pytest.mark.parametrize(
    ("board", "modtype", "master", "base", "prefix"),
    [
        ("pynq-z2", "processing_system7", "M_AXI_GP0", 0x4000_0000, ZYNQ_DIV),
        ("zcu104", "zynq_ultra_ps_e", "M_AXI_HPM0_FPD", 0xA000_0000, ZU_DIV),
    ],
)
def test_build_writes_an_emulation_pair(tmp_path, board, modtype, master, base, prefix) -> None:
    b = load_board(board)
    build.generate(b, {"lanes": 2}, tmp_path)
    bit = tmp_path / hwh.EMULATION_DIR / "fiberflow.bit"
    assert bit.read_bytes() == hwh.PLACEHOLDER_BIT  # a placeholder, not a bitstream
    assert not (tmp_path / "overlay" / "fiberflow.bit").exists()  # Vivado's slot stays empty
    root = ET.parse(bit.with_suffix(".hwh")).getroot()
    mods = {m.get("INSTANCE"): m for m in root.iter("MODULE")}
    assert set(mods) == {"ps", "overlay"}
    ps, ov = mods["ps"], mods["overlay"]
    assert ps.get("MODTYPE") == modtype
    assert ov.get("VLNV") == "xilinx.com:module_ref:fiberflow_overlay:1.0"
    (rng,) = ps.iter("MEMRANGE")
    assert int(rng.get("BASEVALUE"), 16) == base == b.control.base
    assert int(rng.get("HIGHVALUE"), 16) == base + 0x10000 - 1  # 16 control address bits
    assert rng.get("MASTERBUSINTERFACE") == master
    assert (rng.get("INSTANCE"), rng.get("SLAVEBUSINTERFACE")) == ("overlay", "S_AXI_CTRL")
    # the control master and the overlay's slave share one bus
    nets = {
        (m.get("INSTANCE"), bi.get("NAME")): bi.get("BUSNAME")
        for m in mods.values()
        for bi in m.iter("BUSINTERFACE")
    }
    assert nets[("ps", master)] == nets[("overlay", "S_AXI_CTRL")]
    params = {p.get("NAME"): p.get("VALUE") for p in ps.find("PARAMETERS")}
    d0, d1 = (int(params[f"{prefix}{i}"]) for i in (0, 1))
    pll = hwh.ZYNQ_PLL_MHZ if board == "pynq-z2" else hwh.ZYNQMP_PLL_MHZ
    assert pll / (d0 * d1) == pytest.approx(b.fabric_clock_mhz)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    ov_params = {p.get("NAME"): p.get("VALUE") for p in ov.find("PARAMETERS")}
    assert ov_params["FIBERFLOW_LANES"] == str(manifest["overlay"]["params"]["lanes"]) == "2"


def test_divisors() -> None:
    assert hwh.divisors(1000.0, 100.0) in {(1, 10), (10, 1), (2, 5), (5, 2)}
    d0, d1 = hwh.divisors(1000.0, 142.0)
    assert 1 <= d0 <= 63 and 1 <= d1 <= 63 and abs(1000.0 / (d0 * d1) - 142.0) < 1.0


def test_unknown_ps_is_refused() -> None:
    m = {"board": {"ps": "versal"}, "overlay": {}}
    with pytest.raises(ValueError, match="unknown processing system"):
        hwh.hwh_text(m)
