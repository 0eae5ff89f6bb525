"""``fiberflow bench`` writes where it is told: data and plots into ``--out`` (default a new
folder named for the run), a Markdown document only with ``--doc``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fiberflow import cli

SMALL = ["--nnz", "20000", "--n", "2000", "--repeat", "1"]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_default_out_is_a_new_folder_named_for_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "pack", *SMALL]) == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("fiberflow-bench-pack-")
    assert files_under(tmp_path) == {f"{folder.name}/pack.json"}
    assert f"data: {folder.name}/pack.json" in capsys.readouterr().out


def test_nothing_is_written_outside_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "spmv", *SMALL, "--out", "results"]) == 0
    assert files_under(tmp_path) == {"results/spmv.json", "results/spmv-roofline.png"}
    out = capsys.readouterr().out
    assert "data: results/spmv.json" in out and "plot: results/spmv-roofline.png" in out
    assert "recorded in" not in out


def test_doc_is_written_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["bench", "spmv", *SMALL, "--out", "docs/bench", "--doc", "docs/benchmarks.md"]
    assert cli.main(args) == 0
    assert files_under(tmp_path) == {
        "docs/benchmarks.md", "docs/bench/spmv.json", "docs/bench/spmv-roofline.png",
    }  # fmt: skip
    assert "](bench/spmv-roofline.png)" in (tmp_path / "docs/benchmarks.md").read_text()
    assert json.loads((tmp_path / "docs/bench/spmv.json").read_text())["target"] == "spmv"
    assert "recorded in docs/benchmarks.md" in capsys.readouterr().out


@pytest.mark.rtl
def test_bench_spmm_on_the_rtl_device(tmp_path, capsys):
    args = ["bench", "spmm", "--device", "rtl", "--scale", "0.02", "--cached"]
    assert cli.main([*args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SpMM (k = 8) on the rtl device" in out and "madds/cycle" in out
    data = json.loads((tmp_path / "spmm-rtl.json").read_text())
    cases = data["data"]["cases"]
    # each matrix as put() packs it and with tiles for k, every result equal to the emulator's
    assert len(cases) == 14 and sum(", tiles for k" in c for c in cases) == 7
    assert all(c["work"] == 8 * c["nnz"] and c["work_per_cycle"] > 0 for c in cases.values())


def test_without_matplotlib_the_numbers_are_kept(tmp_path, monkeypatch, capsys):
    """A plain install has no matplotlib: the bench still writes its data and says why there is
    no plot, rather than failing after the measurement."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert cli.main(["bench", "spmv", *SMALL, "--out", "results"]) == 0
    assert files_under(tmp_path) == {"results/spmv.json"}
    out = capsys.readouterr().out
    assert "no roofline plot: it needs matplotlib" in out and "data: results/spmv.json" in out
