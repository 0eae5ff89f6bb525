"""The register map: consistency, and the generated header and table are current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fiberflow.overlay import regmap

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["firmware/regs.h", "docs/registers.md"])
def test_generated_files_are_current(path: str) -> None:
    expected = regmap.generated_files(ROOT)[ROOT / path]
    assert (ROOT / path).read_text() == expected, (
        f"{path} is stale; run: python -m fiberflow.overlay.regmap"
    )


def test_overlapping_registers_are_refused() -> None:
    regs = (
        regmap.Register("A", 0x0, "ro", "a", count=2, stride=4),
        regmap.Register("B", 0x4, "ro", "b"),
    )
    with pytest.raises(ValueError, match="overlaps"):
        regmap.Block("X", 0, "x", regs)


def test_arrays_cover_the_largest_overlay() -> None:
    assert regmap.HOST.reg("LANE_BUSY").count == regmap.MAX_LANES
    assert regmap.CPU.reg("DMA_CTRL").count == regmap.MAX_DMA
    assert regmap.CPU.offset("LANE_CFG7", 3) == regmap.LANE_BASE + 3 * regmap.LANE_STRIDE + 28
    with pytest.raises(IndexError):
        regmap.CPU.offset("LANE_CFG0", regmap.MAX_LANES)


def test_host_registers_stay_below_the_ram_window() -> None:
    for r in regmap.HOST.registers:
        assert r.at(r.count - 1) + 4 <= regmap.HOST_RAM_WINDOW, r.name


def test_header_addresses_match_the_map() -> None:
    text = regmap.c_header()
    for name in ("STATUS", "DOORBELL", "CYCLES_LO", "LANE_DONE"):
        m = re.search(rf"#define FF_{name} FF_REG\(0x([0-9a-f]+)u\)", text)
        assert m and int(m.group(1), 16) == regmap.CPU.address(name)
    m = re.search(r"#define FF_DMA_STATUS\(i\) FF_REG\(0x([0-9a-f]+)u \+ \(i\) \* (\d+)u\)", text)
    assert m and int(m.group(1), 16) + 2 * int(m.group(2)) == regmap.CPU.address("DMA_STATUS", 2)


def test_codes_are_unique_and_decoded() -> None:
    for codes in (regmap.ERRORS, regmap.STATES, regmap.OPCODES, regmap.JOB_WORDS):
        assert len({c.value for c in codes}) == len(codes)
        assert len({c.name for c in codes}) == len(codes)
    assert regmap.error_message(5).startswith("DMA_READ")
    assert "unknown" in regmap.error_message(200)
