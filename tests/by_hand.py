"""An SpMV job submitted by hand on a resident matrix, past the host's checks (ff.spmv would
refuse a damaged image or descriptor before the doorbell): what the firmware's own checks
are tested with."""

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
