"""The command line on the board device, through the real pynq package on a simulated board
(marker ``board``: run in a virtualenv with pynq, as CI does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

pynq = pytest.importorskip("pynq")

from fiberflow import cli  # noqa: E402
from fiberflow.boards import build, load  # noqa: E402

pytestmark = pytest.mark.board

# Each pynq release on a board it supports: PYNQ 4.0 runs only on Zynq UltraScale+ boards.
BOARD = "zcu104" if int(pynq.__version__.split(".")[0]) >= 4 else "pynq-z2"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(BOARD)
    build.generate(load(BOARD), {}, out)
    return out


def test_demo_on_the_simulated_board(folder: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["demo", "--device", "pynq", "--overlay", str(folder), "--emulate"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "demo passed" in out and "spmv on pynq" in out
    assert "host wall time (simulated board)" in out and "measured cycles" in out


def test_run_on_the_simulated_board_checks_the_tile_first(folder: Path, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    A = sp.random_array((3000, 3000), density=0.002, rng=np.random.default_rng(0), format="coo")
    path = tmp_path / "a.mtx"
    scipy.io.mmwrite(path, A)
    base = ["run", "spmv", "--matrix", str(path), "--device", "pynq", "--overlay", str(folder)]
    assert cli.main([*base, "--emulate"]) == 0
    out = capsys.readouterr().out
    assert "within float32 tolerance of scipy: True" in out and "measured cycles" in out
    assert cli.main([*base, "--emulate", "--tile", "65536", "65536"]) == 1
    assert "does not fit this overlay" in capsys.readouterr().err


def test_bench_spmv_on_the_simulated_board(folder: Path, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")  # the roofline plot (CI's board venvs install it)
    argv = ["bench", "spmv", "--device", "pynq", "--overlay", str(folder), "--emulate"]
    assert cli.main([*argv, "--scale", "0.02", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "SpMV on the pynq device" in out and "as its shell reports it" in out
    assert (tmp_path / "o" / "spmv-pynq.json").exists()


def test_bench_spmm_on_the_simulated_board(folder: Path, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    argv = ["bench", "spmm", "--device", "pynq", "--overlay", str(folder), "--emulate"]
    assert cli.main([*argv, "--scale", "0.02", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "SpMM (k = 8) on the pynq device" in out and "tiles for k" in out
    assert (tmp_path / "o" / "spmm-pynq.json").exists()
