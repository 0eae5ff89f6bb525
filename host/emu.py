"""The functional emulator: a device that computes exactly what the hardware computes.

``ff.open("emu")`` returns an :class:`EmuDevice`. It implements the :class:`Device` protocol
with host memory standing in for DDR: buffers get addresses in a flat 64-bit device address
space, a job descriptor names its operands by those addresses, and ``submit`` runs the job's
tile schedule in C (``cemu.c``) in the order ``docs/emulator.md`` fixes. Statistics are the
analytic estimate of :func:`fiberflow.host.stats.estimate`.

The arithmetic policy lives in one place, :data:`FP32_POLICY`, and is handed to the C kernels
with every job: it must match the hardware ALU (overlay primitives).
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError
from fiberflow.host import dtypes, stats
from fiberflow.host import job as jobs
from fiberflow.host.device import DEFAULT_TIMEOUT, Buffer
from fiberflow.host.resident import ResidentMatrix, make_resident

try:
    from fiberflow.host._cemu import ffi, lib
except ImportError:  # pragma: no cover - only when the package was not built
    ffi = lib = None

# float32 arithmetic of the (+, *) ALU; it must match the overlay's fp32 unit (overlay/fp32.py,
# docs/primitives.md), which flushes subnormals and makes every NaN canonical.
# "subnormals": "flush" reads subnormal operands as zeros of the same sign and returns zeros of
# the same sign for results IEEE would give as subnormals; "keep" is full IEEE gradual
# underflow. "nan": "canonical" makes every NaN an operation produces the quiet NaN 0x7fc00000;
# "propagate" keeps whatever the host's float unit produces (which NaN payload survives then
# depends on operand order, which the compiler may swap: only NaN-ness is defined).
FP32_POLICY = {"subnormals": "flush", "nan": "canonical"}

# PYNQ-Z2 defaults (docs/emulator.md): 4 lanes at 100 MHz; the bus brings 16 bytes per cycle
# (two 64-bit HP ports), 1.6 GB/s, below the board's 16-bit DDR3 peak of about 2.1 GB/s.
DEFAULT_LANES = 4
DEFAULT_CLOCK_MHZ = 100.0
DEFAULT_BUS_BYTES_PER_CYCLE = 16
DEFAULT_MEMORY_BYTES = 2 << 30
BASE_ADDRESS = 0x1000_0000
PAGE = 4096
REGISTER_SPACE = 0x1000

ERRORS = {
    -1: "A's image is not a 2-D CSR image of the job's value type and shape",
    -2: "a tile-list entry is outside A's tile directory",
    -3: "a tile or one of its sections lies outside A's image",
    -4: "a segment array in A's image is not a valid offset list",
    -5: "a coordinate in A's image lies outside its tile",
}


class EmuDevice:
    """The functional emulator device. Options: ``lanes``, ``clock_mhz``,
    ``bus_bytes_per_cycle`` (the performance model), ``memory_bytes`` (device memory size)."""

    name = "emu"

    def __init__(
        self,
        *,
        lanes: int = DEFAULT_LANES,
        clock_mhz: float = DEFAULT_CLOCK_MHZ,
        bus_bytes_per_cycle: int = DEFAULT_BUS_BYTES_PER_CYCLE,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if lib is None:  # pragma: no cover
            raise DeviceError(
                "the emulator's C kernels were not built; reinstall fiberflow with a C compiler "
                "present (pip install -e .)"
            )
        for name, value in (("lanes", lanes), ("bus_bytes_per_cycle", bus_bytes_per_cycle)):
            if not isinstance(value, (int, np.integer)) or not 1 <= value <= 65535:
                raise DeviceError(f"{name} must be an integer from 1 to 65535, not {value!r}")
        if not clock_mhz > 0:
            raise DeviceError(f"clock_mhz must be positive, not {clock_mhz!r}")
        self.lanes = int(lanes)
        self.clock_mhz = float(clock_mhz)
        self.bus_bytes_per_cycle = int(bus_bytes_per_cycle)
        self.memory_bytes = int(memory_bytes)
        self.last_stats: stats.RunStats | None = None
        self.overlay: Any = None
        self.firmware: Any = None
        self._starts: list[int] = []  # sorted buffer addresses
        self._buffers: dict[int, Buffer] = {}
        self._next = BASE_ADDRESS
        self._used = 0
        self._regs: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._done: dict[int, stats.RunStats] = {}

    # -- memory -------------------------------------------------------------------------------

    def alloc(self, nbytes: int) -> Buffer:
        nbytes = int(nbytes)
        if nbytes < 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes")
        if self._used + nbytes > self.memory_bytes:
            raise DeviceError(
                f"out of device memory: {nbytes} bytes requested, {self.memory_bytes - self._used}"
                f" of {self.memory_bytes} free; free resident matrices you no longer need, or "
                "open the device with a larger memory_bytes="
            )
        buf = Buffer(np.zeros(nbytes, dtype=np.uint8), self._next, self)
        self._next += -(-max(nbytes, 1) // PAGE) * PAGE
        self._used += nbytes
        self._buffers[buf.address] = buf
        bisect.insort(self._starts, buf.address)
        return buf

    def free(self, buffer: Buffer) -> None:
        if buffer.device is not self or buffer.freed or buffer.address not in self._buffers:
            raise DeviceError(f"{buffer} is not a live buffer of this device")
        del self._buffers[buffer.address]
        self._starts.remove(buffer.address)
        self._used -= buffer.nbytes
        buffer.freed = True

    def _resolve(self, address: int, nbytes: int, what: str) -> np.ndarray:
        """The bytes ``address .. address + nbytes`` of device memory, inside one buffer."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0:
            buf = self._buffers[self._starts[i]]
            start = address - buf.address
            if start + nbytes <= buf.nbytes:
                return buf.array[start : start + nbytes]
        raise DeviceError(
            f"the job's {what} ({nbytes} bytes at {address:#x}) is not inside one device buffer"
        )

    @property
    def memory_used(self) -> int:
        return self._used

    # -- control ------------------------------------------------------------------------------

    def read_reg(self, offset: int) -> int:
        self._check_reg(offset)
        return self._regs.get(offset, 0)

    def write_reg(self, offset: int, value: int) -> None:
        # The emulator has no control registers with effects (jobs arrive through submit);
        # the register space is plain storage so host code using the protocol runs unchanged.
        self._check_reg(offset)
        self._regs[offset] = int(value) & 0xFFFF_FFFF

    @staticmethod
    def _check_reg(offset: int) -> None:
        if offset % 4 or not 0 <= offset < REGISTER_SPACE:
            raise DeviceError(
                f"register offset {offset:#x} must be 4-byte aligned and below {REGISTER_SPACE:#x}"
            )

    def load_overlay(self, bitstream: Any = None, firmware: Any = None) -> None:
        """The emulator needs neither; both are recorded so callers can check what was asked."""
        self.overlay, self.firmware = bitstream, firmware

    def reset(self) -> None:
        self._done.clear()
        self._regs.clear()

    def close(self) -> None:
        for buf in list(self._buffers.values()):
            self.free(buf)
        self.reset()

    def __enter__(self) -> EmuDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, job: Buffer) -> int:
        """Run the job now (the emulator is synchronous) and queue its statistics for wait()."""
        if job.device is not self or job.freed:
            raise DeviceError(f"{job} is not a live buffer of this device")
        desc = jobs.parse(job.array)
        if desc.lanes != self.lanes:
            raise DeviceError(f"the job schedules {desc.lanes} lanes; this device has {self.lanes}")
        image = self._resolve(desc.a_addr, desc.a_bytes, "matrix image")
        directory = jobs.Directory.from_bytes(image)
        lane_of = jobs.check_schedule(desc, directory)
        x = self._resolve(desc.x_addr, desc.n * desc.x_row_bytes, "dense input")
        y = self._resolve(desc.y_addr, desc.m * desc.y_row_bytes, "output")
        if not desc.flags & jobs.FLAG_ACCUMULATE:
            y[:] = 0
        tiles = np.ascontiguousarray(desc.tile_list, dtype=np.uint32)
        cjob = ffi.new(
            "ff_emu_job *",
            {
                "image": ffi.from_buffer("uint8_t[]", image),
                "image_bytes": desc.a_bytes,
                "tiles": ffi.from_buffer("uint32_t[]", tiles),
                "n_tiles": len(tiles),
                "x": ffi.from_buffer("uint8_t[]", x),
                "y": ffi.from_buffer("uint8_t[]", y),
                "m": desc.m,
                "n": desc.n,
                "k": desc.k,
                "dtype": dtypes.CODES[desc.dtype],
                "ftz": FP32_POLICY["subnormals"] == "flush",
                "canonical_nan": FP32_POLICY["nan"] == "canonical",
            },
        )
        bad = ffi.new("int64_t *")
        rc = lib.ff_emu_run(cjob, bad)
        if rc:
            raise DeviceError(
                f"job failed at tile-list entry {bad[0]}: {ERRORS.get(rc, f'error {rc}')}; "
                "the output is incomplete. Put the matrix on the device again"
            )
        tl = desc.tile_list.astype(np.int64)
        col_ext = np.minimum(
            directory.tile_cols, desc.n - directory.col_tile[tl] * directory.tile_cols
        )
        y_passes = 2 if desc.flags & jobs.FLAG_ACCUMULATE else 1
        dma = (
            desc.total_bytes
            + directory.head_bytes
            + int(directory.nbytes.sum())
            + int(col_ext.sum()) * desc.x_row_bytes
            + y_passes * desc.m * desc.y_row_bytes
        )
        result = stats.estimate(
            kernel=desc.kernel,
            k=desc.k,
            lanes=self.lanes,
            lane_of_tile=lane_of,
            tile_nvals=directory.nvals[tl],
            dma_bytes=dma,
            bus_bytes_per_cycle=self.bus_bytes_per_cycle,
            clock_mhz=self.clock_mhz,
            device=self.name,
        )
        job_id = next(self._ids)
        self._done[job_id] = result
        return job_id

    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> stats.RunStats:
        """Jobs finish inside submit() here, so this never waits; ``timeout`` is accepted for
        the protocol's sake."""
        if timeout is not None and not timeout > 0:
            raise DeviceError(f"timeout must be positive, not {timeout!r}")
        if job_id not in self._done:
            raise DeviceError(f"no job {job_id} was submitted to this device (or it was reset)")
        self.last_stats = self._done.pop(job_id)
        return self.last_stats

    # -- resident matrices --------------------------------------------------------------------

    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> ResidentMatrix:
        """Pack ``A`` once and keep its image in device memory. ``tile`` is the tile shape
        (default (8192, 65536), with shorter row tiles for short matrices so that every lane
        gets work); ``dtype`` converts explicitly ("float32" or "int32")."""
        return make_resident(self, A, tile, dtype)

    def __repr__(self) -> str:
        return (
            f"EmuDevice(lanes={self.lanes}, clock_mhz={self.clock_mhz:g}, "
            f"bus_bytes_per_cycle={self.bus_bytes_per_cycle}, buffers={len(self._buffers)})"
        )
