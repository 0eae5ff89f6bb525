"""The emulator's cycle model (host/devices/perf_model.py) against the rtl device's measured cycles:
recorded runs (tests/data/emu_model_rtl.json, written by scripts/calibrate_emu.py --record),
and a slow test that runs rtl live."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.errors import DeviceError
from fiberflow.host.devices import emu, perf_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDED = json.loads((ROOT / "tests" / "data" / "emu_model_rtl.json").read_text())
TOLERANCE = 0.15  # the goal: emu's cycles within 15% of rtl's


def _calibration():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "calibrate_emu", ROOT / "scripts" / "calibrate_emu.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CAL = _calibration()


def test_recorded_rtl_cycles_are_predicted_within_15_percent() -> None:
    dev = ff.open("emu")
    recorded = {(r["case"], r["k"]): r for r in RECORDED}
    seen = 0
    for name, k, A, x, tile, run in CAL.runs(CAL.SMALL, CAL.SPMM):
        r = recorded[name, k]
        assert A.nnz == r["nnz"] and list(A.shape) == r["shape"]
        run(A, x, device=dev, tile=tile)
        s = dev.last_stats
        assert s.tiles == r["rtl_tiles"], name  # packed as the hardware packs
        ratio = s.cycles / r["rtl_cycles"]
        assert 1 - TOLERANCE <= ratio <= 1 + TOLERANCE, (name, k, s.cycles, r["rtl_cycles"])
        seen += 1
    assert seen == len(RECORDED) >= 10


@pytest.mark.parametrize(
    ("per_row", "rows", "k", "busy"),
    [  # one tile's lane busy counter, measured (overlay/sim/lane_sim.py, rows of per_row entries)
        (1, 1024, 1, 2078),
        (2, 512, 1, 1060),
        (8, 128, 1, 1084),
        (16, 64, 1, 1116),
        (32, 64, 1, 2204),
        (40, 64, 1, 2750),
        (48, 64, 1, 3292),
        (1, 1024, 8, 16402),
        (16, 64, 8, 8224),
        (40, 64, 8, 20512),
    ],
)
def test_tile_cycles_follow_the_lane_counters(per_row: int, rows: int, k: int, busy: int) -> None:
    assert perf_model.tile_cycles(np.full(rows, per_row), k) == pytest.approx(busy, rel=0.02)


def test_the_c_tile_cycles_equal_the_numpy_reference() -> None:
    """perf_model.image_tiles_cycles (C, from the image's segment arrays) against
    tiles_cycles (numpy, from row_lengths), on images with empty rows, single entries and rows
    far past a queue, at several k; and an offset outside the image counts as no rows."""
    rng = np.random.default_rng(21)
    for trial in range(12):
        m, n = int(rng.integers(1, 2000)), int(rng.integers(1, 3000))
        counts = np.minimum(rng.zipf(1.5, size=m) * rng.integers(0, 2, size=m), n)
        rows = np.repeat(np.arange(m), counts)
        A = sp.csr_array(
            (np.ones(len(rows), np.float32), (rows, rng.integers(0, n, len(rows)))), shape=(m, n)
        )
        A.sum_duplicates()
        tile = (int(rng.integers(1, 600)), int(rng.integers(1, 4000)))
        image = ff.pack(ff.Tensor.from_scipy(A), tile).data
        offsets = perf_model.tile_offsets(image, int(image[12:16].view("<u4")[0]))
        offsets = np.append(offsets, [-8, len(image) - 8, len(image) + 64])
        for k in (1, 2, 3, 8):
            want = perf_model.tiles_cycles(perf_model.row_lengths(image, offsets), k)
            got = perf_model.image_tiles_cycles(image, offsets, k)
            assert np.array_equal(got, want), (trial, tile, k)
        assert (got[-3:] == perf_model.DEFAULT.tile_base).all()


def test_empty_rows_cost_one_cycle_and_single_rows_two() -> None:
    base = perf_model.tile_cycles(np.zeros(0, np.int64), 1)
    assert perf_model.tile_cycles(np.zeros(100, np.int64), 1) == base + 100
    # + the tail: the last row's add, a turn after its item
    assert (
        perf_model.tile_cycles(np.ones(100, np.int64), 1)
        == base + 200 + perf_model.DEFAULT.turn - 2
    )


def test_the_default_overlay_is_the_boards_default_build() -> None:
    dev = ff.open("emu")
    c = dev.config
    assert (c.lanes, c.bus_bytes, c.dma_engines, c.clock_mhz) == (4, 8, 2, 100.0)
    assert dev.bus_bytes_per_cycle == 16  # two HP ports reach the Z2's DDR bandwidth
    kv = ff.open("emu", board="kv260")
    # 128-bit HP ports, and a DDR that would take more ports than there are lanes
    assert (kv.config.bus_bytes, kv.config.dma_engines) == (16, 4)
    assert ff.open("emu", lanes=1).config.dma_engines == 1  # at most one engine per lane
    two = ff.open("emu", dma_engines=2, bus_bits=128, tile_bytes=65536)
    assert two.bus_bytes_per_cycle == 32 and two.config.tile_bytes == 65536
    one = ff.open("emu", bus_bytes_per_cycle=16, dma_engines=1)
    assert one.config.bus_bytes == 16
    for bad in ({"bus_bits": 96}, {"dma_engines": 0}, {"tile_bytes": 1000}, {"board": "nope"}):
        with pytest.raises(DeviceError):
            ff.open("emu", **bad)


def test_shell_defaults_match_the_overlay() -> None:
    top = pytest.importorskip("fiberflow.overlay.shell.top")
    cfg = top.ShellConfig()
    for key, value in emu.SHELL_DEFAULTS.items():
        assert getattr(cfg, key) == value, key


@pytest.mark.parametrize(
    ("opts", "rtl_cycles"),
    [  # the rtl device's cycles for this job on the PYNQ-Z2 (64-bit HP ports, 16 B/cycle DDR)
        ({}, 180_562),  # the default: two 64-bit engines
        ({"dma_engines": 1}, 338_008),
        ({"bus_bits": 128, "dma_engines": 1}, 336_508),  # 128 bits on a 64-bit port: no faster
        ({"bus_bits": 128, "dma_engines": 2}, 180_060),
    ],
)
def test_the_boards_ports_bound_the_engines(opts: dict, rtl_cycles: int) -> None:
    A = CAL.fixed_rows(20000, 20000, 8, 3)
    dev = ff.open("emu", **opts)
    ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev)
    assert dev.last_stats.cycles == pytest.approx(rtl_cycles, rel=TOLERANCE)


def test_a_row_too_long_for_the_tile_buffer_still_runs() -> None:
    A = sp.csr_array(np.ones((2, 9000), np.float32))  # 9,000 entries: more than 32 KiB
    y = ff.spmv(A, np.ones(9000, np.float32), device=ff.open("emu"))
    assert np.array_equal(y, [9000, 9000])


def test_utilisation_and_throughput() -> None:
    dev = ff.open("emu")
    A = CAL.random(4000, 8, 5)
    ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev)
    s = dev.last_stats
    assert len(s.lane_utilisation) == 4 and all(0 < u < 1 for u in s.lane_utilisation)
    assert s.mean_utilisation == pytest.approx(sum(s.lane_busy_cycles) / 4 / s.cycles)
    assert s.nnz_per_second == pytest.approx(s.nnz / (s.cycles / 100e6))
    assert s.dma_gb_per_second == pytest.approx(s.dma_bytes / (s.cycles / 100e6) / 1e9)
    assert s.dma_gb_per_second < 0.8  # one 64-bit engine at 100 MHz
    text = s.summary()
    assert "lane utilisation" in text and "nonzeros/s" in text and "GB/s" in text


@pytest.mark.slow
def test_rtl_live_cycles_within_15_percent() -> None:
    pytest.importorskip("fiberflow.overlay.shell.top")
    cases = {
        "poisson 2-D 100x100": lambda: CAL.poisson2d(100),
        "power law 40k": lambda: CAL.power_law(8000, 5, 21),
        # B's rows do not fit the x buffer: the rtl device runs it as two jobs of 4 columns
        "rows of 24, 48k": lambda: CAL.fixed_rows(2000, 2000, 24, 22),
    }
    for row in CAL.measure(cases, ("rows of 24, 48k",)):
        ratio = row["emu_cycles"] / row["rtl_cycles"]
        assert 1 - TOLERANCE <= ratio <= 1 + TOLERANCE, row


def test_a_tile_offset_outside_the_image_is_refused_when_the_job_runs() -> None:
    dev = ff.open("emu")
    A = CAL.random(300, 4, 13)
    h = dev.put(A, tile=(64, 300))
    image = h.buffer.array
    image.flags.writeable = True  # read-only on the host after put; damage it anyway
    dir_offset = int(image[32:40].view("<u8")[0])
    image[dir_offset : dir_offset + 8] = np.array([1 << 40], "<u8").view(np.uint8)
    h.verify = lambda: None  # type: ignore[method-assign]  # the CRC would say so first
    with pytest.raises(DeviceError):
        ff.spmv(h, np.ones(300, np.float32), device=dev)
    ff.spmv(A, np.ones(300, np.float32), device=dev)  # the device still works


def _job(lanes: int, per_lane: int, tile_bytes: int, compute: int, k: int = 1) -> perf_model.Job:
    """A job of ``per_lane`` tiles a lane, each its own row tile, x (or B, ``k`` columns) one
    slice of 8,192 / k rows (32 KiB) that every tile reads whole."""
    n = lanes * per_lane
    full = np.full(n, 1)
    return perf_model.Job(
        lane=np.arange(n) % lanes, row_tile=np.arange(n), col_tile=0 * full,
        tile_bytes=tile_bytes * full, x_lo=0 * full, x_hi=8192 // k * full,
        x_end=8192 // k * full, x_row_bytes=4 * k, y_bytes=1600 * full,
        compute=compute * full, y_total=1600 * n,
        head_bytes=256, accumulate=False, covered=True,
    )  # fmt: skip


def test_what_if_designs_move_what_they_model() -> None:
    """simulate's what-ifs (scripts/model_whatif.py): one shared x is loaded once instead of
    once a lane; two tile buffers let a lane's next tile land while it computes, which pays
    only when the CPU is not the limit."""
    ov = perf_model.Overlay(lanes=4, dma_engines=2)
    job = _job(4, 6, 20480, 6000)  # tiles of more than half a tile buffer
    built = perf_model.simulate(job, ov)
    shared = perf_model.simulate(job, ov, shared_x=True)
    assert built.dma_bytes - shared.dma_bytes == 3 * 32768
    assert 0.99 * built.cycles < shared.cycles <= built.cycles  # the CPU is the limit
    idle_cpu = dataclasses.replace(perf_model.DEFAULT, lane=0, load=0, flush=0)
    alone = perf_model.simulate(job, ov, idle_cpu)
    assert perf_model.simulate(job, ov, idle_cpu, shared_x=True).cycles < alone.cycles
    both = perf_model.simulate(job, ov, idle_cpu, double_buffered=True)
    assert both.dma_bytes == alone.dma_bytes and both.lane_busy == alone.lane_busy
    # each lane's 6 tiles: their transfers (2,560 cycles each on an engine two lanes share)
    # no longer wait for the lane's 6,000 cycles of compute; y, one buffer, still does
    assert 6 * 6000 < both.cycles < 0.9 * alone.cycles
    assert perf_model.simulate(job, ov, double_buffered=True).cycles > 0.95 * built.cycles


def test_tiles_of_half_a_buffer_land_while_the_lane_computes() -> None:
    """As built, an SpMM lane's tile that fits half its tile buffer, after one that did too,
    goes into the other half and lands while the lane computes (firmware/ffjb.c, load): as if
    the lane had two tile buffers. A byte more than half and it waits for the lane; SpMV's
    tiles always wait."""
    ov = perf_model.Overlay(lanes=4, dma_engines=2, tile_bytes=32768)
    idle_cpu = dataclasses.replace(perf_model.DEFAULT, lane=0, load=0, flush=0)
    halves = perf_model.simulate(_job(4, 6, 16384, 6000, k=2), ov, idle_cpu)
    whole = perf_model.simulate(_job(4, 6, 16392, 6000, k=2), ov, idle_cpu)
    assert halves.cycles < 0.9 * whole.cycles
    spmv = perf_model.simulate(_job(4, 6, 16384, 6000), ov, idle_cpu)
    assert spmv.cycles > 0.99 * whole.cycles
    two = perf_model.simulate(_job(4, 6, 16392, 6000, k=2), ov, idle_cpu, double_buffered=True)
    assert abs(two.cycles - halves.cycles) < 0.01 * halves.cycles
    # in a buffer twice the size, both fit a half
    wide = perf_model.simulate(
        _job(4, 6, 16392, 6000, k=2), dataclasses.replace(ov, tile_bytes=65536), idle_cpu
    )
    assert wide.cycles < 0.9 * whole.cycles
