"""An SpMV job submitted by hand on a resident matrix, past the host's checks (ff.spmv would
refuse a damaged image or descriptor before the doorbell): what the firmware's own checks
are tested with; and jobs with descriptor flags the kernels do not set (ACCUMULATE,
COVERED)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fiberflow.host.images import dma_image as di
from fiberflow.host.images import job as jobs


def writable_image(h: Any) -> tuple[np.ndarray, int]:
    """The resident image's bytes, made writable so that a test can damage them, and its
    directory's offset."""
    data = h.buffer.array
    data.flags.writeable = True  # a resident image is read-only on the host
    return data, int(data[: di.HEADER.itemsize].view(di.HEADER)[0]["dir_offset"])


def run_spmv(
    dev: Any, h: Any, x: np.ndarray, m: int,
    patch: Callable[[np.ndarray], None] | None = None, timeout: float = 20,
) -> None:  # fmt: skip
    """y = A @ x on handle ``h`` (``m`` rows): the descriptor written as ff.spmv writes it,
    ``patch`` applied to its bytes, the job submitted and waited for; its buffers freed
    whatever the job's end."""
    table, tiles = h.schedule(dev.lanes, 1)
    xb, yb = dev.alloc(x.nbytes), dev.alloc(4 * m)
    jb = dev.alloc(jobs.descriptor_bytes(len(table), len(tiles)))
    try:
        xb.write(x)
        jobs.write_descriptor(
            jb.array, kernel="spmv", dtype=h.dtype, m=m, n=len(x), k=1,
            a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address,
            y_addr=yb.address, lane_table=table, tile_list=tiles,
        )  # fmt: skip
        if patch is not None:
            patch(jb.array)
        dev.wait(dev.submit(jb), timeout)
    finally:
        for b in (xb, yb, jb):
            dev.free(b)


def run_with_flags(
    dev: Any, h: Any, x: np.ndarray, flags: int, y0: np.ndarray, timeout: float = 60
) -> np.ndarray:
    """y = A @ x (SpMV; SpMM when x is (n, k)) on handle ``h`` by a descriptor with ``flags``,
    y's buffer first holding ``y0`` (m or (m, k) float32); returns y. Its buffers are freed
    whatever the job's end."""
    (m, n), k = h.shape, 1 if x.ndim == 1 else x.shape[1]
    table, tiles = h.schedule(dev.lanes, k)
    xb, yb = dev.alloc(x.nbytes), dev.alloc(y0.nbytes)
    jb = dev.alloc(jobs.descriptor_bytes(len(table), len(tiles)))
    try:
        xb.write(x)
        yb.write(y0)
        jobs.write_descriptor(
            jb.array, kernel="spmv" if x.ndim == 1 else "spmm", dtype=h.dtype, m=m, n=n, k=k,
            a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address,
            y_addr=yb.address, lane_table=table, tile_list=tiles, flags=flags,
        )  # fmt: skip
        dev.wait(dev.submit(jb), timeout)
        return yb.view(np.float32, m * k).reshape(y0.shape).copy()
    finally:
        for b in (xb, yb, jb):
            dev.free(b)
