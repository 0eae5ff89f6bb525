"""The functional emulator: a device that computes exactly what the hardware computes.

``ff.open("emu")`` returns an :class:`EmuDevice`. It implements the :class:`Device` protocol
with host memory standing in for DDR: buffers get addresses in a flat 64-bit device address
space, a job descriptor names its operands by those addresses, and the job's tile schedule
runs in C (``cemu.c``) in the order ``docs/emulator.md`` fixes. ``submit`` checks the job and
queues it; ``wait`` runs it under its timeout. Statistics come from the cycle model of
:mod:`fiberflow.host.devices.perf_model`, for the overlay the device models (by default its board's
default build; ``ff.open("emu", board=..., **overlay_parameters)``).

The arithmetic policy lives in one place, :data:`FP32_POLICY`, and is handed to the C kernels
with every job: it must match the hardware ALU (overlay primitives).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError, DeviceTimeoutError
from fiberflow.host import args, energy, stats, workers
from fiberflow.host.devices import perf_model
from fiberflow.host.devices.device import DEFAULT_TIMEOUT, Buffer
from fiberflow.host.devices.resident import ResidentMatrix, make_resident
from fiberflow.host.formats import dtypes
from fiberflow.host.images import job as jobs
from fiberflow.overlay import regmap

try:
    from fiberflow.host._cemu import ffi, lib
except ImportError:  # pragma: no cover - only when the package was not built
    ffi = lib = None

# float32 arithmetic of the (+, *) ALU; it must match the overlay's fp32 unit
# (overlay/lanes/fp32.py, docs/primitives.md), which flushes subnormals and makes every NaN
# canonical. "subnormals": "flush" reads subnormal operands as zeros of the same sign and returns
# zeros of the same sign for results IEEE would give as subnormals; "keep" is full IEEE gradual
# underflow. "nan": "canonical" makes every NaN an operation produces the quiet NaN 0x7fc00000;
# "propagate" keeps whatever the host's float unit produces (which NaN payload survives then
# depends on operand order, which the compiler may swap: only NaN-ness is defined).
FP32_POLICY = {"subnormals": "flush", "nan": "canonical"}

# The overlay modelled when no option says otherwise: the default build of the board
# (fiberflow.boards.build.default_params over ShellConfig's defaults: 4 lanes, a bus as wide as
# the board's HP ports and as few DMA engines as reach its DDR bandwidth; PYNQ-Z2: two 64-bit
# engines, 16 bytes per cycle at 100 MHz).
DEFAULT_BOARD = "pynq-z2"
DEFAULT_LANES = 4
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
    -6: "the job's m, n or k do not fit its x and y buffers (or an operand is misaligned)",
    -8: "the host ran out of memory for the job's bookkeeping",
}
E_TIMEOUT = -7  # cemu.c: the deadline passed

# Where a descriptor holds x_addr and y_addr (two little-endian u64); descriptors parsed are
# remembered by their other bytes, these change with every call.
XY_ADDR = slice(jobs.HEADER.fields["x_addr"][1], jobs.HEADER.fields["y_addr"][1] + 8)
DESCRIPTORS_KEPT = 64

# Schedules remembered per resident image (their checked lanes and statistics); a small
# bound, since a matrix is normally run with one or two schedules.
PLANS_PER_IMAGE = 8


@dataclass
class _Image:
    """What submit learnt from one image's header and directory, reused while those bytes
    stay the same (the image is compared each time, so a changed image is read again)."""

    head: bytes  # the header, mode table and directory, as read
    nbytes: int  # the image length the job gave
    directory: jobs.Directory
    plans: dict[tuple[Any, ...], stats.RunStats] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelledOverlay:
    """The overlay an emu device models: ``ShellConfig``'s fields that bear on tile shapes
    and cycles, and the board's fabric clock."""

    lanes: int
    bus_bytes: int  # per DMA engine, per cycle
    dma_engines: int
    tile_bytes: int
    x_bytes: int
    y_bytes: int
    max_k: int
    clock_mhz: float
    port_bytes_per_cycle: float  # the board's: one HP port's bandwidth, at the fabric clock
    ddr_bytes_per_cycle: float  # ... and its DDR's, shared by every port

    @property
    def engine_bytes_per_cycle(self) -> float:
        """What each engine's transfers move per cycle, all engines busy."""
        return min(
            self.bus_bytes, self.port_bytes_per_cycle, self.ddr_bytes_per_cycle / self.dma_engines
        )


# ShellConfig's defaults (overlay/shell/top.py), repeated so the emulator needs no hardware
# toolchain; tests/test_emu_model.py checks that they agree.
SHELL_DEFAULTS = {
    "dma_engines": 1,
    "bus_bits": 64,
    "tile_bytes": 32768,
    "x_bytes": 32768,
    "y_bytes": 16384,
    "max_k": 8,
}


def _overlay(
    board: Any, *, lanes: int, bus_bytes_per_cycle: int | None, given: dict[str, Any]
) -> tuple[ModelledOverlay, Any]:
    """The overlay of ``board``'s default build with the parameters ``given`` (None: not
    given), checked as the shell checks them; and the board."""
    from fiberflow.boards import load
    from fiberflow.boards.build import default_params
    from fiberflow.errors import FiberflowError

    try:
        b = load(board)
    except FiberflowError as exc:
        raise DeviceError(f"ff.open('emu'): {exc}") from None
    p = {**SHELL_DEFAULTS, **default_params(b, lanes)}
    for key, value in given.items():
        if value is not None:
            p[key] = args.integer(value, key, DeviceError)
    if bus_bytes_per_cycle is not None:
        if given["bus_bits"] is not None:
            raise DeviceError("give bus_bits (per DMA engine) or bus_bytes_per_cycle, not both")
        # The whole bus, shared evenly by the engines (at least one byte each).
        p["bus_bits"] = 8 * max(int(bus_bytes_per_cycle) // p["dma_engines"], 1)
    elif p["bus_bits"] not in (64, 128):
        raise DeviceError(f"bus_bits must be 64 or 128, not {p['bus_bits']!r}")
    if not 1 <= lanes <= 8:
        raise DeviceError(f"the overlay's lanes must be 1 to 8 (the firmware's limit), not {lanes}")
    if not 1 <= p["dma_engines"] <= lanes:
        raise DeviceError(f"dma_engines must be 1 to the number of lanes, not {p['dma_engines']}")
    for key in ("tile_bytes", "x_bytes", "y_bytes"):
        v = p[key]
        if v < 256 or v & (v - 1):
            raise DeviceError(f"{key} must be a power of two of at least 256, not {v}")
    if p["max_k"] < 1:
        raise DeviceError(f"max_k must be a positive integer, not {p['max_k']}")
    # An explicit bus_bytes_per_cycle is a what-if: its engines are not held to the board's.
    unbound = float("inf") if bus_bytes_per_cycle is not None else None
    overlay = ModelledOverlay(
        lanes=lanes,
        bus_bytes=p["bus_bits"] // 8,
        dma_engines=p["dma_engines"],
        tile_bytes=p["tile_bytes"],
        x_bytes=p["x_bytes"],
        y_bytes=p["y_bytes"],
        max_k=p["max_k"],
        clock_mhz=float(b.fabric_clock_mhz),
        port_bytes_per_cycle=unbound or b.hp[0].bytes_per_cycle(b.fabric_clock_mhz),
        ddr_bytes_per_cycle=unbound or float(b.ddr.bytes_per_cycle),
    )
    return overlay, b


@dataclass(frozen=True)
class _Pending:
    """A submitted job, run by wait()."""

    desc: jobs.Descriptor
    tiles: np.ndarray
    stats: stats.RunStats


class EmuDevice:
    """The functional emulator device. Options: ``board`` (a board name or file: its default
    overlay and clock, "pynq-z2"), the overlay's parameters as ``ff.open("rtl")`` takes them
    (``lanes``, ``dma_engines``, ``bus_bits``, ``tile_bytes``, ``x_bytes``, ``y_bytes``,
    ``max_k``), ``clock_mhz`` (the board's fabric clock), ``bus_bytes_per_cycle`` (the whole
    bus: sets ``bus_bits`` of each engine, and the engines then move that many bytes per
    cycle whatever the board's ports and DDR allow, for what-if estimates), ``memory_bytes``
    (device memory size), ``board_power_w`` (the board's measured power in watts, in place of
    the board file's figure in every run's ``energy_j``). They choose the tile shapes (as the
    hardware packs) and the cycle model's overlay; the engines otherwise move at most what the
    board's HP ports and DDR take.

    Thread-safe. A re-entrant lock guards the allocator, the register file and the job
    queue; a second lock lets one job run at a time, in ``wait``, which counts the time spent
    waiting for another thread's job against its ``timeout``. Every call gives the result it
    would give on a device used by one thread, and ``memory_used`` counts exactly the live
    buffers. Buffers can be allocated and freed while a job runs: a buffer freed under a
    running job leaves the books at once, but its host memory lives until the job ends, and
    its addresses are never given out again, so the job cannot touch any other buffer.
    ``close()`` frees everything, also under a running job (whose ``wait`` then raises
    DeviceError); any later call, in any thread, raises DeviceError. ``last_stats`` is the
    last job waited for by any thread (``wait`` returns each job's own). The C kernel releases
    the GIL, so other threads run Python meanwhile.
    """

    name = "emu"

    def __init__(
        self,
        *,
        lanes: int = DEFAULT_LANES,
        clock_mhz: float | None = None,
        bus_bytes_per_cycle: int | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        board: Any = DEFAULT_BOARD,
        dma_engines: int | None = None,
        bus_bits: int | None = None,
        tile_bytes: int | None = None,
        x_bytes: int | None = None,
        y_bytes: int | None = None,
        max_k: int | None = None,
        board_power_w: float | None = None,
    ) -> None:
        if lib is None:  # pragma: no cover
            raise DeviceError(
                "the emulator's C kernels were not built; reinstall fiberflow with a C compiler "
                "present (pip install -e .)"
            )
        if bus_bytes_per_cycle is not None:
            bus = args.integer(bus_bytes_per_cycle, "bus_bytes_per_cycle", DeviceError)
            if not 1 <= bus <= 65535:
                raise DeviceError(
                    f"bus_bytes_per_cycle must be an integer from 1 to 65535, not {bus!r}"
                )
        self.config, b = _overlay(
            board,
            lanes=args.integer(lanes, "lanes", DeviceError),  # _overlay checks its range
            bus_bytes_per_cycle=bus_bytes_per_cycle,
            given={
                "dma_engines": dma_engines,
                "bus_bits": bus_bits,
                "tile_bytes": tile_bytes,
                "x_bytes": x_bytes,
                "y_bytes": y_bytes,
                "max_k": max_k,
            },
        )
        if clock_mhz is None:
            clock_mhz = self.config.clock_mhz
        if (
            isinstance(clock_mhz, (bool, np.bool_))
            or not isinstance(clock_mhz, (int, float, np.integer, np.floating))
            or not (math.isfinite(clock_mhz) and clock_mhz > 0)
        ):
            raise DeviceError(f"clock_mhz must be a positive, finite number, not {clock_mhz!r}")
        if args.integer(memory_bytes, "memory_bytes", DeviceError) <= 0:
            raise DeviceError(f"memory_bytes must be a positive integer, not {memory_bytes!r}")
        self.lanes = self.config.lanes
        self.clock_mhz = float(clock_mhz)
        self.bus_bytes_per_cycle = self.config.bus_bytes * self.config.dma_engines
        self.memory_bytes = int(memory_bytes)
        self.energy = energy.model(b, board_power_w)
        self.last_stats: stats.RunStats | None = None
        self.overlay: Any = None
        self.firmware: Any = None
        # Re-entrant: a resident matrix's finalizer frees its buffer from whatever thread the
        # garbage collector runs in, possibly one already inside alloc.
        self._lock = threading.RLock()
        self._run_lock = threading.Lock()
        self._closed = False
        self._starts: list[int] = []  # sorted buffer addresses
        self._buffers: dict[int, Buffer] = {}
        self._next = BASE_ADDRESS
        self._used = 0
        self._regs: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._images: dict[int, _Image] = {}  # by image address
        self._descriptors: dict[bytes, jobs.Descriptor] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("this emu device is closed; open a new one with ff.open('emu')")

    # -- memory -------------------------------------------------------------------------------

    def alloc(self, nbytes: int) -> Buffer:
        nbytes = args.integer(nbytes, "nbytes", DeviceError)
        if nbytes < 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes")
        with self._lock:
            self._check_open()
            if self._used + nbytes > self.memory_bytes:
                raise DeviceError(
                    f"out of device memory: {nbytes} bytes requested, "
                    f"{self.memory_bytes - self._used} of {self.memory_bytes} free; free "
                    "resident matrices you no longer need, or open the device with a larger "
                    "memory_bytes="
                )
            # Objects first, books after: the garbage collector may run a finalizer that frees
            # another buffer while these are made, and must find the books consistent.
            buf = Buffer(np.zeros(nbytes, dtype=np.uint8), self._next, self)
            self._next += -(-max(nbytes, 1) // PAGE) * PAGE
            self._used += nbytes
            self._buffers[buf.address] = buf
            bisect.insort(self._starts, buf.address)
            return buf

    def free(self, buffer: Buffer) -> None:
        with self._lock:
            if (
                buffer.device is not self
                or buffer.freed
                or self._buffers.get(buffer.address) is not buffer
            ):
                raise DeviceError(f"{buffer} is not a live buffer of this device")
            del self._buffers[buffer.address]
            del self._starts[bisect.bisect_left(self._starts, buffer.address)]
            self._images.pop(buffer.address, None)
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
        with self._lock:
            self._check_open()
            return self._regs.get(offset, 0)

    def write_reg(self, offset: int, value: int) -> None:
        # The emulator has no control registers with effects (jobs arrive through submit);
        # the register space is plain storage so host code using the protocol runs unchanged.
        self._check_reg(offset)
        with self._lock:
            self._check_open()
            self._regs[offset] = int(value) & 0xFFFF_FFFF

    @staticmethod
    def _check_reg(offset: int) -> None:
        if offset % 4 or not 0 <= offset < REGISTER_SPACE:
            raise DeviceError(
                f"register offset {offset:#x} must be 4-byte aligned and below {REGISTER_SPACE:#x}"
            )

    def load_overlay(self, bitstream: Any = None, firmware: Any = None) -> None:
        """The emulator needs neither; both are recorded so callers can check what was asked."""
        with self._lock:
            self._check_open()
            self.overlay, self.firmware = bitstream, firmware

    def reset(self) -> None:
        """Forget submitted jobs not yet waited for and clear the registers. Buffers stay."""
        with self._lock:
            self._pending.clear()
            self._regs.clear()

    def close(self) -> None:
        """Free every buffer; later calls raise DeviceError. Closing twice is fine."""
        with self._lock:
            for buf in self._buffers.values():
                buf.freed = True
            self._buffers.clear()
            self._starts.clear()
            self._images.clear()
            self._used = 0
            self._closed = True
            self.reset()

    def __enter__(self) -> EmuDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, job: Buffer) -> int:
        """Check the job (descriptor, operands, schedule) and queue it; wait() runs it."""
        with self._lock:
            self._check_open()
            if job.device is not self or job.freed:
                raise DeviceError(f"{job} is not a live buffer of this device")
            desc = self._parse(job.array)
            if desc.lanes != self.lanes:
                raise DeviceError(
                    f"the job schedules {desc.lanes} lanes; this device has {self.lanes}"
                )
            image, _, _ = self._operands(desc)
            result = self._plan(desc, self._image(desc.a_addr, image), image)
            job_id = next(self._ids)
            tiles = np.ascontiguousarray(desc.tile_list, dtype=np.uint32)
            self._pending[job_id] = _Pending(desc, tiles, result)
            return job_id

    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> stats.RunStats:
        """Run a submitted job; raise DeviceTimeoutError if it has not finished after
        ``timeout`` seconds (counting any wait for another thread's job). Its output is then
        incomplete, and the device is ready for the next job."""
        timeout = args.seconds(timeout, "timeout", DeviceError)
        deadline = time.monotonic_ns() + int(timeout * 1e9)
        with self._lock:
            self._check_open()
            pending = self._pending.pop(job_id, None)
            if pending is None:
                raise DeviceError(f"no job {job_id} was submitted to this device (or it was reset)")
        if not self._run_lock.acquire(timeout=timeout):
            raise DeviceTimeoutError(
                f"job {job_id} did not start within {timeout:g} s: other threads' jobs held "
                "the device; run it again with a longer timeout="
            )
        try:
            self._run(pending, deadline, timeout)
            with self._lock:
                self._check_open()  # closed while the job ran: its output is gone
                self.last_stats = pending.stats
            return pending.stats
        finally:
            self._run_lock.release()

    def _parse(self, data: np.ndarray) -> jobs.Descriptor:
        """jobs.parse(data), remembered by the descriptor's bytes other than x_addr and
        y_addr, which parse only copies (a kernel call allocates new x and y every time)."""
        raw = data.tobytes()
        key = raw[: XY_ADDR.start] + raw[XY_ADDR.stop :]
        desc = self._descriptors.get(key)
        if desc is None or len(raw) < XY_ADDR.stop:
            desc = jobs.parse(data)
            if len(self._descriptors) >= DESCRIPTORS_KEPT:
                self._descriptors.clear()
            self._descriptors[key] = desc
            return desc
        x_addr, y_addr = np.frombuffer(raw[XY_ADDR], "<u8")
        return dataclasses.replace(desc, x_addr=int(x_addr), y_addr=int(y_addr))

    def _operands(self, desc: jobs.Descriptor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A's image, x and y of a job, each inside one live buffer, y overlapping neither
        of the others (the C kernel reads A and x while it writes y)."""
        image = self._resolve(desc.a_addr, desc.a_bytes, "matrix image")
        x_bytes, y_bytes = desc.n * desc.x_row_bytes, desc.m * desc.y_row_bytes
        x = self._resolve(desc.x_addr, x_bytes, "dense input")
        y = self._resolve(desc.y_addr, y_bytes, "output")
        others = (
            ("matrix image", desc.a_addr, desc.a_bytes),
            ("dense input", desc.x_addr, x_bytes),
        )
        for what, addr, nbytes in others:
            if y_bytes and nbytes and addr < desc.y_addr + y_bytes and desc.y_addr < addr + nbytes:
                raise DeviceError(
                    f"the job's output ({y_bytes} bytes at {desc.y_addr:#x}) overlaps its "
                    f"{what} ({nbytes} bytes at {addr:#x}); give y a buffer of its own"
                )
        return image, x, y

    def _image(self, address: int, image: np.ndarray) -> _Image:
        """The directory of the image at ``address``: remembered, or read from its bytes."""
        known = self._images.get(address)
        if (
            known is not None
            and known.nbytes == len(image)
            and image[: len(known.head)].tobytes() == known.head
        ):
            return known
        directory = jobs.Directory.from_bytes(image)
        known = _Image(image[: directory.head_bytes].tobytes(), len(image), directory)
        self._images[address] = known
        return known

    def _plan(self, desc: jobs.Descriptor, image: _Image, data: np.ndarray) -> stats.RunStats:
        """Check the job's schedule against the image's directory (``data``: the image's
        bytes) and estimate its statistics with the cycle model (both remembered for the same
        schedule and shape)."""
        key = (
            desc.kernel, desc.k, desc.m, desc.n, desc.flags, desc.total_bytes,
            desc.x_row_bytes, desc.y_row_bytes,
            desc.lane_table.tobytes(), desc.tile_list.tobytes(),
        )  # fmt: skip
        known = image.plans.get(key)
        if known is not None:
            return known
        directory = image.directory
        lane_of = jobs.check_schedule(desc, directory)
        tl = desc.tile_list.astype(np.int64)
        ov = self.config
        beat = ov.bus_bytes
        col0 = directory.col_tile[tl] * directory.tile_cols
        col_ext = np.minimum(directory.tile_cols, desc.n - col0)
        # The columns of x each tile reads, as the firmware sees them (ffjb.c, prepare): when
        # x is in several slices and the image records them, from the first (rounded down to
        # regmap.X_GRAIN) to the last; else the whole slice.
        sliced = desc.n > directory.tile_cols
        recorded = (directory.x_hi[tl] > 0) & sliced
        grain = regmap.X_GRAIN
        x_lo = col0 + np.where(recorded, directory.x_lo[tl] // grain * grain, 0)
        x_hi = col0 + np.where(recorded, directory.x_hi[tl], col_ext)
        row0 = directory.row_tile[tl] * directory.tile_rows
        row_ext = np.minimum(directory.tile_rows, desc.m - row0)

        def beats_around(start: np.ndarray, count: np.ndarray, row_bytes: int) -> np.ndarray:
            # the whole bus beats the firmware moves around a slice (it need not be aligned)
            lo = start * row_bytes // beat
            hi = -(-(start + count) * row_bytes // beat)
            return (hi - lo) * beat

        offsets = perf_model.tile_offsets(data, len(directory.nvals))[tl]
        overlay = perf_model.Overlay(
            lanes=self.lanes,
            bus_bytes=beat,
            dma_engines=ov.dma_engines,
            engine_bytes_per_cycle=ov.engine_bytes_per_cycle,
            tile_bytes=ov.tile_bytes,
        )

        def run(k: int) -> perf_model.Result:
            return perf_model.simulate(
                perf_model.Job(
                    lane=lane_of,
                    row_tile=directory.row_tile[tl],
                    col_tile=directory.col_tile[tl],
                    tile_bytes=directory.nbytes[tl],
                    x_lo=x_lo,
                    x_hi=x_hi,
                    x_end=col0 + col_ext,
                    x_row_bytes=4 * k,
                    y_bytes=beats_around(row0, row_ext, 4 * k),
                    compute=perf_model.image_tiles_cycles(data, offsets, k),
                    y_total=desc.m * 4 * k,
                    head_bytes=desc.total_bytes + directory.head_bytes,
                    accumulate=bool(desc.flags & jobs.FLAG_ACCUMULATE),
                    covered=bool(desc.flags & jobs.FLAG_COVERED),
                    sliced=sliced,
                ),
                overlay,
            )

        # An SpMM whose B slices or C blocks do not fit the lanes' buffers (or k > max_k) runs
        # on the hardware as jobs over column blocks of B, one after the other
        # (ShellJobs._columns_that_fit): the model adds up those jobs.
        kb = desc.k if desc.kernel == "spmv" else min(desc.k, ov.max_k)
        while kb > 1 and (
            beats_around(col0, col_ext, 4 * kb).max(initial=0) > ov.x_bytes
            or beats_around(row0, row_ext, 4 * kb).max(initial=0) > ov.y_bytes
        ):
            kb -= 1
        widths = [min(kb, desc.k - c0) for c0 in range(0, desc.k, kb)]
        parts = {w: run(w) for w in set(widths)}
        cycles = sum(parts[w].cycles for w in widths)
        busy = tuple(sum(parts[w].lane_busy[lane] for w in widths) for lane in range(self.lanes))
        model = perf_model.Result(
            cycles=cycles, lane_busy=busy, dma_bytes=sum(parts[w].dma_bytes for w in widths)
        )
        nnz = int(directory.nvals[tl].sum())
        result = stats.RunStats(
            kernel=desc.kernel,
            cycles=max(model.cycles, 1),
            nnz=nnz,
            work=nnz * desc.k,
            lanes=self.lanes,
            tiles=len(tl),
            dma_bytes=model.dma_bytes,
            bus_bytes_per_cycle=self.bus_bytes_per_cycle,
            clock_mhz=self.clock_mhz,
            lane_busy_cycles=model.lane_busy,
            lane_stall_cycles=tuple(max(model.cycles - b, 0) for b in model.lane_busy),
            estimated=True,
            device=self.name,
            energy=self.energy,
        )
        if len(image.plans) >= PLANS_PER_IMAGE:
            image.plans.clear()
        image.plans[key] = result
        return result

    def _run(self, pending: _Pending, deadline_ns: int, timeout: float) -> None:
        """Run a job in C, holding the run lock (not the allocator's: buffers come and go
        meanwhile)."""
        desc = pending.desc
        with self._lock:
            self._check_open()
            # The operands again: a buffer may have been freed since submit. The arrays are
            # held from here on, so freeing a buffer now cannot release memory the job uses.
            image, x, y = self._operands(desc)
            if not desc.flags & jobs.FLAG_ACCUMULATE:
                y[:] = 0
        cjob = ffi.new(
            "ff_emu_job *",
            {
                "image": ffi.from_buffer("uint8_t[]", image),
                "image_bytes": image.nbytes,
                "tiles": ffi.from_buffer("uint32_t[]", pending.tiles),
                "n_tiles": len(pending.tiles),
                "x": ffi.from_buffer("uint8_t[]", x),
                "x_bytes": x.nbytes,
                "y": ffi.from_buffer("uint8_t[]", y),
                "y_bytes": y.nbytes,
                "m": desc.m,
                "n": desc.n,
                "k": desc.k,
                "dtype": dtypes.CODES[desc.dtype],
                "ftz": FP32_POLICY["subnormals"] == "flush",
                "canonical_nan": FP32_POLICY["nan"] == "canonical",
                "deadline_ns": deadline_ns,
                "threads": workers.threads(pending.stats.work),
            },
        )
        bad = ffi.new("int64_t *")
        rc = lib.ff_emu_run(cjob, bad)
        if rc == E_TIMEOUT:
            raise DeviceTimeoutError(
                f"the job did not finish within {timeout:g} s (stopped at tile-list entry "
                f"{bad[0]}); its output is incomplete. The device is ready for the next job: "
                "run it again with a longer timeout="
            )
        if rc:
            where = f"at tile-list entry {bad[0]}" if bad[0] >= 0 else "before its first tile"
            raise DeviceError(
                f"job failed {where}: {ERRORS.get(rc, f'error {rc}')}; the output is "
                "incomplete. Put the matrix on the device again"
            )

    # -- resident matrices --------------------------------------------------------------------

    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> ResidentMatrix:
        """Pack ``A`` once and keep its image in device memory. ``tile`` is the tile shape
        (default: what the modelled overlay's hardware would pack, :meth:`pack_to_fit`);
        ``dtype`` converts explicitly ("float32" or "int32")."""
        self._check_open()
        return make_resident(self, A, tile, dtype)

    def tile_limits(self) -> tuple[int, int]:
        """The largest (rows, cols) a tile may span on the modelled overlay, as the rtl and
        board devices' ``tile_limits()`` say for their buffers: a row tile's y block and a
        column tile's x slice fit the lanes' y and x buffers for SpMV (for SpMM with ``k``
        columns, divide each by ``k``)."""
        from fiberflow.host.devices.shell_driver import buffer_span

        ov = self.config
        return buffer_span(ov.y_bytes, ov.bus_bytes), buffer_span(ov.x_bytes, ov.bus_bytes)

    def pack_to_fit(self, t: Any) -> Any:
        """Pack tensor ``t`` with the tiles the modelled overlay's device would choose
        (``shell_driver.pack_to_fit`` over its buffers), so the statistics describe the job the
        hardware would run. A matrix that no tile of those buffers holds (a row too long)
        is packed with the emulator's own default tile instead: the emulator has no buffers."""
        from fiberflow.host.devices.resident import default_tile
        from fiberflow.host.devices.shell_driver import pack_to_fit
        from fiberflow.host.images import pack as packing

        ov = self.config
        try:
            return pack_to_fit(
                t,
                *self.tile_limits(),
                lanes=self.lanes,
                tile_bytes=ov.tile_bytes,
                bus_bytes=ov.bus_bytes,
                dtypes=(np.dtype(np.float32), np.dtype(np.int32)),
                larger="",
            )
        except DeviceError:
            return packing.pack(t, default_tile(t.shape, self.lanes))

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return (
            f"EmuDevice(lanes={self.lanes}, clock_mhz={self.clock_mhz:g}, "
            f"dma_engines={self.config.dma_engines}, bus_bits={8 * self.config.bus_bytes}, "
            f"buffers={len(self._buffers)}{state})"
        )
