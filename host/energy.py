"""What a run costs in energy, and what the board's own CPU would take for the same work.

The figures come from the board file's ``[energy]`` and ``[cpu]`` tables, each with its source
and how sure it is (docs/energy.md). A run's energy is the board's power and the overlay's
over the run's time at the build's clock, plus the lanes' multiply-adds, plus the bytes moved
to and from DDR: ``RunStats.energy_j`` and ``RunStats.energy_breakdown``. The CPU model is
the board's own processor running scipy's CSR kernels on one core, as a PYNQ user would
without the overlay; ``fiberflow bench energy`` sets the two side by side.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from fiberflow.errors import DeviceError, FiberflowError

MEASURED = "given to ff.open as board_power_w (a measurement)"


@dataclass(frozen=True)
class EnergyModel:
    """The constants one device's runs are costed with (the board's, or a measured board
    power given to ``ff.open``)."""

    board: str  # the board's display name
    board_power_w: float
    overlay_power_w: float
    lane_op_pj: float
    ddr_pj_per_byte: float
    board_power_source: str

    def breakdown(self, seconds: float, work: int, dma_bytes: int) -> dict[str, float]:
        """Joules by where they go: the board and the overlay over the run's time, the lanes'
        multiply-adds, the DDR bytes."""
        return {
            "board": self.board_power_w * seconds,
            "overlay": self.overlay_power_w * seconds,
            "lanes": work * self.lane_op_pj * 1e-12,
            "ddr": dma_bytes * self.ddr_pj_per_byte * 1e-12,
        }


def board_power(value: Any) -> float | None:
    """``board_power_w`` as ``ff.open`` takes it: None (the board file's figure) or a
    positive, finite number of watts."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (math.isfinite(value) and 0 < value <= 1000):
        raise DeviceError(
            f"board_power_w must be the board's measured power in watts (a positive number "
            f"up to 1000), not {value!r}"
        )
    return float(value)


def model(board: Any, board_power_w: float | None = None) -> EnergyModel:
    """The energy model of ``board`` (a :class:`fiberflow.boards.Board`), with a measured
    board power in place of the file's when one is given (checked by :func:`board_power`)."""
    return _model(board.name, board.energy, board_power_w)


def _model(name: str, e: Any, board_power_w: float | None) -> EnergyModel:
    """The model from a board's ``Energy`` figures ``e``."""
    given = board_power(board_power_w)
    return EnergyModel(
        board=name,
        board_power_w=e.board_power_w.value if given is None else given,
        overlay_power_w=e.overlay_power_w.value,
        lane_op_pj=e.lane_op_pj.value,
        ddr_pj_per_byte=e.ddr_pj_per_byte.value,
        board_power_source=(
            f"{e.board_power_w.confidence}: {e.board_power_w.source}" if given is None else MEASURED
        ),
    )


@dataclass(frozen=True)
class CpuRun:
    """The board's own CPU doing a kernel's work, by the board file's ``[cpu]`` model."""

    seconds: float
    energy_j: float
    bytes: int  # what it reads and writes in DDR at best: A once, x and y once
    bound: str  # "compute" or "memory"


def cpu_run(
    board: Any,
    *,
    nnz: int,
    rows: int,
    cols: int,
    k: int = 1,
    board_power_w: float | None = None,
) -> CpuRun:
    """scipy's CSR SpMV (``k == 1``) or SpMM with ``k`` columns of float32 on one core of the
    board's processor: the larger of the loop's cycles and the bytes over what one core
    streams. The bytes count A (a 4-byte value and a 4-byte column index a nonzero, the row
    pointers), x (B) and y (C) once each: the CPU's best case, as if its caches kept x."""
    c = board.cpu
    cycles = nnz * (c.cycles_per_nnz.value + (k - 1) * c.cycles_per_extra_column.value)
    compute = cycles / (c.clock_mhz.value * 1e6)
    nbytes = 8 * nnz + 4 * (rows + 1) + 4 * k * (cols + rows)
    memory = nbytes / (c.stream_gb_s.value * 1e9)
    seconds = max(compute, memory)
    power = board_power(board_power_w)
    idle = board.energy.board_power_w.value if power is None else power
    return CpuRun(
        seconds=seconds,
        energy_j=(idle + c.active_power_w.value) * seconds,
        bytes=nbytes,
        bound="compute" if compute >= memory else "memory",
    )


def manifest_entry(board: Any) -> dict[str, Any]:
    """The board's energy figures as a build folder's manifest records them (values and
    sources), so a board device costs its runs without the board file."""
    return dataclasses.asdict(board.energy)


def from_manifest(board: dict[str, Any], board_power_w: float | None = None) -> EnergyModel:
    """The energy model of the board a build folder's manifest describes (its ``board``
    table). A manifest written before the figures were recorded names the board by its key;
    when that is no board fiberflow ships, every figure is NaN, so energy_j reads NaN."""
    from fiberflow import boards

    figures = board.get("energy")
    if figures is not None:
        e = boards.Energy(**{k: boards.Figure(**v) for k, v in figures.items()})
        return _model(str(board["name"]), e, board_power_w)
    try:
        return model(boards.load(board["key"]), board_power_w)
    except FiberflowError:
        unknown = boards.Figure(float("nan"), "rebuild the overlay to record them", "assumption")
        e = boards.Energy(*[unknown] * len(dataclasses.fields(boards.Energy)))
        return _model(str(board.get("name", "?")), e, board_power_w)
