"""Result regions: where a device writes a sparse result whose size is known only at the end
(SpGEMM, element-wise add, a sparse SpMSpV), and how the host reads one back.

The host allocates a region for ``capacity`` entries before the job. Every array sits at an
offset that depends on ``capacity`` and the rank alone, so the writer needs no sizes ahead; it
fills the arrays, then the header's counts, and sets ``state`` last. docs/dma-image.md gives
the layout byte for byte. :func:`decode` trusts nothing in the region: a region that is
incomplete, full, or inconsistent raises :class:`ImageError` and never yields a wrong tensor.
"""

from __future__ import annotations

import numpy as np

from fiberflow.errors import ImageError, ShapeError
from fiberflow.host.formats.fibertree import Level
from fiberflow.host.formats.formats import Format
from fiberflow.host.formats.tensor import Tensor

MAGIC = 0x53524646  # "FFRS", little-endian
VERSION = 1
HEADER = 64
MAX_NDIM = 8
WRITING, COMPLETE, FULL = 0, 1, 2
_TYPES = {0: np.dtype(np.float32), 1: np.dtype(np.int32)}


def _align(n: int) -> int:
    return (n + 15) & ~15


def layout(ndim: int, capacity: int) -> tuple[list[tuple[int, int]], int, int]:
    """((seg offset, crd offset) per storage level, values offset, region bytes)."""
    if not 1 <= ndim <= MAX_NDIM:
        raise ShapeError(f"a result region holds 1 to {MAX_NDIM} modes, not {ndim}")
    if not 0 <= capacity < 2**31:
        raise ShapeError(f"a result region's capacity is 0 to 2^31 - 1 entries, not {capacity}")
    at, levels = HEADER, []
    for _ in range(ndim):
        seg = at
        crd = seg + _align(4 * (capacity + 1))
        at = crd + _align(4 * capacity)
        levels.append((seg, crd))
    return levels, at, at + _align(4 * capacity)


def region_bytes(ndim: int, capacity: int) -> int:
    """The bytes to allocate for a rank-``ndim`` result of at most ``capacity`` entries."""
    return layout(ndim, capacity)[2]


def encode(t: Tensor, capacity: int) -> bytes:
    """The region a device would write for ``t`` (every level compressed, in ``t``'s mode
    order, no empty fibers); a ``FULL`` region holding only its header when ``t`` has more
    entries than ``capacity``. The reference writer, for tests and for devices in Python."""
    coords, values = t.to_coo()
    order = t.fmt.order
    stored = coords[list(order)]
    keys = np.lexsort(stored[::-1]) if stored.shape[1] else np.zeros(0, np.int64)
    stored, values = stored[:, keys], values[keys]
    levels, vals_at, size = layout(t.ndim, capacity)
    buf = bytearray(size)
    head = np.frombuffer(buf, np.uint32, 16)
    head[0] = MAGIC
    head[1] = VERSION | (t.ndim << 16) | ((0 if t.dtype == np.float32 else 1) << 24)
    head[2] = capacity
    n = stored.shape[1]
    if n > capacity:
        head[3], head[4] = FULL, n
        return bytes(buf)
    # one position per distinct prefix at each level (so no fiber is empty)
    parent = np.zeros(n, np.int64)
    nparent = 1
    for k, (seg_at, crd_at) in enumerate(levels):
        new = np.ones(n, bool)
        if n:
            new[1:] = (parent[1:] != parent[:-1]) | (stored[k][1:] != stored[k][:-1])
        crd = stored[k][new]
        counts = np.bincount(parent[new], minlength=nparent)
        seg = np.concatenate([[0], np.cumsum(counts)])
        np.frombuffer(buf, np.uint32, len(seg), seg_at)[:] = seg
        np.frombuffer(buf, np.uint32, len(crd), crd_at)[:] = crd
        head[6 + k] = len(crd)
        parent = np.cumsum(new) - 1
        nparent = len(crd)
    np.frombuffer(buf, np.uint32, n, vals_at)[:] = values.view(np.uint32)
    head[4] = n
    head[3] = COMPLETE  # last: the region is whole
    return bytes(buf)


def decode(region: bytes | bytearray | memoryview | np.ndarray, shape: tuple[int, ...],
           order: tuple[int, ...] | None = None) -> Tensor:  # fmt: skip
    """The tensor of shape ``shape`` (mode order ``order``, default 0, 1, ...) in a region a
    device wrote, as an ``ff.Tensor`` with every level compressed. Checks everything first."""
    buf = np.frombuffer(memoryview(region).cast("B"), np.uint8)  # type: ignore[arg-type]
    if len(buf) < HEADER:
        raise ImageError(f"a result region has a {HEADER}-byte header; this one is {len(buf)}")
    head = buf[:HEADER].view("<u4")
    if int(head[0]) != MAGIC or int(head[1]) & 0xFFFF != VERSION:
        raise ImageError("not a fiberflow result region (magic or version)")
    ndim, kind = (int(head[1]) >> 16) & 0xFF, int(head[1]) >> 24
    capacity, state, nvals = int(head[2]), int(head[3]), int(head[4])
    if ndim != len(shape) or kind not in _TYPES:
        raise ImageError(f"the region holds a {ndim}-mode result of value type {kind}, "
                         f"not a {len(shape)}-mode float32 or int32 one")  # fmt: skip
    try:
        levels, vals_at, size = layout(ndim, capacity)
    except ShapeError as exc:  # a header no writer makes: the region is damaged
        raise ImageError(f"the region's header is damaged: {exc}") from None
    if len(buf) < size:
        raise ImageError(f"a region for {capacity} entries is {size} bytes; this one is {len(buf)}")
    if state == FULL:
        raise ImageError(
            f"the result has at least {nvals} entries, more than the region's {capacity}: "
            f"run it again with room for {nvals}"
        )
    if state != COMPLETE:
        raise ImageError("the result region is incomplete (the job did not finish writing it)")
    order = tuple(range(ndim)) if order is None else tuple(order)
    fmt = Format.parse("s" * ndim + (":" + ",".join(map(str, order)) if order else ""), ndim)
    npos = [int(v) for v in head[6 : 6 + ndim]]
    if nvals > capacity or any(p > nvals for p in npos) or npos[-1] != nvals:
        raise ImageError(f"the region's counts ({npos}, {nvals} values) do not fit together")
    out, parents = [], 1
    for k, ((seg_at, crd_at), n) in enumerate(zip(levels, npos, strict=True)):
        seg = buf[seg_at : seg_at + 4 * (parents + 1)].view("<u4").astype(np.int64)
        crd = buf[crd_at : crd_at + 4 * n].view("<u4").astype(np.int64)
        size_k = shape[fmt.order[k]]
        empty = np.diff(seg) <= 0 if k else np.diff(seg) < 0  # (the root's fiber may be)
        if seg[0] != 0 or seg[-1] != n or empty.any():
            raise ImageError(f"level {k}'s segment array is not 0 < ... < {n} (an empty fiber, "
                             "or counts that do not add up)")  # fmt: skip
        if n and (crd.max() >= size_k):
            raise ImageError(f"level {k} has a coordinate past its size {size_k}")
        inner = np.diff(crd) > 0
        starts = seg[1:-1]
        inner[starts[starts < n] - 1] = True  # a fiber's first coordinate follows another fiber
        if not inner.all():
            raise ImageError(f"level {k}'s coordinates are not increasing within a fiber")
        out.append(Level("s", size_k, seg, crd.astype(np.int32)))
        parents = n
    values = buf[vals_at : vals_at + 4 * nvals].view("<u4").copy().view(_TYPES[kind])
    return Tensor(tuple(shape), fmt, out, values)
