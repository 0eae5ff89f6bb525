"""Board definitions: every shipped board loads, its facts are consistent and sourced, and
broken board files fail with messages that name the file and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fiberflow import boards
from fiberflow.cli import main
from fiberflow.errors import BoardError, FiberflowError, UnknownBoardError

SHIPPED = ["kv260", "pynq-z1", "pynq-z2", "ultra96-v2", "zcu104"]
BOARD_DIR = Path(boards.__file__).parent


def test_names_lists_every_shipped_board() -> None:
    assert boards.names() == SHIPPED


@pytest.mark.parametrize("key", SHIPPED)
def test_each_board_loads_with_consistent_facts(key: str) -> None:
    b = boards.load(key)
    assert b.key == key
    assert b.board_part.count(":") == 3
    if b.ps == "ps7":
        assert b.control.port == "M_AXI_GP0" and b.control.base == 0x4000_0000
        assert b.yosys_family == "xc7" and b.part.startswith("xc7z")
        assert all(p.width == 64 for p in b.hp)
        assert b.resources.uram == 0
    else:
        assert b.control.port == "M_AXI_HPM0_FPD" and b.control.base == 0xA000_0000
        assert b.yosys_family == "xcup" and b.part.startswith(("xczu", "xck26"))
        assert all(p.width == 128 for p in b.hp)
    r = b.resources
    assert r.lut > 10_000 and r.ff == 2 * r.lut and r.bram36 > 0 and r.dsp > 0
    assert b.ddr.bytes_per_cycle <= b.ddr.peak_mb_s / b.fabric_clock_mhz
    assert 1 <= len(b.hp) <= 4


def test_zynq7000_boards_end_at_pynq_3_1() -> None:
    # PYNQ 4.0 dropped Pynq-Z1/Z2; their last image is 3.1.
    for key in ("pynq-z1", "pynq-z2"):
        b = boards.load(key)
        assert b.pynq_last == "3.1"
        assert not any(v.startswith("4") for v in b.pynq_images)
    assert "4.0" in boards.load("zcu104").pynq_images


def test_bus_bytes_per_cycle_is_ports_capped_by_ddr() -> None:
    z2 = boards.load("pynq-z2")
    assert z2.bus_bytes_per_cycle(1) == 8.0  # one 64-bit HP port at the fabric clock
    assert z2.bus_bytes_per_cycle(4) == min(32.0, z2.ddr.bytes_per_cycle) == 16.0
    zcu = boards.load("zcu104")
    assert zcu.bus_bytes_per_cycle(2) == 32.0
    with pytest.raises(BoardError, match="4 HP port"):
        z2.bus_bytes_per_cycle(5)


@pytest.mark.parametrize("spelling", ["PYNQ-Z2", "pynq_z2", "Pynq-Z2", "pynqz2"])
def test_names_match_ignoring_case_and_separators(spelling: str) -> None:
    assert boards.load(spelling).name == "PYNQ-Z2"


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBoardError) as info:
        boards.load("zedboard")
    assert isinstance(info.value, FiberflowError)
    message = str(info.value)
    assert "zedboard" in message
    for key in SHIPPED:
        assert key in message


def test_every_section_of_every_board_file_names_a_source() -> None:
    source = re.compile(
        r"UG\d+|DS\d+|user guide|manual|release notes|data sheet|estimate|Kria-PYNQ|"
        r"Ultra96-PYNQ|preset|board store|board files|synth_xilinx",
        re.I,
    )
    for key in SHIPPED:
        cited: dict[str, bool] = {}
        section, pending = "", ""  # pending: the comment block just above the next line
        for line in (BOARD_DIR / f"{key}.toml").read_text().splitlines():
            header = re.match(r"^\[+([a-z]+)\]+\s*$", line)
            if line.startswith("#"):
                pending += " " + line
                if source.search(line):
                    cited[section] = True
            elif header:
                section = header.group(1)
                cited[section] = cited.get(section, False) or bool(source.search(pending))
                pending = ""
            elif "=" in line and not re.match(r"^(name|vendor)\s*=", line):
                # Every value sits in a table whose comments (above its first header, or in
                # its body before the value) name a document or call the value an estimate.
                assert cited.get(section) or source.search(pending + line), (key, section, line)
            elif not line.strip():
                pending = ""
        assert set(cited) >= {"", "fabric", "control", "hp", "ddr", "resources", "pynq"}, key


def _write_variant(tmp_path: Path, old: str, new: str, name: str = "myboard.toml") -> Path:
    text = (BOARD_DIR / "pynq-z2.toml").read_text()
    assert old in text, old
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_user_board_file_loads_from_a_path(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, 'name = "PYNQ-Z2"', 'name = "My Z2 clone"')
    b = boards.load(path)
    assert b.name == "My Z2 clone" and b.key == "myboard" and b.path == path
    assert boards.load(str(path)).name == "My Z2 clone"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("lut = 53200\n", "", r"'resources\.lut' is missing; expected the number of 6-input"),
        ("lut = 53200", 'lut = "many"', r"'resources\.lut' is 'many'; expected"),
        ("dsp = 220", "dsp = 0", r"'resources\.dsp' is 0"),
        ("width = 64\nclock_mhz", "width = 96\nclock_mhz", r"'hp\[0\]\.width' is 96"),
        ('ps = "ps7"', 'ps = "ps8"', r"'ps' is 'ps8'; expected one of ps7, zynq_ultra_ps_e"),
        ('yosys_family = "xc7"', 'yosys_family = "xcup"', r"'yosys_family' is 'xcup'; a ps7"),
        ("base = 0x4000_0000", "base = 0x4000_1000", r"'control\.base' is 0x40001000; expected"),
        ("bytes_per_cycle = 16", "bytes_per_cycle = 64", r"above the DDR's peak of 21\.0"),
        ('board_part = "tul.com.tw:pynq-z2:part0:1.0"', 'board_part = "pynq-z2"',
         r"vendor:board:part0:revision"),
        ('images = ["3.0.1", "3.1"]', 'images = ["3.x"]', r"'pynq\.images' is \['3\.x'\]"),
        ("clocks_mhz = [100.0]", "clocks_mhz = []", r"'fabric\.clocks_mhz' is \[\]"),
        ("[ddr]", "[dram]", r"field 'ddr' is missing"),
        ("lut = 53200", "lut = 53200 53200", r"is not valid TOML"),
    ],
)  # fmt: skip
def test_malformed_board_files_name_file_and_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    path = _write_variant(tmp_path, old, new)
    with pytest.raises(BoardError, match=expected) as info:
        boards.load(path)
    assert str(path) in str(info.value)


def test_missing_board_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownBoardError, match="no board file at"):
        boards.load(tmp_path / "nothing.toml")


def test_boards_command_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for key in SHIPPED:
        assert key in out
    assert "0x40000000" in out and "0xa0000000" in out
    assert "53,200" in out and "xczu7ev-ffvc1156-2-e" in out


def test_boards_command_json_has_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boards", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["key"] for d in data] == SHIPPED
    z2 = next(d for d in data if d["key"] == "pynq-z2")
    assert z2["control"]["base"] == 0x4000_0000 and z2["resources"]["bram36"] == 140
    assert z2["ddr"]["latency_cycles"] > 0 and z2["pynq_images"][-1] == "3.1"


@pytest.mark.parametrize("key", SHIPPED)
def test_ddr_figures_feed_the_rtl_ddr_model(key: str) -> None:
    b = boards.load(key)
    params = b.ddr_model()
    assert params["read_latency"] == b.ddr.latency_cycles
    assert params["port_bytes_per_cycle"] == b.hp[0].width / 8
    assert params["total_bytes_per_cycle"] <= b.ddr.peak_mb_s / b.fabric_clock_mhz
    rtl = pytest.importorskip("fiberflow.host.devices.rtl")
    model = rtl.DdrModel(**params)  # the names match the rtl device's model
    assert model.read_latency == b.ddr.latency_cycles
