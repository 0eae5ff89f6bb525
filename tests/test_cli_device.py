"""The command line reaches every device: ``--device {emu,rtl,pynq}`` with ``--overlay`` and
``--emulate`` for the board, through one helper shared by ``run`` and ``demo``; tiles are
checked when given; the timing printed says what it measures."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import cli
from fiberflow.commands import _device
from fiberflow.errors import FiberflowError, TileShapeError


@pytest.fixture
def mtx(tmp_path: Path) -> Path:
    A = sp.random_array((200, 150), density=0.05, rng=np.random.default_rng(0), format="coo")
    path = tmp_path / "a.mtx"
    scipy.io.mmwrite(path, A)
    return path


class Opened(FiberflowError):
    """Raised by the recording ff.open, so no device is really opened."""


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []

    def record(name: str, **options: object) -> None:
        calls.append((name, options))
        raise Opened("recorded")

    monkeypatch.setattr(_device.ff, "open", record)
    return calls


@pytest.mark.parametrize("command", ["run", "demo"])
def test_help_lists_the_devices_and_board_options(command: str, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        cli.main([command, *(["spmv"] if command == "run" else []), "--help"])
    out = capsys.readouterr().out
    assert "{emu,rtl,pynq}" in out and "--overlay DIR" in out and "--emulate" in out


@pytest.mark.parametrize("command", [["run", "spmv", "--matrix", "M"], ["demo"]])
def test_pynq_options_reach_ff_open(command, mtx, opened, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = [c if c != "M" else str(mtx) for c in command]
    assert cli.main([*argv, "--device", "pynq", "--overlay", "build/z2", "--emulate"]) == 1
    assert opened == [("pynq", {"overlay": Path("build/z2"), "emulate": True})]
    assert "recorded" in capsys.readouterr().err


def test_rtl_is_opened_for_the_value_type(mtx, opened) -> None:  # type: ignore[no-untyped-def]
    cli.main(["run", "spmv", "--matrix", str(mtx), "--device", "rtl", "--dtype", "int32"])
    assert opened == []  # non-integer values: refused before a device is opened
    cli.main(["run", "spmv", "--matrix", str(mtx), "--device", "rtl"])
    assert opened == [("rtl", {"dtype": "float32"})]


def test_pynq_without_overlay_says_what_to_give(mtx, opened, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["run", "spmv", "--matrix", str(mtx), "--device", "pynq"]) == 1
    err = capsys.readouterr().err
    assert "--device pynq needs --overlay DIR" in err and "--emulate" in err
    assert cli.main(["demo", "--emulate"]) == 1
    assert "options of --device pynq, not --device emu" in capsys.readouterr().err
    assert opened == []


@pytest.mark.parametrize("tile", [["0", "8"], ["8", "-1"], ["x", "8"]])
def test_tile_is_checked_while_parsing(mtx, tile, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "spmv", "--matrix", str(mtx), "--tile", *tile])
    assert exit_.value.code == 2
    assert "argument --tile" in capsys.readouterr().err


def test_tile_is_checked_against_the_device_before_any_work(mtx, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    dev = ff.open("emu")
    checked = []

    def check_tile(tile: tuple[int, ...], dtype: str) -> None:
        checked.append((tile, dtype))
        raise TileShapeError(f"tile {tile} is too big for this overlay's lane buffers")

    def no_put(*args: object, **kwargs: object) -> None:
        raise AssertionError("put was called after a refused tile")

    monkeypatch.setattr(dev, "check_tile", check_tile, raising=False)
    monkeypatch.setattr(dev, "put", no_put)
    monkeypatch.setattr(_device.ff, "open", lambda name, **options: dev)
    assert cli.main(["run", "spmv", "--matrix", str(mtx), "--tile", "4096", "4096"]) == 1
    assert checked == [((4096, 4096), "float32")]
    assert "too big for this overlay" in capsys.readouterr().err


def test_timing_is_labelled_with_what_it_measures(mtx, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["run", "spmv", "--matrix", str(mtx)]) == 0
    out = capsys.readouterr().out
    assert "host wall time (emulator)" in out and "projected board time" in out
    assert "estimated cycles at 100 MHz" in out
    rtl = argparse.Namespace(device="rtl", emulate=False)
    assert _device.timing_lines(rtl, 0.07181, None) == "host wall time (simulation) 71.81 ms"
    board = argparse.Namespace(device="pynq", emulate=True)
    assert _device.timing_lines(board, 0.002, None).startswith("host wall time (simulated board)")
