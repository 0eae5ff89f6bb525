"""The ``"rtl"`` device: the generated shell in Verilator, running the real firmware.

``ff.open("rtl", lanes=4, dtype="float32")`` builds (or takes from the cache) a Verilator model
of the shell of :mod:`fiberflow.overlay.top` with SpMV/SpMM lanes, loads the shipped firmware
and runs every job cycle by cycle: the firmware walks the FFJB descriptor of ``docs/jobs.md``
(``firmware/ffjb.c``), its DMA engines read the operands from the simulated DDR, which serves
them straight from the device buffers' numpy arrays (no copies). The job protocol itself
(doorbell, waits with timeouts, error decoding, reset) is :mod:`fiberflow.host.shell_driver`,
which the board device shares, as it does the host's side of kernel jobs
(:mod:`fiberflow.host.shell_jobs`).

Results are bit-identical to the ``"emu"`` device for every tile shape. ``last_stats`` comes
from the shell's counters (``estimated=False``): the firmware's cycle count for the job, the
bytes the DMA engines moved, each lane's busy and stall cycles.

Tiles must fit the lanes' buffers. ``put`` (and a non-resident ``ff.spmv``) choose the tile
shape when none is given (:meth:`RtlDevice.pack_to_fit`): a row tile's y block and a column
tile's x slice fit (SpMV), and rows are cut until every tile's bytes fit a tile buffer. An SpMM
whose B / C rows do not fit with those tiles runs as several jobs over column blocks of B. An
explicit ``tile=`` that does not fit ends in a ``DeviceError``.

Fault injection for tests: :meth:`RtlDevice.inject` (``"dma_error"``, ``"hang_ddr"``,
``"hang_lanes"``, ``"hang_cpu"``, ``None`` to clear).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fiberflow.errors import DeviceError
from fiberflow.host import stats
from fiberflow.host.device import DEFAULT_TIMEOUT, Buffer
from fiberflow.host.resident import ResidentMatrix, make_resident
from fiberflow.host.shell_jobs import ShellJobs

__all__ = ["RtlDevice"]

_VTYPE = {"float32": "fp32", "int32": "int32"}
MAX_LANES = 8  # firmware/ffjb.c: MAX_LANES


class RtlDevice:
    """The cycle-accurate device. Options (all keywords):

    ``lanes`` (4), ``dtype`` ("float32", "int32" or both as a tuple: the lanes' arithmetic),
    ``dma_engines``, ``bus_bits``, ``tile_bytes``, ``x_bytes``, ``y_bytes``, ``max_k``,
    ``ram_bytes`` (default: the overlay's own, :class:`fiberflow.overlay.top.ShellConfig`, the
    same overlay ``fiberflow build`` makes), ``board`` ("pynq-z2": the DDR model and clock),
    ``ddr`` (a :class:`fiberflow.host.rtl.DdrModel`, overriding the board's).
    """

    name = "rtl"

    def __init__(
        self,
        *,
        lanes: int = 4,
        dtype: str = "float32",
        dma_engines: int | None = None,
        bus_bits: int | None = None,
        tile_bytes: int | None = None,
        x_bytes: int | None = None,
        y_bytes: int | None = None,
        max_k: int | None = None,
        ram_bytes: int | None = None,
        board: str = "pynq-z2",
        ddr: Any = None,
    ) -> None:
        from fiberflow import boards
        from fiberflow.host.rtl import DdrModel, RtlShell
        from fiberflow.overlay.top import ShellConfig

        if not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
            raise DeviceError(
                f"lanes must be an integer from 1 to {MAX_LANES} (what the firmware's job walker "
                f"keeps state for), not {lanes!r}"
            )
        names = [dtype] if isinstance(dtype, str) else list(dtype)
        if not names or any(str(d) not in _VTYPE for d in names):
            raise DeviceError(f"dtype must be 'float32', 'int32' or both as a tuple, not {dtype!r}")
        vt = "+".join(sorted({_VTYPE[str(d)] for d in names}, key=["fp32", "int32"].index))
        given = {
            "dma_engines": dma_engines,
            "bus_bits": bus_bits,
            "tile_bytes": tile_bytes,
            "x_bytes": x_bytes,
            "y_bytes": y_bytes,
            "max_k": max_k,
            "ram_bytes": ram_bytes,
        }
        try:
            self.config = ShellConfig(
                lanes=lanes,
                value_type=vt,
                kernels=("spmv", "spmm"),
                **{k: v for k, v in given.items() if v is not None},
            )
        except ValueError as exc:
            raise DeviceError(f"ff.open('rtl'): {exc}") from None
        b = boards.load(board)
        self.ddr = ddr if ddr is not None else DdrModel(**b.ddr_model())
        self.dtypes = tuple(np.dtype(n) for n in vt.replace("fp32", "float32").split("+"))
        self.lanes = int(lanes)
        self.clock_mhz = float(b.fabric_clock_mhz)
        self.bus_bytes_per_cycle = self.config.bus_bytes * self.config.dma_engines
        self.last_stats: stats.RunStats | None = None
        self.shell = RtlShell(self.config, self.ddr)
        self.shell.clock_mhz = self.clock_mhz
        self.driver = self.shell.driver  # one driver per shell: one job sequence
        self.driver.load_firmware()
        self._jobs = ShellJobs(self, self.driver)

    # -- memory -------------------------------------------------------------------------------

    def alloc(self, nbytes: int) -> Buffer:
        return self.shell.alloc(max(int(nbytes), 1))

    def free(self, buffer: Buffer) -> None:
        self.shell.free(buffer)

    @property
    def memory_used(self) -> int:
        return sum(b.nbytes for b in self.shell._buffers.values())

    def find(self, address: int) -> Buffer | None:
        """The live buffer that holds device address ``address``, if any."""
        for b in self.shell._buffers.values():
            if b.address <= address < b.address + b.nbytes:
                return b
        return None

    # -- control ------------------------------------------------------------------------------

    def read_reg(self, offset: int) -> int:
        return self.shell.read_reg(offset)

    def write_reg(self, offset: int, value: int) -> None:
        self.shell.write_reg(offset, value)

    def load_overlay(self, bitstream: Any = None, firmware: Any = None) -> None:
        """The overlay is the Verilated model built at ``open``; ``firmware`` (bytes) replaces
        the control firmware (default: the shipped image)."""
        if bitstream is not None:
            raise DeviceError(
                "the rtl device simulates the overlay it was opened with; pass its parameters "
                "to ff.open('rtl', ...) instead of a bitstream"
            )
        self.driver.load_firmware(firmware)

    def reset(self) -> None:
        self.driver.reset()
        self._jobs.forget()

    def close(self) -> None:
        if getattr(self, "shell", None) is not None:
            self.shell.close()

    def __enter__(self) -> RtlDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fault injection (tests) --------------------------------------------------------------

    def inject(self, fault: str | None, buffer: Buffer | None = None) -> None:
        """Make the next job fail: ``"dma_error"`` (SLVERR for bursts touching ``buffer``),
        ``"hang_ddr"`` (DDR stops answering: DMA watchdog), ``"hang_lanes"`` (lanes never
        finish: lane watchdog), ``"hang_cpu"`` (the firmware stops answering: the host's
        timeout). ``None`` clears every fault. A device reset also clears them."""
        s = self.shell
        if fault is None:
            s.inject_dma_error(0, 0, 0)
            s.hang_ddr(False)
            s.hold_lanes(False)
            s.hold_cpu(False)
        elif fault == "dma_error":
            if buffer is None:
                raise DeviceError("inject('dma_error') needs the buffer whose bursts fail")
            s.inject_dma_error(buffer.address, buffer.address + buffer.nbytes, 2)
        elif fault == "hang_ddr":
            s.hang_ddr(True)
        elif fault == "hang_lanes":
            s.hold_lanes(True)
        elif fault == "hang_cpu":
            s.hold_cpu(True)
        else:
            raise DeviceError(
                f"unknown fault {fault!r}; choose dma_error, hang_ddr, hang_lanes or hang_cpu"
            )

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, job: Buffer) -> int:
        """Start the job whose descriptor is in ``job`` (see :class:`ShellJobs`: an SpMM whose
        B / C rows do not fit the lanes' buffers with this matrix's tiles runs in column
        blocks, one after the other, at :meth:`wait`)."""
        if job.device is not self.shell or job.freed:
            raise DeviceError(f"{job} is not a live buffer of this device")
        return self._jobs.submit(job)

    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> stats.RunStats:
        if timeout is None or not timeout > 0:
            raise DeviceError(f"timeout must be positive seconds, not {timeout!r}")
        self.last_counters, self.last_stats = self._jobs.wait(job_id, timeout)
        return self.last_stats

    # -- resident matrices --------------------------------------------------------------------

    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> ResidentMatrix:
        """Pack ``A`` once and keep its image in the simulated DDR; ``tile=None`` picks a tile
        shape that fits the lanes' buffers (:meth:`pack_to_fit`)."""
        return make_resident(self, A, tile, dtype)

    def tile_limits(self) -> tuple[int, int]:
        """The largest (rows, cols) a tile may span so that a row tile's y block and a column
        tile's x slice fit the lanes' buffers for SpMV (:meth:`ShellJobs.tile_limits`; SpMM
        runs in column blocks of B that fit these tiles, see :meth:`submit`)."""
        return self._jobs.tile_limits()

    def pack_to_fit(self, t: Any) -> Any:
        """Pack tensor ``t`` with the largest tiles that fit this overlay's buffers: the
        widest column tiles the x buffer holds, and rows cut (from what the y buffer holds)
        until every tile's bytes fit a tile buffer."""
        return self._jobs.pack_to_fit(
            t,
            self.dtypes,
            larger=f"open ff.open('rtl', dtype='{t.dtype}', tile_bytes=...) with larger buffers",
        )

    def __repr__(self) -> str:
        c = self.config
        return (
            f"RtlDevice(lanes={c.lanes}, value_type={c.value_type}, dma_engines={c.dma_engines}, "
            f"bus_bits={c.bus_bits}, tile_bytes={c.tile_bytes}, x_bytes={c.x_bytes}, "
            f"y_bytes={c.y_bytes}, max_k={c.max_k})"
        )
