"""``ff.RunStats``: what one kernel call cost, and the analytic performance model behind it.

Every device fills a :class:`RunStats` after each job (``dev.last_stats``). The rtl and pynq
devices read the shell's counters (:meth:`fiberflow.host.shell_driver.ShellDriver.run_stats`);
the functional emulator estimates them with :func:`estimate`, the performance model of
``docs/architecture.md``, written down in ``docs/emulator.md``:

* a lane consumes at most one nonzero per cycle (SpMM: one nonzero times one column of B per
  cycle, so a nonzero costs ``k`` cycles);
* each tile costs a lane a fixed ``TILE_OVERHEAD_CYCLES`` to start and drain;
* the bus brings ``bus_bytes_per_cycle`` bytes per cycle, shared by all lanes;
* cycles = max(slowest lane, bus time); roofline = max(work / lanes, dma_bytes / bus rate);
  efficiency = roofline / cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Cycles a lane spends per tile besides consuming nonzeros: reading the tile header and
# directory entry, configuring its scanners, and draining its pipeline.
TILE_OVERHEAD_CYCLES = 32


@dataclass(frozen=True)
class RunStats:
    """Statistics of one job. On the emulator every cycle count is an estimate
    (``estimated=True``); on hardware they come from counters."""

    kernel: str  # "spmv" or "spmm"
    cycles: int  # total cycles from start to done
    nnz: int  # stored nonzeros of A processed
    work: int  # lane operations: nnz for SpMV, nnz * k for SpMM
    lanes: int
    tiles: int  # non-empty tiles of A processed
    dma_bytes: int  # bytes moved between DDR and the fabric (in and out)
    bus_bytes_per_cycle: int
    clock_mhz: float
    lane_busy_cycles: tuple[int, ...] = field(default=())  # cycles each lane consumed nonzeros
    lane_stall_cycles: tuple[int, ...] = field(default=())  # cycles each lane was not busy
    estimated: bool = True
    device: str = ""

    @property
    def seconds_est(self) -> float:
        """The job's duration at ``clock_mhz``."""
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def roofline_cycles(self) -> float:
        """The best any schedule could do: max(work / lanes, dma_bytes / bus rate)."""
        return max(self.work / self.lanes, self.dma_bytes / self.bus_bytes_per_cycle)

    @property
    def efficiency(self) -> float:
        """roofline_cycles / cycles (1.0 means at the roofline)."""
        return self.roofline_cycles / self.cycles if self.cycles else 1.0

    @property
    def bound(self) -> str:
        """ "compute" when the lanes' work dominates the roofline, otherwise "memory"."""
        return (
            "compute"
            if self.work / self.lanes >= self.dma_bytes / self.bus_bytes_per_cycle
            else "memory"
        )

    def summary(self) -> str:
        """A few lines for people: cycles, time, efficiency, lane balance."""
        busy = np.asarray(self.lane_busy_cycles, dtype=np.int64)
        balance = float(busy.mean() / busy.max()) if busy.size and busy.max() else 1.0
        kind = "estimated" if self.estimated else "measured"
        return (
            f"{self.kernel} on {self.device or 'device'}: {self.cycles:,} cycles ({kind}) = "
            f"{self.seconds_est * 1e6:,.1f} us at {self.clock_mhz:g} MHz; nnz {self.nnz:,}, "
            f"{self.tiles} tiles on {self.lanes} lanes (balance {balance:.2f}); "
            f"DMA {self.dma_bytes:,} B at {self.bus_bytes_per_cycle} B/cycle; "
            f"efficiency {self.efficiency:.2f} ({self.bound}-bound)"
        )


def estimate(
    *,
    kernel: str,
    k: int,
    lanes: int,
    lane_of_tile: np.ndarray,
    tile_nvals: np.ndarray,
    dma_bytes: int,
    bus_bytes_per_cycle: int,
    clock_mhz: float,
    device: str,
) -> RunStats:
    """The analytic estimate for a job whose tile ``t`` (``tile_nvals[t]`` nonzeros) runs on
    lane ``lane_of_tile[t]``."""
    nv = np.asarray(tile_nvals, dtype=np.int64)
    lane_of = np.asarray(lane_of_tile, dtype=np.int64)
    busy = np.bincount(lane_of, weights=nv * k, minlength=lanes).astype(np.int64)
    overhead = np.bincount(lane_of, minlength=lanes).astype(np.int64) * TILE_OVERHEAD_CYCLES
    bus_cycles = -(-int(dma_bytes) // int(bus_bytes_per_cycle))
    cycles = max(int((busy + overhead).max()) if lanes else 0, bus_cycles, 1)
    return RunStats(
        kernel=kernel,
        cycles=cycles,
        nnz=int(nv.sum()),
        work=int(nv.sum()) * k,
        lanes=lanes,
        tiles=len(nv),
        dma_bytes=int(dma_bytes),
        bus_bytes_per_cycle=int(bus_bytes_per_cycle),
        clock_mhz=float(clock_mhz),
        lane_busy_cycles=tuple(int(b) for b in busy),
        lane_stall_cycles=tuple(int(cycles - b) for b in busy),
        estimated=True,
        device=device,
    )
