"""The ``"rtl"`` device: the generated shell in Verilator, running the real firmware.

``ff.open("rtl", lanes=4, dtype="float32")`` builds (or takes from the cache) a Verilator model
of the shell of :mod:`fiberflow.overlay.shell.top` with SpMV/SpMM lanes, loads the shipped firmware
and runs every job cycle by cycle: the firmware walks the FFJB descriptor of ``docs/jobs.md``
(``firmware/ffjb.c``), its DMA engines read the operands from the simulated DDR, which serves
them straight from the device buffers' numpy arrays (no copies). The job protocol itself
(doorbell, waits with timeouts, error decoding, reset) is
:mod:`fiberflow.host.devices.shell_driver`,
which the board device shares, as it does the host's side of kernel jobs
(:mod:`fiberflow.host.devices.shell_jobs`).

Results are bit-identical to the ``"emu"`` device for every tile shape. ``last_stats`` comes
from the shell's counters (``estimated=False``): the firmware's cycle count for the job, the
bytes the DMA engines moved, each lane's busy and stall cycles.

Tiles must fit the lanes' buffers. ``put`` (and a non-resident ``ff.spmv``) choose the tile
shape when none is given (:meth:`RtlDevice.pack_to_fit`): a row tile's y block and a column
tile's x slice fit (SpMV), and rows are cut until every tile's bytes fit a tile buffer. An SpMM
whose B / C rows do not fit with those tiles runs as several jobs over column blocks of B. An
explicit ``tile=`` whose slices cannot fit is refused by ``put`` (:meth:`RtlDevice.check_tile`,
a ``TileShapeError`` naming the largest tile that fits); one whose nonzeros overflow a tile
buffer ends in a ``DeviceError`` (the firmware's TOO_BIG).

Threads: one device may be shared by several threads. Every method takes the device's lock
(an ``RLock``), so calls run one at a time and each job has the shell to itself; a job's
doorbell rings at ``wait``, not at ``submit``. A wait holds the lock until its job is done.

Interrupts and timeouts: the host reads the wall clock every few tens of milliseconds of
simulation, so ``timeout=`` holds to about that, for the whole call (every column block of a
split SpMM). A timeout, a failed job or a ``KeyboardInterrupt`` during a wait resets the shell
(firmware reloaded, faults cleared) before the error reaches the caller: the next call runs.
A job running longer than half a second shows its simulated cycles in a progress bar.

Fault injection for tests: :meth:`RtlDevice.inject` (``"dma_error"``, ``"hang_ddr"``,
``"hang_lanes"``, ``"hang_cpu"``, ``None`` to clear); every reset clears them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError, ToolchainError
from fiberflow.host import energy, stats
from fiberflow.host.devices.device import DEFAULT_TIMEOUT, Buffer
from fiberflow.host.devices.shell_jobs import ShellDeviceMethods, ShellJobs, check_timeout, guarded

__all__ = ["RtlDevice"]

_VTYPE = {"float32": "fp32", "int32": "int32"}
MAX_LANES = 8  # firmware/ffjb.c: MAX_LANES


def _value_type(dtype: Any) -> str:
    """The lanes' value type for ``dtype`` (a type or a tuple of them): "fp32", "int32" or
    "fp32+int32"; a DeviceError for anything else."""
    names = list(dtype) if isinstance(dtype, (tuple, list)) else [dtype]
    try:
        kinds = {_VTYPE[np.dtype(d).name] for d in names}
    except (TypeError, KeyError):
        kinds = set()
    if not names or not kinds:
        raise DeviceError(
            f"dtype must be 'float32', 'int32' or both as a tuple (the types the lanes "
            f"compute in), not {dtype!r}"
        )
    return "+".join(sorted(kinds, key=["fp32", "int32"].index))


class RtlDevice(ShellDeviceMethods):
    """The cycle-accurate device. Options (all keywords):

    ``lanes`` (4), ``dtype`` ("float32", "int32" or both as a tuple: the lanes' arithmetic),
    ``dma_engines``, ``bus_bits``, ``tile_bytes``, ``x_bytes``, ``y_bytes``, ``max_k``,
    ``ram_bytes`` (default: the overlay's own, :class:`fiberflow.overlay.shell.top.ShellConfig`, the
    same overlay ``fiberflow build`` makes), ``board`` ("pynq-z2": the DDR model and clock),
    ``ddr`` (a :class:`fiberflow.host.devices.rtl.DdrModel`, overriding the board's),
    ``board_power_w`` (the board's measured power in watts, for ``RunStats.energy_j``).

    Thread-safe: every method holds the device's lock, so threads sharing the device take
    turns (see the module docstring). A closed device refuses every call with a DeviceError.
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
        board_power_w: float | None = None,
    ) -> None:
        from fiberflow import boards
        from fiberflow.boards.build import with_defaults

        try:
            from fiberflow.host.devices.rtl import DdrModel, RtlShell
            from fiberflow.overlay.shell.top import ShellConfig
        except ImportError as exc:
            raise ToolchainError(
                f"the rtl device needs the hardware toolchain ({exc}); install it with: "
                "pip install 'fiberflow[hw]'"
            ) from None

        self._lock = threading.RLock()
        self._closed = True  # until the shell is made
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
            raise DeviceError(
                f"lanes must be an integer from 1 to {MAX_LANES} (what the firmware's job walker "
                f"keeps state for), not {lanes!r}"
            )
        vt = _value_type(dtype)
        given = {
            "dma_engines": dma_engines,
            "bus_bits": bus_bits,
            "tile_bytes": tile_bytes,
            "x_bytes": x_bytes,
            "y_bytes": y_bytes,
            "max_k": max_k,
            "ram_bytes": ram_bytes,
        }
        for key, value in given.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise DeviceError(f"ff.open('rtl'): {key} must be an integer, not {value!r}")
        if not isinstance(board, (str, os.PathLike)):
            raise DeviceError(
                f"board must be a board name such as 'pynq-z2' or a board file's path, "
                f"not {board!r}"
            )
        b = boards.load(board)
        try:
            # the board's default overlay (bus width, DMA engines), as a build makes it
            chosen = {"lanes": lanes, **{k: v for k, v in given.items() if v is not None}}
            self.config = ShellConfig(
                value_type=vt, kernels=("spmv", "spmm"), **with_defaults(b, chosen)
            )
        except (TypeError, ValueError) as exc:
            raise DeviceError(f"ff.open('rtl'): {exc}") from None
        if ddr is not None and not isinstance(ddr, DdrModel):
            raise DeviceError(
                f"ddr must be a fiberflow.host.devices.rtl.DdrModel, not {type(ddr).__name__}"
            )
        self.ddr = ddr if ddr is not None else DdrModel(**b.ddr_model())
        self.dtypes = tuple(np.dtype(n) for n in vt.replace("fp32", "float32").split("+"))
        self.lanes = int(lanes)
        self.clock_mhz = float(b.fabric_clock_mhz)
        self.energy = energy.model(b, board_power_w)
        self.bus_bytes_per_cycle = self.config.bus_bytes * self.config.dma_engines
        self.last_stats: stats.RunStats | None = None
        try:
            self.shell = RtlShell(self.config, self.ddr)
        except ValueError as exc:  # a parameter the generated lanes or DMA cannot take
            raise DeviceError(f"ff.open('rtl'): {exc}") from None
        self.shell.clock_mhz = self.clock_mhz
        self.driver = self.shell.driver  # one driver per shell: one job sequence
        self.driver.load_firmware()
        self._jobs = ShellJobs(self, self.driver)
        self._closed = False

    # -- memory -------------------------------------------------------------------------------

    @guarded
    def alloc(self, nbytes: int) -> Buffer:
        return self.shell.alloc(max(int(nbytes), 1))

    @guarded
    def free(self, buffer: Buffer) -> None:
        self.shell.free(buffer)

    @property
    @guarded
    def memory_used(self) -> int:
        return sum(b.nbytes for b in self.shell._buffers.values())

    @guarded
    def find(self, address: int) -> Buffer | None:
        """The live buffer that holds device address ``address``, if any."""
        for b in self.shell._buffers.values():
            if b.address <= address < b.address + b.nbytes:
                return b
        return None

    # -- control ------------------------------------------------------------------------------

    @guarded
    def read_reg(self, offset: int) -> int:
        return self.shell.read_reg(offset)

    @guarded
    def write_reg(self, offset: int, value: int) -> None:
        self.shell.write_reg(offset, value)

    @guarded
    def load_overlay(self, bitstream: Any = None, firmware: Any = None) -> None:
        """The overlay is the Verilated model built at ``open``; ``firmware`` (bytes) replaces
        the control firmware (default: the shipped image)."""
        if bitstream is not None:
            raise DeviceError(
                "the rtl device simulates the overlay it was opened with; pass its parameters "
                "to ff.open('rtl', ...) instead of a bitstream"
            )
        self.driver.load_firmware(firmware)

    @guarded
    def reset(self) -> None:
        """Hold the control CPU and lanes, clear every injected fault, let the DMA engines
        finish their bursts in flight and hold them, reload the firmware and release. Buffers
        stay valid; jobs submitted and not yet waited for are forgotten."""
        self.driver.reset()
        self._jobs.forget()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (every other method then raises DeviceError)."""
        return self._closed

    def close(self) -> None:
        """Free the simulation and its buffers; later calls raise DeviceError."""
        with self._lock:
            self._closed = True
            if getattr(self, "shell", None) is not None:
                self.shell.close()

    def __enter__(self) -> RtlDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fault injection (tests) --------------------------------------------------------------

    @guarded
    def inject(
        self, fault: str | None, buffer: Buffer | None = None, *, after_beats: int = 0
    ) -> None:
        """Make the next job fail: ``"dma_error"`` (SLVERR for bursts touching ``buffer``),
        ``"hang_ddr"`` (DDR stops answering: DMA watchdog; with ``after_beats``, once that many
        more data beats have moved, so the reset lands mid-burst), ``"hang_lanes"`` (lanes never
        finish: lane watchdog), ``"hang_cpu"`` (the firmware stops answering: the host's
        timeout). ``None`` clears every fault; so does every reset: :meth:`reset`, and the
        one after a failed or timed-out job (so a fault fails one job)."""
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
            s.hang_ddr_after(after_beats)
        elif fault == "hang_lanes":
            s.hold_lanes(True)
        elif fault == "hang_cpu":
            s.hold_cpu(True)
        else:
            raise DeviceError(
                f"unknown fault {fault!r}; choose dma_error, hang_ddr, hang_lanes or hang_cpu"
            )

    # -- jobs ---------------------------------------------------------------------------------

    @guarded
    def submit(self, job: Buffer) -> int:
        """Check and queue the job whose descriptor is in ``job``; it runs at :meth:`wait`
        (see :class:`ShellJobs`: an SpMM whose B / C rows do not fit the lanes' buffers with
        this matrix's tiles runs there in column blocks, one after the other)."""
        if job.device is not self.shell or job.freed:
            raise DeviceError(f"{job} is not a live buffer of this device")
        return self._jobs.submit(job)

    @guarded
    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> stats.RunStats:
        """Run job ``job_id`` and return its statistics (also ``last_stats``), within
        ``timeout`` seconds for the whole call. A failed or timed-out job raises DeviceError /
        DeviceTimeoutError; the device is then reset and ready for the next job."""
        timeout = check_timeout(timeout)
        before = self.shell.rule_breaches
        self.last_counters, self.last_stats = self._jobs.wait(job_id, timeout)
        self.shell.check_rules(before)
        return self.last_stats

    # -- resident matrices --------------------------------------------------------------------

    @guarded
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
        if getattr(self, "config", None) is None:
            return "RtlDevice(not opened)"
        c = self.config
        return (
            f"RtlDevice(lanes={c.lanes}, value_type={c.value_type}, dma_engines={c.dma_engines}, "
            f"bus_bits={c.bus_bits}, tile_bytes={c.tile_bytes}, x_bytes={c.x_bytes}, "
            f"y_bytes={c.y_bytes}, max_k={c.max_k})"
        )
