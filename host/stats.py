"""``ff.RunStats``: what one kernel call cost.

Every device fills a :class:`RunStats` after each job (``dev.last_stats``). The rtl and pynq
devices read the shell's counters
(:meth:`fiberflow.host.devices.shell_driver.ShellDriver.run_stats`);
the functional emulator estimates them with the cycle model of
:mod:`fiberflow.host.devices.perf_model` (docs/emulator.md). The derived figures (roofline,
efficiency, lane utilisation, projected throughput) are the same for every device.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from fiberflow.host.energy import EnergyModel

# The cost of a tile to the lane schedule (job.lane_assignment) besides its nonzeros: what a
# lane spends reading the tile header and directory entry, configuring its scanners, and
# draining its pipeline, in the lanes' cycles.
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
    # The board's energy figures (fiberflow.host.energy): every device gives its own.
    energy: EnergyModel | None = None

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

    @property
    def lane_utilisation(self) -> tuple[float, ...]:
        """Each lane's busy cycles over the job's cycles (0 to 1)."""
        return tuple(b / self.cycles if self.cycles else 0.0 for b in self.lane_busy_cycles)

    @property
    def mean_utilisation(self) -> float:
        """The mean of :attr:`lane_utilisation` (0 when no lane counts were given)."""
        u = self.lane_utilisation
        return sum(u) / len(u) if u else 0.0

    @property
    def nnz_per_second(self) -> float:
        """Projected throughput at ``clock_mhz``: stored nonzeros of A per second."""
        return self.nnz / self.seconds_est if self.cycles else 0.0

    @property
    def dma_gb_per_second(self) -> float:
        """Projected DMA throughput at ``clock_mhz``: bytes moved per second, in GB/s (1e9)."""
        return self.dma_bytes / self.seconds_est / 1e9 if self.cycles else 0.0

    @property
    def energy_breakdown(self) -> dict[str, float]:
        """Estimated joules of the run by where they go: ``board`` and ``overlay`` (their
        power over the run's time at ``clock_mhz``), ``lanes`` (the multiply-adds), ``ddr``
        (the bytes moved); docs/energy.md gives each figure's source. Empty when the stats
        carry no energy model."""
        if self.energy is None:
            return {}
        return self.energy.breakdown(self.seconds_est, self.work, self.dma_bytes)

    @property
    def energy_j(self) -> float:
        """Estimated joules of the run: the sum of :attr:`energy_breakdown` (NaN when the
        stats carry no energy model)."""
        parts = self.energy_breakdown
        return sum(parts.values()) if parts else float("nan")

    @property
    def nj_per_nnz(self) -> float:
        """:attr:`energy_j` per stored nonzero, in nanojoules."""
        return self.energy_j / self.nnz * 1e9 if self.nnz else float("nan")

    def _energy_text(self) -> str:
        if self.energy is None:
            return "energy not modelled"
        parts = ", ".join(f"{k} {v * 1e6:,.1f}" for k, v in self.energy_breakdown.items())
        return (
            f"energy {self.energy_j * 1e6:,.1f} uJ ({parts}; {self.nj_per_nnz:.2f} nJ/nonzero, "
            f"estimated for {self.energy.board})"
        )

    def _repr_html_(self) -> str:
        """A compact table for Jupyter."""
        kind = "estimated" if self.estimated else "measured"
        rows = [
            ("cycles", f"{self.cycles:,} ({kind})"),
            ("time", f"{self.seconds_est * 1e6:,.1f} us at {self.clock_mhz:g} MHz"),
            ("nonzeros", f"{self.nnz:,} in {self.tiles} tiles"),
            ("per cycle", f"{self.nnz / max(self.cycles, 1):.2f} nonzeros"),
            ("lanes", f"{self.lanes}, utilisation {self.mean_utilisation:.2f}"),
            ("DMA", f"{self.dma_bytes:,} B, {self.dma_gb_per_second:.3f} GB/s"),
            ("efficiency", f"{self.efficiency:.2f} ({self.bound}-bound)"),
            ("energy", self._energy_text()),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>"
                       f"{html.escape(v)}</td></tr>" for k, v in rows)  # fmt: skip
        title = html.escape(f"{self.kernel} on {self.device or 'device'}")
        return f"<table><caption style='text-align:left'>{title}</caption>{body}</table>"

    def summary(self) -> str:
        """A few lines for people: cycles, time, efficiency, lane balance and utilisation,
        projected throughput."""
        busy = np.asarray(self.lane_busy_cycles, dtype=np.int64)
        balance = float(busy.mean() / busy.max()) if busy.size and busy.max() else 1.0
        kind = "estimated" if self.estimated else "measured"
        lanes = " ".join(f"{u:.2f}" for u in self.lane_utilisation)
        return (
            f"{self.kernel} on {self.device or 'device'}: {self.cycles:,} cycles ({kind}) = "
            f"{self.seconds_est * 1e6:,.1f} us at {self.clock_mhz:g} MHz; nnz {self.nnz:,}, "
            f"{self.tiles} tiles on {self.lanes} lanes (balance {balance:.2f}); "
            f"DMA {self.dma_bytes:,} B at {self.bus_bytes_per_cycle} B/cycle; "
            f"efficiency {self.efficiency:.2f} ({self.bound}-bound); "
            f"lane utilisation {self.mean_utilisation:.2f} (lanes: {lanes}); projected "
            f"{self.nnz_per_second / 1e6:,.1f} M nonzeros/s, "
            f"DMA {self.dma_gb_per_second:.3f} GB/s; {self._energy_text()}"
        )
