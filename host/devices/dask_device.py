"""The ``"dask"`` device: one matrix in row blocks over the workers of a Dask cluster, each
worker running one fiberflow device (a board, the emulator or the rtl device).

    client = Client("tcp://host:8786")            # or Client(LocalCluster(...))
    dev = ff.open("dask", client=client, device="pynq", overlay="build/z2")
    h = dev.put(A)                                # row blocks, packed and resident on the workers
    y = ff.spmv(h, x, device=dev)                 # or h @ x, ff.spmm, ff.aslinearoperator(h, ...)
    dev.last_stats                                # per worker, and the bytes shipped

- **Workers.** Every worker that advertises the resource ``FPGA`` (``dask-worker ...
  --resources FPGA=1``), or every worker when none does, gets one :class:`Shard`: a Dask
  actor that opens the device (``ff.open(device, **options)``) in the worker's process and
  keeps the blocks put there.
- **put.** A's rows are cut into one block per worker with about equal nonzeros. Each block
  keeps only the columns it has entries in, renumbered in order; it is packed on its worker
  and stays there. The host keeps each block (to put it again if a worker is lost).
- **A call** sends each block only the entries of x (rows of B) its columns touch, runs the
  blocks at once and gathers y. A row lies in one block and its columns keep their order, so
  its sum is added in the same order as on one device: the result is bit-identical.
- **Faults.** When a worker fails or dies during a call, its blocks are put again on the
  workers left, from the host's copy, and run there; with none left the call raises
  DeviceError. No call returns a y that is missing a block.

Thread-safe: one call at a time (a lock), as on the other devices.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from fiberflow.errors import DeviceError, FiberflowError, ToolchainError
from fiberflow.host.devices.device import DEFAULT_TIMEOUT
from fiberflow.host.stats import RunStats

RESOURCE = "FPGA"  # what a board's worker advertises: dask-worker ... --resources FPGA=1
# Seconds a worker may take to pack and keep a block: generous, as a board's ARM cores pack
# many times slower than a desktop's.
PUT_TIMEOUT = 600.0


class Shard:
    """One worker's device and the blocks put on it (a Dask actor: it lives in the worker's
    process, and its methods run there, one at a time)."""

    def __init__(self, kind: str, options: dict[str, Any]) -> None:
        import fiberflow as ff

        self.device = ff.open(kind, **options)
        self.handles: dict[tuple[int, int], Any] = {}  # (matrix, block) -> resident handle

    def pid(self) -> int:
        return os.getpid()

    def held(self) -> int:
        """How many blocks this worker holds."""
        return len(self.handles)

    def put(self, key: tuple[int, int], block: sp.csr_array, tile: Any) -> None:
        """Pack ``block`` on the device and keep it as ``key``."""
        old = self.handles.pop(key, None)
        if old is not None:
            old.free()
        self.handles[key] = self.device.put(block, tile=tile)

    def run(
        self, key: tuple[int, int], kernel: str, dense: np.ndarray, timeout: float
    ) -> tuple[np.ndarray, RunStats]:
        from fiberflow.host.kernels import spmm, spmv

        fn = spmv if kernel == "spmv" else spmm
        out = fn(self.handles[key], dense, device=self.device, timeout=timeout)
        return out, self.device.last_stats

    def free(self, matrix: int) -> None:
        """Free every block of the matrix ``matrix`` held here."""
        for key in [k for k in self.handles if k[0] == matrix]:
            self.handles.pop(key).free()

    def close(self) -> None:
        for h in self.handles.values():
            h.free()
        self.handles.clear()
        self.device.close()


@dataclass
class _Block:
    index: int
    rows: tuple[int, int]  # [first, last) rows of A
    cols: np.ndarray  # the columns of A it has entries in, increasing
    matrix: sp.csr_array  # its rows, columns renumbered by position in cols
    shard: int  # the worker (an index into DaskDevice.workers) it is on


@dataclass(frozen=True)
class ShardedStats:
    """What one call cost: each block's :class:`RunStats` with its worker, and what crossed
    the network. The workers run at once, each its own blocks one after another: ``cycles``
    is the busiest worker's; ``nnz``, ``work``, ``dma_bytes`` and ``energy_j`` add up."""

    kernel: str
    blocks: tuple[tuple[str, RunStats], ...]  # (worker address, the block's statistics)
    bytes_shipped: int  # x entries (B rows) sent to the workers, with Dask's framing
    bytes_touched: int  # the x entries (B rows) the blocks' columns touch, raw
    bytes_broadcast: int  # all of x (B) sent for every block instead
    bytes_returned: int  # y (C) rows sent back, with Dask's framing
    wall_seconds: float  # the call, on the host's clock
    retries: int = 0  # blocks put again on another worker after a failure
    lost_workers: tuple[str, ...] = field(default=())

    @property
    def per_worker(self) -> dict[str, list[RunStats]]:
        out: dict[str, list[RunStats]] = {}
        for w, s in self.blocks:
            out.setdefault(w, []).append(s)
        return out

    @property
    def cycles(self) -> int:
        return max((sum(s.cycles for s in v) for v in self.per_worker.values()), default=0)

    @property
    def seconds_est(self) -> float:
        """The busiest worker's time on its device."""
        per = self.per_worker.values()
        return max((sum(s.seconds_est for s in v) for v in per), default=0.0)

    @property
    def nnz(self) -> int:
        return sum(s.nnz for _, s in self.blocks)

    @property
    def work(self) -> int:
        return sum(s.work for _, s in self.blocks)

    @property
    def dma_bytes(self) -> int:
        return sum(s.dma_bytes for _, s in self.blocks)

    @property
    def energy_j(self) -> float:
        return sum(s.energy_j for _, s in self.blocks)

    def summary(self) -> str:
        per = "; ".join(
            f"{w}: {sum(s.nnz for s in v):,} nnz, {sum(s.cycles for s in v):,} cycles"
            for w, v in self.per_worker.items()
        )
        lost = (
            f"; lost {', '.join(self.lost_workers)}, {self.retries} block(s) run again"
            if self.retries
            else ""
        )
        return (
            f"{self.kernel} on {len(self.per_worker)} worker(s): {self.nnz:,} nnz, busiest "
            f"worker {self.cycles:,} cycles; shipped {self.bytes_shipped:,} B of x "
            f"({self.bytes_touched:,} B touched; a broadcast: {self.bytes_broadcast:,} B), "
            f"returned {self.bytes_returned:,} B; {self.wall_seconds * 1e3:,.1f} ms wall{lost}. "
            f"Per worker: {per}"
        )


class ShardedMatrix:
    """A matrix put on a :class:`DaskDevice`: its row blocks, resident on the workers.
    ``h @ x``, ``h @ B`` and ``h.T`` as for a resident matrix of one device."""

    sharded = True

    def __init__(self, device: DaskDevice, A: sp.csr_array, blocks: list[_Block], tile: Any):
        self.device = device
        self.shape: tuple[int, int] = (int(A.shape[0]), int(A.shape[1]))
        self.dtype = A.dtype
        self.nnz = int(A.nnz)
        self.host = A  # the canonical matrix (for the transpose)
        self.blocks = blocks
        self.tile = tile
        self.key = next(device._keys)
        self._transpose: ShardedMatrix | None = None
        self.freed = False

    def __matmul__(self, x: Any) -> np.ndarray:
        from fiberflow.host.devices.resident import matmul

        return matmul(self, x)

    @property
    def T(self) -> ShardedMatrix:
        """The transpose, put on the workers the first time it is asked for."""
        if self._transpose is None or self._transpose.freed:
            self._transpose = self.device.put(sp.csr_array(self.host.T))
        return self._transpose

    def free(self) -> None:
        """Release the blocks on the workers (and the transpose's, if made)."""
        if not self.freed:
            self.freed = True
            self.device._free(self)
        if self._transpose is not None:
            self._transpose.free()

    def __enter__(self) -> ShardedMatrix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def __repr__(self) -> str:
        return (
            f"ShardedMatrix(shape={self.shape}, dtype={self.dtype}, nnz={self.nnz}, "
            f"{len(self.blocks)} blocks{', freed' if self.freed else ''})"
        )


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ToolchainError(
            "the dask device needs dask.distributed: pip install 'fiberflow[dask]'"
        ) from None
    return distributed


def _ok_to_retry(exc: BaseException) -> bool:
    """Whether ``exc`` from a block's call means its worker is gone (so the block can run on
    another), not a bad call that would fail anywhere."""
    return not isinstance(exc, FiberflowError) or isinstance(exc, DeviceError)


class DaskDevice:
    """See the module docstring. Options: ``client`` (a ``dask.distributed.Client``,
    required), ``device`` ("emu", "rtl" or "pynq": what each worker opens), ``workers`` (the
    worker addresses to use; default: those advertising ``FPGA``, else all), ``timeout``
    (seconds for the workers to open their devices), and any option of that device (e.g.
    ``overlay=`` for "pynq"), passed to ``ff.open`` on each worker."""

    name = "dask"
    sharded = True

    def __init__(
        self,
        *,
        client: Any = None,
        device: str = "emu",
        workers: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        distributed = _distributed()
        if not isinstance(client, distributed.Client):
            raise DeviceError(
                "ff.open('dask') needs client=, a dask.distributed.Client: "
                "client = Client('tcp://scheduler:8786') or Client(LocalCluster())"
            )
        if device == "dask" or not isinstance(device, str):
            raise DeviceError(
                f"device= names what each worker opens: 'emu', 'rtl' or 'pynq', not {device!r}"
            )
        self.client = client
        self.kind = device
        self._lock = threading.RLock()
        self._keys = itertools.count(1)
        self._closed = True
        self.last_stats: ShardedStats | None = None
        self.workers, self._resources = choose_workers(client.scheduler_info()["workers"], workers)
        futures = [
            client.submit(Shard, device, options, actor=True, workers=[w],
                          allow_other_workers=False, resources=self._resources, pure=False)
            for w in self.workers
        ]  # fmt: skip
        self.shards: list[Any] = []
        try:
            for w, f in zip(self.workers, futures, strict=True):
                try:
                    self.shards.append(f.result(timeout=timeout))
                except Exception as exc:
                    raise DeviceError(
                        f"worker {w} could not open a {device!r} device: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        self.alive = [True] * len(self.shards)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("this dask device is closed; open a new one with ff.open('dask')")

    # -- put -----------------------------------------------------------------------------

    def put(self, A: Any, *, tile: Any = None, dtype: Any = None) -> ShardedMatrix:
        """A's row blocks, balanced by nonzeros, packed and resident on the workers."""
        from fiberflow.host.devices.resident import as_csr_tensor

        with self._lock:
            self._check_open()
            # the canonical matrix, as one device would pack it (sorted, duplicates summed)
            csr = sp.csr_array(as_csr_tensor(A, dtype).to_scipy())
            live = [i for i, a in enumerate(self.alive) if a]
            if not live:
                raise DeviceError("every worker of this dask device is lost; open a new one")
            blocks = []
            for j, (r0, r1) in enumerate(row_blocks(csr.indptr, len(live))):
                cols, local = compact(csr[r0:r1])
                blocks.append(_Block(j, (r0, r1), cols, local, live[j]))
            h = ShardedMatrix(self, csr, blocks, tile)
            futures = [
                (b, self.shards[b.shard].put((h.key, b.index), b.matrix, tile))
                for b in blocks
                if b.matrix.nnz
            ]
            for b, f in futures:
                try:
                    f.result(timeout=PUT_TIMEOUT)
                except Exception as exc:
                    if not _ok_to_retry(exc):
                        h.free()
                        raise
                    self._lose(b.shard)
                    self._move(h, b)
            return h

    # -- calls ---------------------------------------------------------------------------

    def run(
        self, kernel: str, A: Any, dense: Any, *, dtype: Any, tile: Any, timeout: float
    ) -> np.ndarray:
        """``ff.spmv`` / ``ff.spmm`` on this device (called by them)."""
        from distributed.protocol import serialize_bytes

        from fiberflow.host import args
        from fiberflow.host.kernels import _dense_operand

        timeout = args.seconds(timeout, "timeout", DeviceError)
        with self._lock:
            self._check_open()
            own = isinstance(A, ShardedMatrix)
            if own and (A.device is not self or A.freed):
                raise DeviceError(
                    "this matrix is not resident on this dask device (freed, or put on another)"
                )
            h = A if own else self.put(A, tile=tile, dtype=dtype)
            try:
                x = _dense_operand(kernel, dense, h, dtype)
                return self._call(kernel, h, x, timeout, serialize_bytes)
            finally:
                if not own:
                    h.free()

    def _call(
        self, kernel: str, h: ShardedMatrix, x: np.ndarray, timeout: float, ser: Any
    ) -> np.ndarray:
        start = time.perf_counter()
        k = 1 if x.ndim == 1 else x.shape[1]
        out = np.zeros((h.shape[0],) if k == 1 else (h.shape[0], k), dtype=h.dtype)
        todo = [b for b in h.blocks if b.matrix.nnz]
        parts = {id(b): np.ascontiguousarray(x[b.cols]) for b in todo}
        # Dask's framing of one array of x's type and rank, measured on an empty one: the
        # bytes on the wire are that plus the data, counted without serialising x again
        framing = len(ser(np.empty((0,) * x.ndim, x.dtype)))
        touched = sum(parts[id(b)].nbytes for b in todo)
        shipped = touched + framing * len(todo)
        broadcast = x.nbytes * len(todo)
        done: list[tuple[str, RunStats]] = []
        returned = retries = 0
        lost: list[str] = []
        self._refresh()
        for b in todo:  # blocks on workers known to be gone move before the call
            if not self.alive[b.shard]:
                lost.append(self.workers[b.shard])
                self._move(h, b)
                retries += 1
        while todo:
            running = []
            for b in todo:  # every block's call first, so the workers run at once
                try:
                    f = self.shards[b.shard].run((h.key, b.index), kernel, parts[id(b)], timeout)
                except Exception as exc:  # a worker already known to be gone
                    f = exc
                running.append((b, f))
            todo = []
            for b, f in running:
                try:
                    if isinstance(f, Exception):
                        raise f
                    y, stats = f.result(timeout=timeout + 60)
                except Exception as exc:
                    if not _ok_to_retry(exc):
                        raise
                    lost.append(self.workers[b.shard])
                    self._lose(b.shard)
                    self._move(h, b)  # raises DeviceError when no worker is left
                    retries += 1
                    shipped += parts[id(b)].nbytes + framing  # its x goes again
                    todo.append(b)
                    continue
                r0, r1 = b.rows
                out[r0:r1] = y
                returned += y.nbytes + framing
                done.append((self.workers[b.shard], stats))
        self.last_stats = ShardedStats(
            kernel=kernel, blocks=tuple(done), bytes_shipped=shipped, bytes_touched=touched,
            bytes_broadcast=broadcast, bytes_returned=returned,
            wall_seconds=time.perf_counter() - start, retries=retries, lost_workers=tuple(lost),
        )  # fmt: skip
        return out

    # -- faults --------------------------------------------------------------------------

    def _lose(self, shard: int) -> None:
        self.alive[shard] = False

    def _refresh(self) -> None:
        """Count the workers the scheduler no longer lists as lost (a call to one of them
        would wait out Dask's connect timeout, 30 s by default)."""
        present = set(self.client.scheduler_info()["workers"])
        for i, w in enumerate(self.workers):
            if w not in present:
                self._lose(i)

    def _move(self, h: ShardedMatrix, b: _Block) -> None:
        """Put block ``b`` of ``h`` again, from the host's copy, on the live worker holding the
        fewest nonzeros of ``h``."""
        self._refresh()
        while True:
            live = [i for i, a in enumerate(self.alive) if a]
            if not live:
                raise DeviceError(
                    f"every worker of this dask device is lost ({', '.join(self.workers)}); "
                    "the call has no result. Start workers and open a new device"
                )
            load = {i: sum(c.matrix.nnz for c in h.blocks if c.shard == i) for i in live}
            target = min(live, key=lambda i: (load[i], i))
            try:
                self.shards[target].put((h.key, b.index), b.matrix, h.tile).result(
                    timeout=PUT_TIMEOUT
                )
            except Exception as exc:
                if not _ok_to_retry(exc):
                    raise
                self._lose(target)
                continue
            b.shard = target
            return

    def _free(self, h: ShardedMatrix) -> None:
        with self._lock:
            if self._closed:
                return
            for i in {b.shard for b in h.blocks}:
                if self.alive[i]:
                    try:
                        self.shards[i].free(h.key).result(timeout=30)
                    except Exception:  # a worker lost since: nothing left to free there
                        self._lose(i)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for i, s in enumerate(self.shards):
                if self.alive[i]:
                    try:
                        s.close().result(timeout=30)
                    except Exception:
                        pass  # the worker is gone; so is its device

    def __enter__(self) -> DaskDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def choose_workers(info: dict[str, Any], given: Any = None) -> tuple[list[str], Any]:
    """The workers to open devices on, from the scheduler's ``info`` (address -> worker
    info), and the resources their tasks ask for: the ``given`` addresses, else those that
    advertise ``FPGA``, else all."""
    if given is not None:
        chosen = list(given)
        if not chosen:
            raise DeviceError("workers= names no worker; leave it out to use them all")
        missing = [w for w in chosen if w not in info]
        if missing:
            raise DeviceError(f"no such worker(s) in the cluster: {', '.join(missing)}")
        return sorted(chosen), None
    fpga = [a for a, w in info.items() if w.get("resources", {}).get(RESOURCE)]
    if not info:
        raise DeviceError("the Dask cluster has no workers: start some (dask-worker ...)")
    return sorted(fpga or info), ({RESOURCE: 1} if fpga else None)


def compact(rows: sp.csr_array) -> tuple[np.ndarray, sp.csr_array]:
    """The columns ``rows`` has entries in (increasing), and ``rows`` with its columns
    renumbered by their place there: a block as its worker holds it."""
    cols = np.unique(rows.indices)
    local = sp.csr_array(
        (rows.data, np.searchsorted(cols, rows.indices), rows.indptr),
        shape=(rows.shape[0], len(cols)),
    )
    return cols, local


def row_blocks(indptr: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` row ranges covering every row, each with about nnz / parts nonzeros (ranges
    that would be empty are left out; a matrix with no rows gives none)."""
    m = len(indptr) - 1
    if m == 0:
        return []
    targets = indptr[-1] * np.arange(1, parts) / parts
    cuts = np.searchsorted(indptr, targets, side="left")
    bounds = sorted({0, m, *(int(c) for c in cuts if 0 < c < m)})
    return list(itertools.pairwise(bounds))
