"""Energy of a run (``RunStats.energy_j``), the board files' figures behind it, the CPU model,
and ``fiberflow bench energy``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import boards
from fiberflow.boards import CONFIDENCE
from fiberflow.errors import BoardError, DeviceError
from fiberflow.host import energy
from fiberflow.host.stats import RunStats

BOARD_DIR = Path(boards.__file__).parent


def _matrix(n: int = 600, seed: int = 0) -> sp.csr_array:
    return sp.random_array((n, n), density=0.02, format="csr", dtype=np.float32, rng=seed)


@pytest.mark.parametrize("key", boards.names())
def test_every_board_gives_each_figure_a_source_and_a_confidence(key: str) -> None:
    b = boards.load(key)
    figures = [*vars(b.energy).values()]
    figures += [v for v in vars(b.cpu).values() if isinstance(v, boards.Figure)]
    assert len(figures) == 4 + 5
    for f in figures:
        assert f.confidence in CONFIDENCE and len(f.source) > 20, (key, f)
        assert math.isfinite(f.value) and f.value >= 0
    assert b.cpu.name.startswith("Cortex-A9" if b.is_zynq7000 else "Cortex-A53")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("board_power_w = { value = 2.5,", "board_power_w = { value = -2.5,",
         r"'energy\.board_power_w\.value' is -2\.5; expected the board's idle power"),
        ('confidence = "estimate", source = "an upper', 'confidence = "sure", source = "an upper',
         r"'energy\.board_power_w\.confidence' is 'sure'; expected one of measured"),
        ("lane_op_pj = {", "lane_op_pj_gone = {", r"'energy\.lane_op_pj' is missing"),
        ("cores = 2", 'cores = "two"', r"'cpu\.cores' is 'two'"),
    ],
)  # fmt: skip
def test_a_malformed_energy_figure_names_its_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = (BOARD_DIR / "pynq-z2.toml").read_text()
    assert old in text, old
    path = tmp_path / "board.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(BoardError, match=expected):
        boards.load(path)


def test_energy_is_board_and_overlay_power_over_time_plus_operations_and_bytes() -> None:
    dev = ff.open("emu")
    A = _matrix()
    ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev)
    s = dev.last_stats
    e = boards.load("pynq-z2").energy
    seconds = s.cycles / 100e6
    want = {
        "board": e.board_power_w.value * seconds,
        "overlay": e.overlay_power_w.value * seconds,
        "lanes": A.nnz * e.lane_op_pj.value * 1e-12,
        "ddr": s.dma_bytes * e.ddr_pj_per_byte.value * 1e-12,
    }
    assert s.energy_breakdown == pytest.approx(want)
    assert s.energy_j == pytest.approx(sum(want.values()))
    assert s.nj_per_nnz == pytest.approx(s.energy_j / A.nnz * 1e9)
    assert "nJ/nonzero, estimated for PYNQ-Z2" in s.summary()
    assert "energy" in s._repr_html_()
    # SpMM: k multiply-adds a nonzero
    ff.spmm(A, np.ones((A.shape[1], 3), np.float32), device=dev)
    s = dev.last_stats
    assert s.energy_breakdown["lanes"] == pytest.approx(3 * A.nnz * e.lane_op_pj.value * 1e-12)


def test_a_measured_board_power_replaces_the_files() -> None:
    A = _matrix()
    x = np.ones(A.shape[1], np.float32)
    runs = {}
    for watts in (None, 1.0, 4.0):
        dev = ff.open("emu", board_power_w=watts)
        ff.spmv(A, x, device=dev)
        runs[watts] = dev.last_stats
    t = runs[None].seconds_est
    assert runs[1.0].energy_breakdown["board"] == pytest.approx(1.0 * t)
    assert runs[4.0].energy_j - runs[1.0].energy_j == pytest.approx(3.0 * t)
    assert runs[4.0].energy.board_power_source == energy.MEASURED
    assert runs[None].energy.board_power_source.startswith("estimate: ")


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), float("inf"), "3 W", True, 5000])
def test_a_bad_board_power_is_refused(bad: object) -> None:
    with pytest.raises(DeviceError, match="board_power_w must be the board's measured power"):
        ff.open("emu", board_power_w=bad)


def test_other_boards_cost_runs_with_their_own_figures() -> None:
    A = _matrix()
    dev = ff.open("emu", board="zcu104")
    ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev)
    s = dev.last_stats
    assert s.energy.board == "ZCU104" and s.energy.board_power_w == 14.05
    assert s.energy_breakdown["board"] == pytest.approx(14.05 * s.seconds_est)


def test_stats_without_a_model_say_so() -> None:
    s = RunStats(kernel="spmv", cycles=100, nnz=10, work=10, lanes=1, tiles=1, dma_bytes=64,
                 bus_bytes_per_cycle=8, clock_mhz=100.0)  # fmt: skip
    assert s.energy_breakdown == {} and math.isnan(s.energy_j)
    assert "energy not modelled" in s.summary()


def test_cpu_model_is_the_slower_of_its_loop_and_its_bytes() -> None:
    b = boards.load("pynq-z2")
    c = b.cpu
    nnz, rows, cols = 1_000_000, 100_000, 100_000
    run = energy.cpu_run(b, nnz=nnz, rows=rows, cols=cols)
    compute = nnz * c.cycles_per_nnz.value / (c.clock_mhz.value * 1e6)
    nbytes = 8 * nnz + 4 * (rows + 1) + 4 * (cols + rows)
    assert run.bytes == nbytes
    assert run.seconds == pytest.approx(max(compute, nbytes / (c.stream_gb_s.value * 1e9)))
    assert run.bound == ("compute" if compute > nbytes / (c.stream_gb_s.value * 1e9) else "memory")
    power = b.energy.board_power_w.value + c.active_power_w.value
    assert run.energy_j == pytest.approx(power * run.seconds)
    # SpMM: each column past the first costs its own cycles; a measured board power counts
    wide = energy.cpu_run(b, nnz=nnz, rows=rows, cols=cols, k=8, board_power_w=2.0)
    extra = nnz * 7 * c.cycles_per_extra_column.value / (c.clock_mhz.value * 1e6)
    assert wide.seconds >= compute + extra - 1e-12
    assert wide.energy_j == pytest.approx((2.0 + c.active_power_w.value) * wide.seconds)
    # a matrix of very short rows streams more bytes than the loop takes cycles
    sparse_rows = energy.cpu_run(b, nnz=1000, rows=1_000_000, cols=1_000_000)
    assert sparse_rows.bound == "memory"


def test_a_build_manifest_carries_the_figures() -> None:
    b = boards.load("kv260")
    entry = energy.manifest_entry(b)
    assert set(entry) == {"board_power_w", "overlay_power_w", "lane_op_pj", "ddr_pj_per_byte"}
    m = energy.from_manifest({"name": b.name, "key": b.key, "energy": entry})
    assert m == energy.model(b)
    # written before the figures were recorded: the board is found by its key
    assert energy.from_manifest({"name": b.name, "key": "kv260"}) == energy.model(b)
    # ... or, when it is no board fiberflow ships, energy reads NaN (the device still opens)
    lost = energy.from_manifest({"name": "mine", "key": "my-own-board"}, board_power_w=3.0)
    assert lost.board_power_w == 3.0 and math.isnan(lost.lane_op_pj)
    with pytest.raises(DeviceError):
        energy.from_manifest({"name": b.name, "energy": entry}, board_power_w=-1)


def test_bench_energy_compares_every_board_with_its_cpu() -> None:
    from fiberflow.bench import energy as bench

    args = argparse.Namespace(board=["pynq-z2", "zcu104"], scale=0.02, device="emu")
    report = bench.run(args)
    assert [r[0] for r in report.rows] == ["PYNQ-Z2"] * 5 + ["ZCU104"] * 5
    for row in report.rows:
        overlay, cpu, speedup, nj, cpu_nj, ratio = row[4:]
        assert speedup == pytest.approx(overlay / cpu, rel=1e-6)
        assert ratio == pytest.approx(cpu_nj / nj, rel=1e-6)
    assert set(report.data["summary"]) == {"PYNQ-Z2", "ZCU104"}
    assert "--board pynq-z2 --board zcu104" in report.command


@pytest.mark.rtl
def test_the_rtl_device_reports_energy_from_its_counters() -> None:
    A = _matrix(300)
    with ff.open("rtl", board_power_w=2.0) as dev:
        ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev)
        s = dev.last_stats
    assert not s.estimated and s.energy.board_power_w == 2.0
    assert s.energy_breakdown["board"] == pytest.approx(2.0 * s.cycles / 100e6)
    ddr = s.dma_bytes * s.energy.ddr_pj_per_byte * 1e-12
    assert s.energy_breakdown["ddr"] == pytest.approx(ddr)
    with pytest.raises(DeviceError, match="board_power_w"):
        ff.open("rtl", board_power_w=0)


def test_the_readme_table_is_the_recorded_comparison() -> None:
    import json

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    recorded = {
        "energy.json": json.loads((root / "docs/bench/energy.json").read_text()),
        "energy-rtl.json": json.loads((root / "docs/bench/energy-rtl.json").read_text()),
    }
    for source, data in recorded.items():
        for board, s in data["data"]["summary"].items():
            if board == "PYNQ-Z2" and source == "energy.json":
                continue  # the README's Z2 row is the rtl device's
            lo, hi = s["speedup"]
            elo, ehi = s["energy_ratio"]
            row = f"| {board} | {lo:.2f}-{hi:.2f}x | {elo:.2f}-{ehi:.2f}x |"
            assert row in readme, row
