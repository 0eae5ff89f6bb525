"""Kernel jobs on a device that runs the real shell (the ``"rtl"`` and ``"pynq"`` devices).

:class:`~fiberflow.host.shell_driver.ShellDriver` runs one descriptor through the firmware.
Around it, both devices need the same host-side work, which lives here once:

* the facts the statistics need (kernel, k, nonzeros, tiles), read from the descriptor and the
  image's directory;
* the schedule rules the firmware cannot check in its bounded memory (every tile once, whole
  row tiles per lane), checked before the doorbell;
* the tile limits: tiles as large as the lanes' x and y buffers hold for SpMV. An SpMM whose B
  and C rows do not fit with those tiles runs as several jobs over column blocks of B. Each
  column of C is computed exactly as in one job, so the bits do not change; the counters are
  summed.

The device provides ``alloc(nbytes)``, ``free(buffer)``, ``find(address)`` (the live buffer
holding a device address, or None) and, for the statistics, ``name``, ``clock_mhz`` and
``bus_bytes_per_cycle``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError
from fiberflow.host import job as jobs
from fiberflow.host.device import Buffer
from fiberflow.host.shell_driver import ShellCounters, ShellDriver, pack_to_fit
from fiberflow.host.stats import RunStats

__all__ = ["JobFacts", "ShellJobs", "add_counters"]


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
        self._pending: dict[int, tuple[int | None, tuple[Any, int] | None, JobFacts]] = {}
        self._ids = 0

    def tile_limits(self) -> tuple[int, int]:
        """The largest (rows, cols) a tile may span so that a row tile's y block and a column
        tile's x slice fit the lanes' buffers for SpMV, one bus beat spare for slices that do
        not start on a beat. Slices are whole beats, so they stay aligned. (0, 0) when the
        shell has no SpMV/SpMM lanes."""
        i = self.driver.info

        def most(nbytes: int) -> int:
            step = max(i.bus_bytes // 4, 1)
            return max(0, (nbytes // 4 - step) // step * step)

        return most(i.y_bytes), most(i.x_bytes)

    def pack_to_fit(self, t: Any, dtypes: tuple[np.dtype, ...], larger: str) -> Any:
        """Pack tensor ``t`` with the largest tiles the lanes' buffers hold (columns and rows
        up to :meth:`tile_limits`, rows cut until every tile fits a tile buffer); ``dtypes``:
        the value types the overlay computes in; ``larger`` tells the user how to get larger
        buffers. See :func:`~fiberflow.host.shell_driver.pack_to_fit`."""
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

    def submit(self, job: Buffer) -> int:
        """Check what the host must, then ring the doorbell for ``job`` (or queue an SpMM to
        run in column blocks at :meth:`wait`); return the job's id."""
        self._ids += 1
        desc, directory, facts = self._read(job)
        kb = self._columns_that_fit(desc, directory) if desc is not None else 0
        if desc is not None and desc.kernel == "spmm" and 1 <= kb < desc.k:
            self._pending[self._ids] = (None, (desc, kb), facts)
        else:
            job.flush()
            self._pending[self._ids] = (self.driver.submit(job), None, facts)
        return self._ids

    def wait(self, job_id: int, timeout: float) -> tuple[ShellCounters, RunStats]:
        """The counters of job ``job_id`` when it is done, and its statistics from them
        (errors: see :meth:`ShellDriver.wait`)."""
        if job_id not in self._pending:
            raise DeviceError(f"no job {job_id} was submitted to this device (or it was reset)")
        seq, split, facts = self._pending.pop(job_id)
        if split is not None:
            counters = self._run_split(split[0], split[1], timeout)
        else:
            assert seq is not None
            counters = self.driver.wait(seq, timeout)
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
        buffers with the image's tiles; 0 if not even one does."""
        if directory is None:
            return desc.k
        i = self.driver.info
        rows = min(directory.tile_rows, max(desc.m, 1))
        cols = min(directory.tile_cols, max(desc.n, 1))
        kb = min(desc.k, i.max_k)
        bb = i.bus_bytes
        while kb and (4 * kb * cols + bb > i.x_bytes or 4 * kb * rows + bb > i.y_bytes):
            kb -= 1
        return kb

    def _run_split(self, desc: Any, kb: int, timeout: float) -> ShellCounters:
        """Run an SpMM as jobs of ``kb`` columns of B and C each (copied into temporary
        buffers and back); return the counters summed over the jobs."""
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
                got = self.driver.wait(self.driver.submit(jb), timeout)
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
