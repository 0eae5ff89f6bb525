"""Kernel jobs on a device that runs the real shell (the ``"rtl"`` and ``"pynq"`` devices).

:class:`~fiberflow.host.devices.shell_driver.ShellDriver` runs one descriptor through the firmware.
Around it, both devices need the same host-side work, which lives here once:

* the facts the statistics need (kernel, k, nonzeros, tiles), read from the descriptor and the
  image's directory;
* the schedule rules the firmware cannot check in its bounded memory (every tile once, whole
  row tiles per lane), checked before the doorbell;
* the tile limits: tiles as large as the lanes' x and y buffers hold for SpMV
  (:meth:`ShellJobs.check_tile` refuses a larger one before anything is packed). An SpMM whose
  B and C rows do not fit with those tiles runs as several jobs over column blocks of B. Each
  column of C is computed exactly as in one job, so the bits do not change; the counters are
  summed; one deadline covers all the blocks;
* one job on the shell at a time: ``submit`` checks a job and queues it, ``wait`` rings its
  doorbell and waits for it, so jobs submitted from several threads never meet on the shell;
* sharing a device between threads: :func:`guarded` wraps a device's methods in its lock
  (an ``RLock``), so calls run one at a time, and refuses calls on a closed device.

The device provides ``alloc(nbytes)``, ``free(buffer)``, ``find(address)`` (the live buffer
holding a device address, or None), ``dtypes`` (the value types its lanes compute) and, for the
statistics, ``name``, ``clock_mhz`` and ``bus_bytes_per_cycle``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from fiberflow.errors import DeviceError, DTypeError, TileShapeError
from fiberflow.host import args
from fiberflow.host.devices.device import Buffer
from fiberflow.host.devices.resident import make_resident
from fiberflow.host.devices.shell_driver import (
    CycleMeter,
    ShellCounters,
    ShellDriver,
    buffer_span,
    pack_to_fit,
)
from fiberflow.host.images import job as jobs
from fiberflow.host.stats import RunStats

__all__ = [
    "JobFacts",
    "ShellDeviceMethods",
    "ShellJobs",
    "add_counters",
    "check_timeout",
    "guarded",
]

F = TypeVar("F", bound=Callable[..., Any])


def guarded(method: F) -> F:
    """Run a device method under the device's ``_lock`` (an ``RLock``: device methods call
    each other), after checking that the device is open (``_closed``). One lock around
    everything that touches the model, the registers, the allocator and the job queue: the
    shell runs one thing at a time, whichever thread asks."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed:
                raise DeviceError(
                    f"this {self.name} device is closed; open a new one with "
                    f"ff.open({self.name!r}, ...)"
                )
            return method(self, *args, **kwargs)

    return cast(F, call)


def check_timeout(timeout: Any) -> float:
    """``timeout`` as seconds, or a DeviceError saying why it is not a usable timeout."""
    return args.seconds(timeout, "timeout", DeviceError)


class ShellDeviceMethods:
    """The device methods the rtl and board devices share, through their ShellJobs
    (``_jobs``): resident matrices, and the tiles the lanes' buffers hold. (Each device
    provides ``_lock``, ``_closed`` and ``name`` for :func:`guarded`.)"""

    _jobs: ShellJobs

    @guarded
    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> Any:
        """Pack ``A`` once and keep its image in device memory. ``tile=None`` picks a tile
        shape that fits the lanes' buffers (``pack_to_fit``); a given one is checked before
        packing (:meth:`check_tile`) and after (:meth:`check_image`)."""
        return make_resident(self, A, tile, dtype)

    @guarded
    def check_tile(self, tile: Any, dtype: Any = None, *, shape: Any = None) -> tuple[int, int]:
        """``tile`` as (rows, cols) if its y blocks and x slices fit the lanes' buffers;
        otherwise a TileShapeError naming the largest tile that does (``shape``: the matrix's,
        when known; ``dtype``: the values', which the lanes must compute). See
        :meth:`ShellJobs.check_tile`."""
        return self._jobs.check_tile(tile, dtype, shape)

    @guarded
    def check_image(self, img: Any) -> None:
        """Refuse a packed image with a tile larger than a lane's tile buffer (a
        TileShapeError; see :meth:`ShellJobs.check_image`)."""
        self._jobs.check_image(img)

    @guarded
    def tile_limits(self) -> tuple[int, int]:
        """The largest (rows, cols) a tile may span so that a row tile's y block and a column
        tile's x slice fit the lanes' buffers for SpMV (:meth:`ShellJobs.tile_limits`; SpMM
        runs in column blocks of B that fit these tiles)."""
        return self._jobs.tile_limits()


def _up(nbytes: int, bus: int) -> int:
    return -(-nbytes // bus) * bus


def _slices_fit(base: int, span: int, count: int, last: int, unit: int, cap: int, bus: int) -> bool:
    """Whether ``count`` slices laid end to end from address ``base`` (``span`` items of
    ``unit`` bytes each, the last one ``last`` items) each fit a ``cap``-byte lane buffer once
    widened to whole bus beats, as the firmware loads them (``firmware/ffjb.c``: the x slice
    and y block of a tile). Slice offsets within a beat repeat with a period of at most
    ``bus / 4`` slices, so that many are checked, and the last one."""
    width = span * unit
    for j in range(min(count - 1, bus)):
        if _up((base + j * width) % bus + width, bus) > cap:
            return False
    return _up((base + (count - 1) * width) % bus + last * unit, bus) <= cap


@dataclass(frozen=True)
class JobFacts:
    """What a job's statistics need that the counters do not say."""

    kernel: str
    k: int
    nnz: int
    tiles: int


class ShellJobs:
    """Submit and wait for kernel jobs on ``driver``'s shell, for ``device``."""

    def __init__(self, device: Any, driver: ShellDriver) -> None:
        self.device = device
        self.driver = driver
        self._pending: dict[int, tuple[Buffer | None, tuple[Any, int] | None, JobFacts]] = {}
        self._ids = 0

    def tile_limits(self) -> tuple[int, int]:
        """The largest (rows, cols) a tile may span so that a row tile's y block and a column
        tile's x slice fit the lanes' buffers for SpMV, one bus beat spare for slices that do
        not start on a beat. Slices are whole beats, so they stay aligned. (0, 0) when the
        shell has no SpMV/SpMM lanes."""
        i = self.driver.info
        return buffer_span(i.y_bytes, i.bus_bytes), buffer_span(i.x_bytes, i.bus_bytes)

    def pack_to_fit(self, t: Any, dtypes: tuple[np.dtype, ...], larger: str) -> Any:
        """Pack tensor ``t`` with the largest tiles the lanes' buffers hold (columns and rows
        up to :meth:`tile_limits`, rows cut until every tile fits a tile buffer); ``dtypes``:
        the value types the overlay computes in; ``larger`` tells the user how to get larger
        buffers. See :func:`~fiberflow.host.devices.shell_driver.pack_to_fit`."""
        i = self.driver.info
        return pack_to_fit(
            t,
            *self.tile_limits(),
            lanes=i.lanes,
            tile_bytes=i.tile_bytes,
            bus_bytes=i.bus_bytes,
            dtypes=dtypes,
            larger=larger,
        )

    def check_tile(self, tile: Any, dtype: Any = None, shape: Any = None) -> tuple[int, int]:
        """``tile`` as (rows, cols) if a matrix packed with it runs on these lanes: its y
        blocks and x slices fit the lanes' buffers for SpMV, at every offset within a bus beat
        they can start at (``shape``: the matrix's, when known; a tile larger than the matrix
        is cut to it). ``dtype``: the values' type, which the lanes must compute. Raises
        TileShapeError naming the largest tile that fits, DTypeError for a type the lanes
        do not compute. (Whether each tile's bytes fit a tile buffer depends on its nonzeros;
        the firmware checks that.)"""
        i = self.driver.info
        rows, cols = args.tile_shape(tile, 2)  # the messages ff.pack gives
        if dtype is not None:
            dt = np.dtype(dtype)
            if dt not in self.device.dtypes:
                have = " and ".join(str(d) for d in self.device.dtypes)
                raise DTypeError(f"this overlay computes in {have}, not {dt}")
        if not (i.x_bytes and i.y_bytes):
            raise TileShapeError(
                "this overlay has no SpMV/SpMM lanes (kernels=()); rebuild it with "
                "fiberflow build --param kernels=spmv,spmm"
            )
        m, n = (int(d) for d in shape[:2]) if shape is not None else (0, 0)
        if not self._tiles_fit(rows, m, i.y_bytes) or not self._tiles_fit(cols, n, i.x_bytes):
            most = (i.y_bytes // 4, i.x_bytes // 4)
            raise TileShapeError(
                f"tile ({rows}, {cols}) does not fit this overlay's lanes: a tile's y block "
                f"({i.y_bytes} bytes) holds at most {most[0]} rows and its x slice "
                f"({i.x_bytes} bytes) at most {most[1]} columns (fewer when they do not start "
                f"on a {i.bus_bytes}-byte bus beat); the largest tile is tile={most}, or pass "
                "no tile and let the device choose one"
            )
        return rows, cols

    def check_image(self, img: Any) -> None:
        """Refuse a packed image (a TileShapeError, before it reaches the device) with a tile
        larger than a lane's tile buffer: the firmware would stop the job with TOO_BIG."""
        cap = self.driver.info.tile_bytes
        sizes = jobs.Directory.of(img).nbytes
        if len(sizes) and int(sizes.max()) > cap:
            worst = int(np.argmax(sizes))
            raise TileShapeError(
                f"with tile {img.tile}, tile {worst} of the image holds {int(sizes[worst]):,} "
                f"bytes, more than a lane's {cap:,}-byte tile buffer; use fewer rows per tile, "
                "or pass no tile and let the device choose one"
            )

    def _tiles_fit(self, span: int, extent: int, cap: int) -> bool:
        """Whether tiles of ``span`` rows (or columns) of a matrix ``extent`` long (0:
        unknown, assume many tiles) have SpMV slices that fit a ``cap``-byte buffer."""
        bus = self.driver.info.bus_bytes
        if extent:
            count = -(-extent // span)
            last = extent - (count - 1) * span
            return _slices_fit(0, min(span, extent), count, last, 4, cap, bus)
        return _slices_fit(0, span, bus + 1, span, 4, cap, bus)

    def submit(self, job: Buffer) -> int:
        """Check what the host must, then queue ``job`` (its doorbell rings at :meth:`wait`,
        so that the shell holds one job at a time whatever the threads do); return the
        job's id. An SpMM whose B / C rows do not fit runs in column blocks at :meth:`wait`."""
        self._ids += 1
        desc, directory, facts = self._read(job)
        kb = self._columns_that_fit(desc, directory) if desc is not None else 0
        if desc is not None and desc.kernel == "spmm" and 1 <= kb < desc.k:
            self._pending[self._ids] = (None, (desc, kb), facts)
        else:
            self._pending[self._ids] = (job, None, facts)
        return self._ids

    def wait(self, job_id: int, timeout: float) -> tuple[ShellCounters, RunStats]:
        """Run job ``job_id`` and return its counters and its statistics from them (errors:
        see :meth:`ShellDriver.wait`). ``timeout`` covers the whole call, all the column
        blocks of a split SpMM included."""
        timeout = check_timeout(timeout)
        if job_id not in self._pending:
            raise DeviceError(f"no job {job_id} was submitted to this device (or it was reset)")
        job, split, facts = self._pending.pop(job_id)
        deadline = time.monotonic() + timeout
        meter = CycleMeter(f"{self.device.name} job")
        try:
            if split is not None:
                counters = self._run_split(split[0], split[1], timeout, deadline, meter)
            else:
                assert job is not None
                if job.freed:
                    raise DeviceError(f"job {job_id}'s descriptor buffer was freed before wait")
                job.flush()
                counters = self.driver.run(job, timeout, deadline=deadline, meter=meter)
        finally:
            meter.close()
        dev = self.device
        stats = self.driver.run_stats(
            counters,
            kernel=facts.kernel,
            k=facts.k,
            nnz=facts.nnz,
            tiles=facts.tiles or counters.tiles_done,
            bus_bytes_per_cycle=dev.bus_bytes_per_cycle,
            clock_mhz=dev.clock_mhz,
            device=dev.name,
            energy=dev.energy,
        )
        if not counters.job_cycles:  # firmware without a per-job count (bring-up jobs)
            stats = dataclasses.replace(stats, cycles=max(counters.cycles, 1))
        return counters, stats

    def forget(self) -> None:
        """Drop the jobs not yet waited for (after a reset)."""
        self._pending.clear()

    def _read(self, job: Buffer) -> tuple[Any, Any, JobFacts]:
        """The parsed descriptor (None when it is not an FFJB one: a bring-up job, or one
        the firmware will refuse and say why), the image's directory if it can be read, and
        the facts."""
        if job.nbytes < 4 or int(job.view("<u4", 1)[0]) != jobs.MAGIC:
            return None, None, JobFacts("copy", 1, 0, 0)
        try:
            desc = jobs.parse(job.array)
        except DeviceError:
            return None, None, JobFacts("copy", 1, 0, 0)
        directory, nnz = None, 0
        img = self.device.find(desc.a_addr)
        if img is not None and desc.a_addr == img.address:
            try:
                directory = jobs.Directory.from_bytes(img.array)
            except DeviceError:
                pass  # the firmware checks the image and says what is wrong
        if directory is not None:
            if len(desc.tile_list) == len(directory.nvals) and desc.lanes == self.driver.info.lanes:
                jobs.check_schedule(desc, directory)
            tl = desc.tile_list.astype(np.int64)
            nnz = int(directory.nvals[tl[tl < len(directory.nvals)]].sum())
        return desc, directory, JobFacts(desc.kernel, desc.k, nnz, len(desc.tile_list))

    def _columns_that_fit(self, desc: Any, directory: Any) -> int:
        """The most columns of B (at most max_k) whose x slices and y blocks fit the lanes'
        buffers with the image's tiles, where the firmware loads them (from B and C when all
        ``k`` fit, else from the bus-aligned buffers of a column block); 0 if not even one
        does."""
        if directory is None:
            return desc.k
        i = self.driver.info
        m, n = max(desc.m, 1), max(desc.n, 1)
        rows, cols = min(directory.tile_rows, m), min(directory.tile_cols, n)
        grid_r, grid_c = -(-m // rows), -(-n // cols)
        bus = i.bus_bytes

        def fits(kb: int) -> bool:
            whole = kb == desc.k
            xb, yb = (desc.x_addr, desc.y_addr) if whole else (0, 0)
            last_r, last_c = m - (grid_r - 1) * rows, n - (grid_c - 1) * cols
            return _slices_fit(xb, cols, grid_c, last_c, 4 * kb, i.x_bytes, bus) and (
                _slices_fit(yb, rows, grid_r, last_r, 4 * kb, i.y_bytes, bus)
            )

        kb = min(desc.k, i.max_k)
        while kb and not fits(kb):
            kb -= 1
        return kb

    def _run_split(
        self, desc: Any, kb: int, timeout: float, deadline: float, meter: CycleMeter
    ) -> ShellCounters:
        """Run an SpMM as jobs of ``kb`` columns of B and C each (copied into temporary
        buffers and back), all before ``deadline``; return the counters summed over the
        jobs."""
        dev = self.device
        xbuf, ybuf = dev.find(desc.x_addr), dev.find(desc.y_addr)
        if xbuf is None or ybuf is None:
            raise DeviceError("the job's B or C is not inside a buffer of this device")
        m, n, k = desc.m, desc.n, desc.k
        xbuf.invalidate()
        ybuf.invalidate()
        B = xbuf.view(np.uint32, n * k, desc.x_addr - xbuf.address).reshape(n, k)
        C = ybuf.view(np.uint32, m * k, desc.y_addr - ybuf.address).reshape(m, k)
        total: ShellCounters | None = None
        for c0 in range(0, k, kb):
            w = min(kb, k - c0)
            bufs = [dev.alloc(4 * n * w), dev.alloc(4 * m * w)]
            try:
                bufs[0].view(np.uint32, n * w)[:] = B[:, c0 : c0 + w].reshape(-1)
                if desc.flags & jobs.FLAG_ACCUMULATE:
                    bufs[1].view(np.uint32, m * w)[:] = C[:, c0 : c0 + w].reshape(-1)
                jb = dev.alloc(jobs.descriptor_bytes(desc.lanes, len(desc.tile_list)))
                bufs.append(jb)
                jobs.write_descriptor(
                    jb.array,
                    kernel="spmm",
                    dtype=desc.dtype,
                    m=m,
                    n=n,
                    k=w,
                    a_addr=desc.a_addr,
                    a_bytes=desc.a_bytes,
                    x_addr=bufs[0].address,
                    y_addr=bufs[1].address,
                    lane_table=desc.lane_table,
                    tile_list=desc.tile_list,
                    flags=desc.flags,
                )
                for b in bufs:
                    b.flush()
                got = self.driver.run(jb, timeout, deadline=deadline, meter=meter)
                bufs[1].invalidate()
                C[:, c0 : c0 + w] = bufs[1].view(np.uint32, m * w).reshape(m, w)
            finally:
                for b in bufs:
                    dev.free(b)
            total = got if total is None else add_counters(total, got)
        ybuf.flush()  # C was written here, on the host
        assert total is not None
        return total


def add_counters(a: ShellCounters, b: ShellCounters) -> ShellCounters:
    """Counters of two jobs run one after the other (per-engine and per-lane ones add up
    element by element)."""

    def add(x: Any, y: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(p + q for p, q in zip(x, y, strict=True))
        return x + y

    return ShellCounters(
        **{f.name: add(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)}
    )
