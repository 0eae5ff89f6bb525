"""Resident matrices: a matrix packed once into a DMA image that stays in device memory.

``h = dev.put(A)`` packs ``A`` (CSR tiles, format "ds") into a device buffer and returns a
:class:`ResidentMatrix`. ``ff.spmv(h, x, device=dev)`` then runs on that image without
packing again, which is what iterative methods (CG, PageRank, power iteration) need. A
non-resident call packs into a temporary resident matrix and frees it afterwards, so both
paths are the same code.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp

from fiberflow.errors import DeviceError, FiberflowError, ImageError, ShapeError
from fiberflow.host.devices.device import Buffer
from fiberflow.host.formats import dtypes
from fiberflow.host.formats.tensor import Tensor
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import job
from fiberflow.host.images import pack as packing

# Default tile: 8192 rows x 65536 columns. 65536 columns is the widest span 16-bit local
# coordinates reach, so a row crosses as few tiles as possible (each tile costs each of its rows
# 4 bytes of segment array). 8192 rows keep a lane's output block at 32 KiB of on-chip memory,
# while each 256 KiB slice of x that a tile loads is shared by many rows. docs/jobs.md has the
# arithmetic.
DEFAULT_TILE = (8192, 65536)


def default_tile(shape: tuple[int, ...], lanes: int) -> tuple[int, int]:
    """DEFAULT_TILE, with shorter row tiles when the matrix is too short to give every lane at
    least one row tile (row counts rounded up to a multiple of 64)."""
    per_lane = -(-shape[0] // max(lanes, 1))
    rows = min(DEFAULT_TILE[0], max(64, -(-per_lane // 64) * 64))
    return rows, DEFAULT_TILE[1]


def is_handle(x: Any) -> bool:
    """Whether ``x`` is a matrix resident on a device: a :class:`ResidentMatrix`, or a dask
    device's row blocks (``ShardedMatrix``)."""
    return isinstance(x, ResidentMatrix) or getattr(x, "sharded", False)


def as_csr_tensor(A: Any, dtype: Any = None, what: str = "A") -> Tensor:
    """``A`` (a scipy sparse matrix/array or an ff.Tensor) as a 2-D "ds" float32/int32 tensor."""
    if is_handle(A):  # put again, or run on a device that did not make it
        raise DeviceError(
            f"{what} is already resident on a device (a handle from put()): use it with the "
            "device that made it, or give the matrix itself to put it on another device"
        )
    if isinstance(A, Tensor):
        if A.ndim != 2:
            raise ShapeError(f"{what} must be a 2-D matrix, but this ff.Tensor is {A.ndim}-D")
        if A.format == "ds" and (dtype is None or np.dtype(dtype) == A.dtype):
            dtypes.coerce(A.values, dtype, f"{what}'s values")
            return A
        # Other formats hold the same entries; CSR tiles are what the kernels stream.
        return Tensor.from_scipy(A.to_scipy(), format="ds", dtype=dtype)
    if sp.issparse(A):
        if A.ndim != 2:
            raise ShapeError(f"{what} must be a 2-D matrix, but this scipy array is {A.ndim}-D")
        return Tensor.from_scipy(A, format="ds", dtype=dtype)
    if isinstance(A, np.ndarray):
        raise FiberflowError(
            f"{what} is a dense numpy array; fiberflow's kernels take sparse matrices. Convert "
            "it with scipy.sparse.csr_array(A) (or ff.Tensor.from_numpy(A, 'ds'))"
        )
    raise FiberflowError(
        f"{what} must be a scipy.sparse matrix or array, an ff.Tensor, or a handle from "
        f"dev.put(), not {type(A).__name__}"
    )


def _release(device: Any, buffer: Buffer) -> None:
    """Free a resident image's buffer unless it is already free or its device is closed.
    Run by :meth:`ResidentMatrix.free` or by the handle's finalizer, so it holds no reference
    to the handle; a device that refuses (already torn down) is left alone."""
    if buffer.freed or getattr(device, "closed", False):
        return
    try:
        device.free(buffer)
    except FiberflowError:
        pass


class ResidentMatrix:
    """A matrix whose DMA image lives in a device buffer. Get one from ``dev.put(A)``.

    The buffer is freed by :meth:`free`, at the end of a ``with dev.put(A) as h:`` block, or
    when the handle is garbage-collected. ``crc`` is the image's CRC-32 (its header checksum)
    as checked in the device buffer right after the copy; :meth:`verify` checks it again.
    """

    def __init__(
        self,
        device: Any,
        buffer: Buffer,
        tensor: Tensor,
        tile: tuple[int, ...],
        directory: job.Directory,
        crc: int,
    ) -> None:
        self.device = device
        self.buffer = buffer
        self.shape: tuple[int, int] = (tensor.shape[0], tensor.shape[1])
        self.dtype = tensor.dtype
        self.nnz = tensor.nnz
        self.tile = tile
        self.directory = directory
        self.crc = crc
        self._schedules: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        # Every row tile has a tile: a job needs no zeros written over y first (FLAG_COVERED).
        self.covered = job.covers(directory, self.shape[0])
        self._finalizer = weakref.finalize(self, _release, device, buffer)
        self._finalizer.atexit = False  # at exit the devices themselves are being torn down
        self._transpose: ResidentMatrix | None = None
        self._made_by: ResidentMatrix | None = None  # the handle whose .T this is
        self._transpose_lock = threading.Lock()

    @property
    def image_bytes(self) -> int:
        return self.buffer.nbytes

    @property
    def freed(self) -> bool:
        return self.buffer.freed

    def schedule(self, lanes: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The lane table and tile list for ``lanes`` lanes (cached: it depends only on A)."""
        key = (lanes, k)
        if key not in self._schedules:
            self._schedules[key] = job.schedule(self.directory, lanes, k)
        return self._schedules[key]

    def free(self) -> None:
        """Release the device memory (and the transposed copy's, if :attr:`T` made one); the
        handle can no longer be used."""
        self._finalizer()
        t = self._transpose
        if t is not None and t._made_by is self:
            t._finalizer()

    def __matmul__(self, x: Any) -> np.ndarray:
        """``h @ x`` (a vector: ``ff.spmv``) or ``h @ B`` (a matrix: ``ff.spmm``) on the
        handle's device."""
        return matmul(self, x)

    @property
    def T(self) -> ResidentMatrix:
        """The transpose, resident on the same device: a copy made the first time it is asked
        for (from the image in device memory) and kept until this handle is freed."""
        check_handle(self, self.device)
        with self._transpose_lock:
            t = self._transpose
            if t is None or t.freed:
                self.verify()
                A = packing.unpack(self.buffer.array.tobytes()).to_scipy()
                t = make_resident(self.device, sp.csr_array(A.T))
                t._transpose, t._made_by = self, self
                self._transpose = t
            return t

    def verify(self) -> None:
        """Check the image in device memory against :attr:`crc`; raise ImageError when a
        byte has changed since ``put``."""
        self.buffer.invalidate()
        found = di.checksum(self.buffer.array)
        stored = int(self.buffer.array[di.CHECKSUM_OFFSET : di.CHECKSUM_OFFSET + 4].view("<u4")[0])
        if found != self.crc or stored != self.crc:
            raise ImageError(
                f"the resident image in device memory is corrupted (CRC-32 {found:#010x}, "
                f"header {stored:#010x}, {self.crc:#010x} at put); free the handle and put "
                "the matrix on the device again"
            )

    def __enter__(self) -> ResidentMatrix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def __repr__(self) -> str:
        state = "freed" if self.freed else f"{self.image_bytes} bytes at {self.buffer.address:#x}"
        return (
            f"ResidentMatrix(shape={self.shape}, dtype={self.dtype}, nnz={self.nnz}, "
            f"tile={self.tile}, {state})"
        )


def matmul(h: Any, x: Any) -> np.ndarray:
    """``h @ x`` for a handle ``h`` from any device's ``put``: ``ff.spmv`` for a vector,
    ``ff.spmm`` for a matrix, on ``h.device``."""
    from fiberflow.host.kernels import spmm, spmv  # (kernels builds on this module)

    if sp.issparse(x) or isinstance(x, Tensor) or is_handle(x):
        raise ShapeError("h @ B takes a dense vector or matrix; for a sparse B use ff.spgemm(A, B)")
    arr = np.asarray(x)
    if arr.ndim == 1:
        return spmv(h, arr, device=h.device)
    if arr.ndim == 2:
        return spmm(h, arr, device=h.device)
    raise ShapeError(f"h @ x takes a 1-D vector or a 2-D matrix, not shape {arr.shape}")


def make_resident(device: Any, A: Any, tile: Any = None, dtype: Any = None) -> ResidentMatrix:
    """Pack ``A`` and copy its image into a new buffer of ``device``."""
    t = as_csr_tensor(A, dtype)
    check = getattr(device, "check_tile", None)  # devices whose buffers bound the tile shape
    if tile is not None and check is not None:
        check(tile, t.dtype, shape=t.shape)  # before packing: TileShapeError, not TOO_BIG later
    fit = getattr(device, "pack_to_fit", None)
    if tile is None and fit is not None:
        img = fit(t)
    else:
        if tile is None:
            tile = default_tile(t.shape, getattr(device, "lanes", 1))
        img = packing.pack(t, tile)
        check_image = getattr(device, "check_image", None)  # tiles must fit its buffers
        if check_image is not None:
            check_image(img)
    buf = device.alloc(img.nbytes)
    crc = int(img.data[di.CHECKSUM_OFFSET : di.CHECKSUM_OFFSET + 4].view("<u4")[0])
    try:
        buf.write(img.data)
        buf.flush()
        h = ResidentMatrix(device, buf, t, img.tile, job.Directory.of(img), crc)
    except BaseException:
        device.free(buf)
        raise
    try:
        h.verify()  # the bytes as they landed in device memory
    except ImageError:
        h.free()
        raise
    # Nothing on the host has reason to write a resident image again: a stray numpy write
    # through the buffer now fails at once instead of corrupting the matrix (the device
    # writes only y, whose range every job checks against A's).
    buf.array.flags.writeable = False
    return h


def check_handle(h: ResidentMatrix, device: Any) -> None:
    if h.freed:
        raise DeviceError("this resident matrix was freed; put the matrix on the device again")
    if h.device is not device:
        raise DeviceError(
            "this resident matrix lives on another device; pass device= the device that "
            "returned it from put(), or put the matrix on this device"
        )
