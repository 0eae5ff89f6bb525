"""The one protocol every device implements: emu (functional), rtl (Verilator) and pynq (board).

A device offers device-visible memory, registers, an overlay (and firmware) to load, and a
job queue: the host writes a job descriptor (:mod:`fiberflow.host.images.job`) and its operands into
device buffers, ``submit``\\ s it and ``wait``\\ s for it with a timeout. Kernel code
(:mod:`fiberflow.host.kernels`) only uses this protocol, so it runs unchanged on every device.

Buffers are numpy arrays, as in PYNQ: ``buf.array`` is a uint8 view of the bytes the device
sees at ``buf.address``. No device is global: open one with ``ff.open`` and pass it around.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fiberflow.errors import DeviceError

if TYPE_CHECKING:
    from fiberflow.host.devices.resident import ResidentMatrix
    from fiberflow.host.stats import RunStats

DEFAULT_TIMEOUT = 60.0  # seconds; every wait has one


class Buffer:
    """A block of device-visible memory.

    ``array`` is a uint8 numpy array over the bytes (on a board, the cache-coherent mapping of
    a contiguous DDR block); ``address`` is where the device sees its first byte. Call
    ``flush()`` after writing from the host and ``invalidate()`` before reading what the device
    wrote (no-ops on emulated devices).
    """

    def __init__(self, array: np.ndarray, address: int, device: Any) -> None:
        self.array = array
        self.address = address
        self.device = device
        self.freed = False

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    def view(self, dtype: Any, count: int | None = None, offset: int = 0) -> np.ndarray:
        """The bytes from ``offset`` as ``count`` items of ``dtype`` (a view, not a copy)."""
        dt = np.dtype(dtype)
        if count is None:
            count = (self.nbytes - offset) // dt.itemsize
        end = offset + count * dt.itemsize
        if offset < 0 or end > self.nbytes:
            raise DeviceError(f"bytes {offset}..{end} lie outside this {self.nbytes}-byte buffer")
        return self.array[offset:end].view(dt)

    def write(self, data: np.ndarray | bytes, offset: int = 0) -> None:
        """Copy ``data`` (any array, taken as its raw bytes) into the buffer at ``offset``."""
        raw = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else as_bytes(data)
        self.view(np.uint8, raw.size, offset)[:] = raw

    def flush(self) -> None:
        pass

    def invalidate(self) -> None:
        pass

    def free(self) -> None:
        self.device.free(self)

    def __repr__(self) -> str:
        return f"Buffer(address={self.address:#x}, nbytes={self.nbytes})"


def as_bytes(a: np.ndarray) -> np.ndarray:
    """The raw bytes of a contiguous array, without a copy when possible."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


@runtime_checkable
class Device(Protocol):
    """What every fiberflow device provides. See ``docs/jobs.md`` for the job it runs."""

    name: str
    lanes: int
    clock_mhz: float
    bus_bytes_per_cycle: int
    last_stats: RunStats | None

    def alloc(self, nbytes: int) -> Buffer:
        """Device-visible memory of ``nbytes`` bytes, zero-filled."""
        ...

    def free(self, buffer: Buffer) -> None:
        """Give a buffer back. Freeing twice is an error."""
        ...

    def read_reg(self, offset: int) -> int:
        """Read the 32-bit register at byte ``offset`` of the control interface."""
        ...

    def write_reg(self, offset: int, value: int) -> None:
        """Write the 32-bit register at byte ``offset`` of the control interface."""
        ...

    def load_overlay(self, bitstream: Any = None, firmware: Any = None) -> None:
        """Load an overlay (bitstream) and the control firmware for the soft CPU."""
        ...

    def submit(self, job: Buffer) -> int:
        """Start the job whose descriptor is at the start of ``job``; return its id."""
        ...

    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> RunStats:
        """Wait for a job to finish, at most ``timeout`` seconds; return its statistics (also
        kept as ``last_stats``). Raises DeviceTimeoutError (after a reset) or DeviceError."""
        ...

    def reset(self) -> None:
        """Abort whatever runs and bring the device to its idle state. Buffers stay valid."""
        ...

    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> ResidentMatrix:
        """Pack a matrix once and keep its DMA image in device memory; pass the handle to
        ``ff.spmv`` / ``ff.spmm`` in place of the matrix."""
        ...

    def close(self) -> None:
        """Free everything the device holds."""
        ...
