"""``ff.pack`` and ``ff.unpack``: a tensor to a DMA image and back."""

from __future__ import annotations

from typing import Literal

import numpy as np

from fiberflow.errors import FiberflowError
from fiberflow.host.formats.fibertree import check_lengths
from fiberflow.host.formats.tensor import Tensor
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import pack_c
from fiberflow.host.images.pack_numpy import pack_numpy
from fiberflow.host.images.unpack import decode


def pack(
    tensor: Tensor,
    tile: int | tuple[int, ...] | None = None,
    *,
    coord_bits: int | None = None,
    impl: Literal["auto", "c", "numpy"] = "auto",
) -> di.DmaImage:
    """Split ``tensor`` into tiles and pack it into one DMA image.

    Parameters
    ----------
    tensor : Tensor
        What to pack. Its format is kept: each tile is a fibertree of the same format.
    tile : int or tuple of int, optional
        The tile shape in logical mode order; an int applies to every mode. Tiles larger than
        the tensor are cut to it. By default each mode is cut every 65536 coordinates.
    coord_bits : {16, 32}, optional
        Width of the tile-local coordinates. By default 16 when the tile allows it.
    impl : {"auto", "c", "numpy"}
        The C fast path (default when built) or the numpy reference. Both give the same bytes.
    """
    if not isinstance(tensor, Tensor):
        raise FiberflowError(
            f"pack expects an ff.Tensor, not {type(tensor).__name__}; build one with "
            "ff.Tensor.from_scipy / from_numpy / from_coo"
        )
    # The packers trust the tree; its arrays are public, so their lengths are checked again
    # (coordinates are checked by the packers themselves).
    check_lengths(tensor.levels, tensor.values, "pack")
    geo = di.make_geometry(tensor.shape, tensor.fmt, tensor.dtype, tile, coord_bits)
    if impl == "auto":
        impl = "c" if pack_c.available() else "numpy"
    if impl == "c":
        if not pack_c.available():
            raise FiberflowError(
                "the C packer was not built; reinstall fiberflow with a C compiler present "
                "(pip install .), or pass impl='numpy'"
            )
        data, lay, tail = pack_c.pack_c(tensor, geo)
    elif impl == "numpy":
        data, lay = pack_numpy(tensor, geo)
        tail = None
    else:
        raise FiberflowError(f"impl must be 'auto', 'c' or 'numpy', not {impl!r}")
    di.seal(data, tail)
    nvals = int(lay.npos[:, -1].sum()) if len(lay.tile_ids) else 0
    return di.DmaImage(data, geo, len(lay.tile_ids), nvals)


def unpack(image: di.DmaImage | bytes | bytearray | memoryview | np.ndarray) -> Tensor:
    """Rebuild the tensor held in a DMA image (or raw image bytes, e.g. read from a file or a
    device buffer). Corrupted, truncated or non-canonical images raise :class:`ff.ImageError`
    (and nothing else)."""
    data = image.data if isinstance(image, di.DmaImage) else image
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(data, dtype=np.uint8)
    else:
        raise FiberflowError(f"unpack expects an ff.DmaImage or bytes, not {type(image).__name__}")
    tensor, geo = decode(arr)
    # decode has checked everything it reads; the bytes it does not read (padding, reserved
    # fields) and the fibertree's canonical form (no empty fiber, no missing dense tile) are
    # checked at once by packing the tensor again: the image must be exactly those bytes.
    again = pack(tensor, geo.tile, coord_bits=8 * geo.coord_bytes).data
    if di.records_extents(geo) and tensor.nnz:
        # Windows left unrecorded (0, 0: images packed before they were recorded) are accepted:
        # compared as such, with the image's own checksum (decode has checked it).
        h = arr[: di.HEADER.itemsize].view(di.HEADER)[0]
        n, at = int(h["n_tiles"]), int(h["dir_offset"])
        unrecorded = (di.extents_of(arr, at, n) == 0).all(axis=1)
        if unrecorded.any():
            again = again.copy()
            di.extents_of(again, at, n)[unrecorded] = 0
            sums = slice(di.CHECKSUM_OFFSET, di.CHECKSUM_OFFSET + 4)
            again[sums] = arr[sums]
    if not np.array_equal(again, arr):
        raise di.image_error(
            "the image is not laid out exactly as ff.pack lays it out (non-zero padding or "
            "reserved bytes, an empty fiber, a missing dense tile, ...)"
        )
    return tensor
