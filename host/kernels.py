"""``ff.spmv`` and ``ff.spmm``: build a job, hand it to a device, return numpy.

The launch pipeline, one step per line of :func:`_launch`: operand checks -> pack A (or reuse a
resident image) -> tile schedule -> copy x / B into a device buffer -> write the job
descriptor -> submit -> wait -> copy y / C out. Only the :class:`Device` protocol is used, so
every device runs the same code.

``device=`` is required: there is no default device, so no hidden state decides where a
kernel runs or whose statistics ``last_stats`` holds. Omitting it raises a DeviceError that
says how to open one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fiberflow.errors import DeviceError, DTypeError, ShapeError
from fiberflow.host import args
from fiberflow.host.compiler.kernel import compile
from fiberflow.host.devices.device import DEFAULT_TIMEOUT, Device
from fiberflow.host.devices.resident import ResidentMatrix, check_handle, make_resident
from fiberflow.host.formats import dtypes
from fiberflow.host.images import job


def spmv(
    A: Any,
    x: Any,
    *,
    device: Device | None = None,
    dtype: Any = None,
    tile: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    semiring: str = "plus_times",
) -> np.ndarray:
    """``y = A @ x`` on a device.

    Parameters
    ----------
    A : scipy.sparse matrix or array, ff.Tensor, or a handle from ``device.put(A)``
        float32 or int32 (other types need ``dtype=``).
    x : array_like, shape (A.shape[1],)
        Same value type as A.
    device : Device
        Where to run, from ``ff.open(...)``. Required.
    dtype : {"float32", "int32"}, optional
        Convert A and x explicitly (float64 is rounded to float32; see
        ``fiberflow.host.formats.dtypes``).
    tile : (rows, cols), optional
        Tile shape when A is packed here (default (8192, 65536), with shorter row tiles for
        short matrices so that every lane gets work); ignored for a resident A.
    timeout : float
        Seconds to wait for the device.
    semiring : str
        A GraphBLAS name: ``plus_times`` (the overlay's), or ``min_plus``, ``max_plus``,
        ``max_times``, ``min_times``, ``lor_land``, which run on the emulator only, through
        the compiler (an empty row gives the semiring's identity, e.g. +inf for min_plus).

    Returns
    -------
    numpy.ndarray, shape (A.shape[0],), A's value type. float32 sums are sequential in
    increasing column order (docs/emulator.md); int32 wraps around on overflow.
    """
    if semiring != "plus_times":
        return _other_semiring("y(i) = A(i,j) * x(j)", {"x": "d", "y": "d"}, A, x, device,
                               dtype, semiring)  # fmt: skip
    return _launch("spmv", A, x, device, dtype, tile, timeout)


def spmm(
    A: Any,
    B: Any,
    *,
    device: Device | None = None,
    dtype: Any = None,
    tile: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
    semiring: str = "plus_times",
) -> np.ndarray:
    """``C = A @ B`` for a dense ``B`` of shape (A.shape[1], k), on a device.

    Parameters and results as :func:`spmv`; C has shape (A.shape[0], k). Each column of C is
    bit-identical to ``spmv(A, B[:, j])``.
    """
    if semiring != "plus_times":
        return _other_semiring("C(i,n) = A(i,j) * B(j,n)", {"B": "dd", "C": "dd"}, A, B,
                               device, dtype, semiring)  # fmt: skip
    return _launch("spmm", A, B, device, dtype, tile, timeout)


def _other_semiring(expression: str, formats: dict[str, str], A: Any, dense: Any, device: Any,
                    dtype: Any, semiring: str) -> np.ndarray:  # fmt: skip
    """A semiring the overlay's lanes do not have: the compiled graph, on the emulator."""
    if isinstance(A, ResidentMatrix):
        raise DeviceError(
            f"semiring {semiring!r} runs on the emulator from the matrix itself, not from a "
            "resident handle: pass the scipy matrix"
        )
    k = compile(expression, formats, semiring=semiring)
    name = "x" if "x" in formats else "B"
    return k(A=A, **{name: dense}, device=device, dtype=dtype)


def _launch(
    kernel: str, A: Any, dense: Any, device: Any, dtype: Any, tile: Any, timeout: float
) -> np.ndarray:
    if device is None:
        raise DeviceError(
            f"ff.{kernel} needs device=: open one with dev = ff.open('emu') and pass "
            f"ff.{kernel}(A, ..., device=dev); fiberflow keeps no default device"
        )
    if getattr(device, "sharded", False):  # the dask device runs the call on its workers
        return device.run(kernel, A, dense, dtype=dtype, tile=tile, timeout=timeout)
    if not all(hasattr(device, a) for a in ("alloc", "submit", "wait", "lanes")):
        # (isinstance against the runtime-checkable Protocol costs more than a small SpMV)
        raise DeviceError(f"device= must be a device from ff.open(), not {type(device).__name__}")
    timeout = args.seconds(timeout, "timeout", DeviceError)
    if isinstance(A, ResidentMatrix):
        check_handle(A, device)
        if dtype is not None and dtypes.check_supported(dtype) != A.dtype:
            raise DTypeError(
                f"the resident matrix holds {A.dtype}; it cannot be converted to {dtype} "
                "in place. Put the matrix on the device again with dtype="
            )
        # The image may have been changed in device memory since put (a write that got past
        # the read-only view, a device fault). Devices whose memory is the host's own check
        # its CRC before every job; a board's host CPU would spend longer on it than the
        # fabric on the job, so it checks at put only (docs/dma-image.md).
        if getattr(device, "recheck_images", True):
            A.verify()
        return _run(kernel, A, _dense_operand(kernel, dense, A, dtype), device, timeout)
    h = make_resident(device, A, tile, dtype)  # a temporary resident matrix
    try:
        return _run(kernel, h, _dense_operand(kernel, dense, h, dtype), device, timeout)
    finally:
        h.free()


def _dense_operand(kernel: str, dense: Any, h: ResidentMatrix, dtype: Any) -> np.ndarray:
    name = "x" if kernel == "spmv" else "B"
    if hasattr(dense, "toarray") and not isinstance(dense, np.ndarray):
        raise ShapeError(f"{name} must be dense; convert it with {name}.toarray()")
    arr = np.asarray(dense)
    m, n = h.shape
    if kernel == "spmv":
        if arr.ndim != 1:
            raise ShapeError(
                f"x must be a 1-D vector of length {n}, not an array of shape {arr.shape}; "
                "use ff.spmm for several right-hand sides"
            )
        if arr.shape[0] != n:
            raise ShapeError(f"x has length {arr.shape[0]} but A has {n} columns ({m} x {n})")
    else:
        if arr.ndim != 2:
            raise ShapeError(f"B must be a 2-D array ({n}, k), not of shape {arr.shape}")
        if arr.shape[0] != n:
            raise ShapeError(f"B has {arr.shape[0]} rows but A has {n} columns ({m} x {n})")
        if arr.shape[1] < 1:
            raise ShapeError("B has no columns; C = A @ B would be empty")
    if dtype is None and arr.dtype != h.dtype:
        if arr.dtype in dtypes.SUPPORTED:
            raise DTypeError(
                f"{name} is {arr.dtype} but A is {h.dtype}; convert one of them, e.g. "
                f"{name}.astype(np.{h.dtype})"
            )
        arr = dtypes.coerce(arr, None, name)  # raises, with a hint to pass dtype=
    out = dtypes.coerce(arr, h.dtype if dtype is None else dtype, name)
    return np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("<"))


def _run(kernel: str, h: ResidentMatrix, x: np.ndarray, device: Any, timeout: float) -> np.ndarray:
    m, n = h.shape
    k = 1 if kernel == "spmv" else x.shape[1]
    table, tiles = h.schedule(device.lanes, k)
    buffers = []
    try:
        for nbytes in (x.nbytes, m * k * 4, job.descriptor_bytes(len(table), len(tiles))):
            buffers.append(device.alloc(nbytes))
        xb, yb, jb = buffers
        # Before anything is written: a buffer overlapping another (a faulty allocator) would
        # let a write destroy an operand, A's resident image first of all.
        job.check_disjoint(
            {
                "matrix image": (h.buffer.address, h.image_bytes),
                "dense input": (xb.address, xb.nbytes),
                "output": (yb.address, yb.nbytes),
                "descriptor": (jb.address, jb.nbytes),
            },
            ("dense input", "output", "descriptor"),
        )
        xb.write(x)
        xb.flush()
        job.write_descriptor(
            jb.array,
            kernel=kernel,
            dtype=h.dtype,
            m=m,
            n=n,
            k=k,
            a_addr=h.buffer.address,
            a_bytes=h.image_bytes,
            x_addr=xb.address,
            y_addr=yb.address,
            lane_table=table,
            tile_list=tiles,
            flags=job.FLAG_COVERED if h.covered else 0,
        )
        jb.flush()
        device.wait(device.submit(jb), timeout)
        yb.invalidate()
        y = yb.view(np.dtype(h.dtype).newbyteorder("<"), m * k).astype(h.dtype)
    finally:
        for b in buffers:
            device.free(b)
    return y if kernel == "spmv" else y.reshape(m, k)
