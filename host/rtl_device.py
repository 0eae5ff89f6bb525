"""The ``"rtl"`` device: the generated shell in Verilator, running the real firmware.

``ff.open("rtl", lanes=4, dtype="float32")`` builds (or takes from the cache) a Verilator model
of the shell of :mod:`fiberflow.overlay.top` with SpMV/SpMM lanes, loads the shipped firmware
and runs every job cycle by cycle: the firmware walks the FFJB descriptor of ``docs/jobs.md``
(``firmware/ffjb.c``), its DMA engines read the operands from the simulated DDR, which serves
them straight from the device buffers' numpy arrays (no copies). The job protocol itself
(doorbell, waits with timeouts, error decoding, reset) is :mod:`fiberflow.host.shell_driver`,
which the board device shares.

Results are bit-identical to the ``"emu"`` device for every tile shape. ``last_stats`` comes
from the shell's counters (``estimated=False``): the firmware's cycle count for the job, the
bytes the DMA engines moved, each lane's busy and stall cycles.

Tiles must fit the lanes' buffers. ``put`` (and a non-resident ``ff.spmv``) choose the tile
shape when none is given (:meth:`RtlDevice.pack_to_fit`): a row tile's y block and a column
tile's x / B slice fit for every ``k`` up to ``max_k``, and rows are halved until every tile's
bytes fit a tile buffer. An explicit ``tile=`` that does not fit ends in a ``DeviceError``.

Fault injection for tests: :meth:`RtlDevice.inject` (``"dma_error"``, ``"hang_ddr"``,
``"hang_lanes"``, ``"hang_cpu"``, ``None`` to clear).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fiberflow.errors import DeviceError
from fiberflow.host import job as jobs
from fiberflow.host import pack as packing
from fiberflow.host import stats
from fiberflow.host.device import DEFAULT_TIMEOUT, Buffer
from fiberflow.host.resident import ResidentMatrix, default_tile, make_resident
from fiberflow.host.shell_driver import ShellDriver

__all__ = ["RtlDevice"]

_VTYPE = {"float32": "fp32", "int32": "int32"}


class RtlDevice:
    """The cycle-accurate device. Options (all keywords):

    ``lanes`` (4), ``dtype`` ("float32", "int32" or both as a tuple: the lanes' arithmetic),
    ``dma_engines``
    (1), ``bus_bits`` (64), ``tile_bytes`` (16384), ``x_bytes`` (16384), ``y_bytes`` (8192),
    ``max_k`` (8), ``ram_bytes`` (8192), ``board`` ("pynq-z2": the DDR model and clock),
    ``ddr`` (a :class:`fiberflow.host.rtl.DdrModel`, overriding the board's).
    """

    name = "rtl"

    def __init__(
        self,
        *,
        lanes: int = 4,
        dtype: str = "float32",
        dma_engines: int = 1,
        bus_bits: int = 64,
        tile_bytes: int = 16384,
        x_bytes: int = 16384,
        y_bytes: int = 8192,
        max_k: int = 8,
        ram_bytes: int = 8192,
        board: str = "pynq-z2",
        ddr: Any = None,
    ) -> None:
        from fiberflow import boards
        from fiberflow.host.rtl import DdrModel, RtlShell
        from fiberflow.overlay.top import ShellConfig

        names = [dtype] if isinstance(dtype, str) else list(dtype)
        if not names or any(str(d) not in _VTYPE for d in names):
            raise DeviceError(
                f"dtype must be 'float32', 'int32' or both as a tuple, not {dtype!r}"
            )
        vt = "+".join(sorted({_VTYPE[str(d)] for d in names}, key=["fp32", "int32"].index))
        try:
            self.config = ShellConfig(
                lanes=lanes,
                value_type=vt,
                dma_engines=dma_engines,
                bus_bits=bus_bits,
                tile_bytes=tile_bytes,
                x_bytes=x_bytes,
                y_bytes=y_bytes,
                max_k=max_k,
                ram_bytes=ram_bytes,
                kernels=("spmv", "spmm"),
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
        self.driver = ShellDriver(self.shell)
        self.driver.load_firmware()
        self._jobs: dict[int, tuple[str, int, int, int]] = {}

    # -- memory -------------------------------------------------------------------------------

    def alloc(self, nbytes: int) -> Buffer:
        return self.shell.alloc(max(int(nbytes), 1))

    def free(self, buffer: Buffer) -> None:
        self.shell.free(buffer)

    @property
    def memory_used(self) -> int:
        return sum(b.nbytes for b in self.shell._buffers.values())

    def _find(self, address: int) -> Buffer | None:
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
        self._jobs.clear()

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
        """Ring the firmware's doorbell for the descriptor in ``job``. The firmware checks the
        descriptor; the host only reads what it needs for the statistics."""
        if job.device is not self.shell or job.freed:
            raise DeviceError(f"{job} is not a live buffer of this device")
        info = ("spmv", 1, 0, 0)
        try:
            desc = jobs.parse(job.array)
        except DeviceError:
            desc = None  # malformed: the firmware says what is wrong
        if desc is not None:
            if desc.kernel == "spmm" and desc.k > self.config.max_k:
                raise DeviceError(
                    f"this rtl overlay accumulates at most max_k={self.config.max_k} columns of "
                    f"B, the job has k={desc.k}; open the device with a larger max_k= or split B"
                )
            nnz = 0
            img = self._find(desc.a_addr)
            if img is not None and desc.a_addr == img.address:
                try:
                    d = jobs.Directory.from_bytes(img.array)
                    tl = desc.tile_list.astype(np.int64)
                    nnz = int(d.nvals[tl[tl < len(d.nvals)]].sum())
                except DeviceError:
                    pass
            info = (desc.kernel, desc.k, nnz, len(desc.tile_list))
        seq = self.driver.submit(job)
        self._jobs[seq] = info
        return seq

    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> stats.RunStats:
        if timeout is None or not timeout > 0:
            raise DeviceError(f"timeout must be positive seconds, not {timeout!r}")
        if job_id not in self._jobs:
            raise DeviceError(f"no job {job_id} was submitted to this device (or it was reset)")
        kernel, k, nnz, tiles = self._jobs.pop(job_id)
        counters = self.driver.wait(job_id, timeout)
        self.last_counters = counters
        self.last_stats = self.driver.run_stats(
            counters,
            kernel=kernel,
            k=k,
            nnz=nnz,
            tiles=tiles,
            bus_bytes_per_cycle=self.bus_bytes_per_cycle,
            clock_mhz=self.clock_mhz,
            device=self.name,
        )
        return self.last_stats

    # -- resident matrices --------------------------------------------------------------------

    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> ResidentMatrix:
        """Pack ``A`` once and keep its image in the simulated DDR; ``tile=None`` picks a tile
        shape that fits the lanes' buffers (:meth:`pack_to_fit`)."""
        return make_resident(self, A, tile, dtype)

    def tile_limits(self) -> tuple[int, int]:
        """The largest (rows, cols) a tile may span so that its y block and x / B slice fit
        the lanes' buffers for every k up to max_k."""
        c = self.config
        per = 4 * c.max_k
        step = max(c.bus_bytes // 4, 1)  # whole beats: slices stay bus-aligned
        return (c.y_bytes // per) // step * step, (c.x_bytes // per) // step * step

    def pack_to_fit(self, t: Any) -> Any:
        """Pack tensor ``t`` with the largest tiles that fit this overlay's buffers."""
        if t.dtype not in self.dtypes:
            have = " and ".join(str(d) for d in self.dtypes)
            raise DeviceError(
                f"this rtl overlay computes in {have}; the matrix is {t.dtype}. Open "
                f"ff.open('rtl', dtype='{t.dtype}') or convert the matrix"
            )
        rmax, cmax = self.tile_limits()
        rows = min(rmax, default_tile(t.shape, self.lanes)[0])
        while True:
            img = packing.pack(t, (max(rows, 1), cmax))
            biggest = int(jobs.Directory.of(img).nbytes.max()) if img.n_tiles else 0
            if biggest <= self.config.tile_bytes or rows <= 1:
                break
            rows //= 2
        if biggest > self.config.tile_bytes:
            raise DeviceError(
                f"a single row of this matrix needs {biggest} bytes of tile, more than the "
                f"{self.config.tile_bytes}-byte tile buffers; open the device with a larger "
                "tile_bytes="
            )
        return img

    def __repr__(self) -> str:
        c = self.config
        return (
            f"RtlDevice(lanes={c.lanes}, value_type={c.value_type}, dma_engines={c.dma_engines}, "
            f"bus_bits={c.bus_bits}, tile_bytes={c.tile_bytes}, x_bytes={c.x_bytes}, "
            f"y_bytes={c.y_bytes}, max_k={c.max_k})"
        )

