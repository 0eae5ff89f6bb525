"""Shared by the spmv and spmm benchmarks: the checked, interleaved timing of a kernel against
scipy, and the roofline plot."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import fiberflow as ff
from fiberflow import verify
from fiberflow.progress import progress


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn within each round so that load from
    other processes hits every path alike (one warm-up round first)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in progress(range(repeat), desc="timing"):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def peak_extra(fn: Callable[[], Any]) -> int:
    """Peak bytes Python allocates while ``fn`` runs (tracemalloc sees numpy buffers)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


NO_PLOT = (
    "no roofline plot: it needs matplotlib (pip install matplotlib, or the dev extra); the "
    "numbers above do not"
)


def roofline_plot(path: Path, points: list[tuple[str, ff.RunStats]], title: str) -> list[Path]:
    """Work per cycle against work per DMA byte, under the model's roof for these points'
    device (all points must share lanes and bus width): ``[path]``, or ``[]`` without
    matplotlib, which a plain install does not have (the measurement still counts; the report
    says why there is no plot, :data:`NO_PLOT`)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = points[0][1].lanes
    bpc = points[0][1].bus_bytes_per_cycle
    intensity = np.array([s.work / s.dma_bytes for _, s in points])
    perf = np.array([s.work / s.cycles for _, s in points])
    lo, hi = min(intensity.min() / 3, 1e-3), max(intensity.max() * 3, 10 * lanes / bpc)
    xs = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.loglog(
        xs, np.minimum(lanes, bpc * xs), "k-", lw=2, label=f"roof: {lanes} lanes, {bpc} B/cycle"
    )
    for (label, _), x, y in zip(points, intensity, perf, strict=True):
        ax.loglog([x], [y], "o", ms=7, label=label)
    ax.set_xlabel("work per DMA byte (nonzero x column operations / byte)")
    ax.set_ylabel("work per cycle")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return [path]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stats_dict(s: ff.RunStats) -> dict[str, object]:
    return {
        "cycles": s.cycles,
        "nnz": s.nnz,
        "work": s.work,
        "dma_bytes": s.dma_bytes,
        "efficiency": s.efficiency,
        "bound": s.bound,
        "lane_busy_cycles": list(s.lane_busy_cycles),
    }


def check_and_time(
    name: str, A: Any, h: ff.ResidentMatrix, dense: np.ndarray, dev: ff.Device, repeat: int
) -> tuple[str, ff.RunStats, dict[str, float]]:
    """Check ``ff.<name>`` (spmv or spmm) on the resident ``h`` against scipy, then time
    scipy's ``A @ dense``, the resident call (interleaved, ``repeat`` rounds) and the call that
    packs A each time (three runs). Returns the verdict, the checked call's statistics and the
    median seconds of each path."""
    kernel = getattr(ff, name)
    ok, verdict = verify.against_scipy(kernel(h, dense, device=dev), A, dense)
    if not ok:
        raise AssertionError(f"the emulator's Sp{name[2:].upper()} disagrees with scipy: {verdict}")
    stats = dev.last_stats
    assert stats is not None
    sym = "x" if name == "spmv" else "B"
    secs = interleaved_medians(
        {
            f"scipy A @ {sym}": lambda: A @ dense,
            f"emu ff.{name}, resident A": lambda: kernel(h, dense, device=dev),
        },
        repeat,
    )
    secs[f"emu ff.{name}, packs A each call"] = float(
        np.median([timed(lambda: kernel(A, dense, device=dev)) for _ in range(3)])
    )
    return verdict, stats, secs
