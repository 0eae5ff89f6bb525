"""``fiberflow run`` and ``fiberflow bench spmv|spmm`` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from fiberflow import cli


@pytest.fixture
def mtx(tmp_path):  # type: ignore[no-untyped-def]
    A = sp.random_array((300, 200), density=0.05, rng=np.random.default_rng(0), format="coo")
    path = tmp_path / "a.mtx"
    scipy.io.mmwrite(path, A)
    Ai = sp.coo_array((np.round(A.data * 100), (A.row, A.col)), shape=A.shape)
    path_i = tmp_path / "ai.mtx"
    scipy.io.mmwrite(path_i, Ai)
    return path, path_i


@pytest.mark.parametrize("kernel", ["spmv", "spmm"])
def test_run_checks_against_scipy(mtx, kernel: str, capsys) -> None:  # type: ignore[no-untyped-def]
    path, path_i = mtx
    assert cli.main(["run", kernel, "--matrix", str(path)]) == 0
    out = capsys.readouterr().out
    assert "within float32 tolerance of scipy: True" in out and "cycles" in out
    assert cli.main(["run", kernel, "--matrix", str(path_i), "--dtype", "int32"]) == 0
    assert "equal to scipy (int64 wrapped to 32 bits): True" in capsys.readouterr().out


def test_run_reports_bad_input(mtx, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, _ = mtx
    assert cli.main(["run", "spmv", "--matrix", str(path), "--dtype", "int32"]) == 1
    assert "non-integer values" in capsys.readouterr().err
    assert cli.main(["run", "spmv", "--matrix", str(tmp_path / "none.mtx")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.mtx").write_text("not a matrix\n")
    assert cli.main(["run", "spmv", "--matrix", str(tmp_path / "bad.mtx")]) == 1
    assert "Matrix Market" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused while parsing, with the choices listed
        cli.main(["run", "spmv", "--matrix", str(path), "--device", "gpu"])
    assert "invalid choice: 'gpu' (choose from" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["spmv", "spmm"])
def test_bench_small(target: str, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "bench.md"
    args = ["bench", target, "--nnz", "20000", "--n", "2000", "--repeat", "2"]
    assert cli.main([*args, "--doc", str(doc), "--out", str(tmp_path / "out")]) == 0
    text = doc.read_text()
    assert f"<!-- bench:{target} -->" in text and "vs scipy" in text
    assert f"](out/{target}-roofline.png)" in text
    png = (tmp_path / "out" / f"{target}-roofline.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    data = json.loads((tmp_path / "out" / f"{target}.json").read_text())
    assert data["data"]["ratio_resident_vs_scipy"] > 0
    assert data["data"]["image_bytes_per_nnz"] > 6  # 4-byte values + 2-byte coordinates


def test_bench_spmv_device_options(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """bench spmv takes the shared device options: a board needs its build folder, and the
    board's options are refused for the other devices, before any work is done."""
    args = ["bench", "spmv", "--nnz", "2000", "--n", "200", "--out", str(tmp_path / "o")]
    assert cli.main([*args, "--device", "pynq"]) == 1
    assert "--device pynq needs --overlay DIR" in capsys.readouterr().err
    assert cli.main([*args, "--overlay", str(tmp_path)]) == 1
    assert "options of --device pynq" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*args, "--device", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.rtl
def test_bench_spmv_on_rtl_reports_what_users_get(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """bench spmv --device rtl reports nonzeros per cycle, lane utilisation, the share of the
    board's DDR bandwidth and the projected rate, each agreeing with the job's own counters,
    on random and finite-difference matrices."""
    pytest.importorskip("fiberflow.host.devices.rtl")
    out = tmp_path / "o"
    args = ["bench", "spmv", "--device", "rtl", "--scale", "0.02", "--cached", "--out", str(out)]
    assert cli.main(args) == 0
    data = json.loads((out / "spmv-rtl.json").read_text())
    cases = data["data"]["cases"]
    assert {"2-D Poisson, 5/row", "3-D Poisson, 7/row"} <= set(cases)
    for label, c in cases.items():
        assert c["work_per_cycle"] == pytest.approx(c["nnz"] / c["cycles"]), label
        assert 0 <= min(c["lane_utilisation"]) and 0 < max(c["lane_utilisation"]) <= 1, label
        assert c["ddr_share"] == pytest.approx(c["dma_bytes"] / (c["cycles"] * 16.0)), label
        assert c["nnz_per_second"] == pytest.approx(c["work_per_cycle"] * 100e6), label
    assert cases["3-D Poisson, 7/row"]["goal_work_per_cycle"] == 2.0
    assert cases["random 64k x 8k, 2/row"]["goal_work_per_cycle"] is None
