"""The job descriptor and the tile schedule: what the host hands a device for one kernel call.

A job is a descriptor in a device buffer that points (by device address) at the operands: A's
DMA image, the dense input x (SpMV) or B (SpMM, row-major) and the output y / C (row-major).
The descriptor ends with the tile schedule: which lane runs which tiles of A, in what order.
The byte layout is documented byte for byte in ``docs/jobs.md``; the firmware on the soft CPU
parses the same bytes, so everything is little-endian, 32-bit aligned, fixed header + arrays.

The schedule fixes the accumulation order (``docs/emulator.md``): a lane owns whole row tiles
(every tile of a row tile runs on the same lane), and runs them in increasing directory order,
i.e. row tile by row tile, column tiles left to right. Within a tile, rows are independent and
each row adds its products in increasing column order onto the row's running sum. So each
output is a sequential dot product in increasing column order, whatever the tile shape and
however row tiles are spread over lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiberflow.errors import DeviceError
from fiberflow.host.formats import dtypes
from fiberflow.host.images import dma_image as di
from fiberflow.host.stats import TILE_OVERHEAD_CYCLES

MAGIC = 0x424A4646  # the bytes "FFJB" read as a little-endian u32
VERSION = 1
KERNELS = {"spmv": 1, "spmm": 2}
KERNEL_NAMES = {code: name for name, code in KERNELS.items()}
OP_PLUS_TIMES = 0  # the (+, *) semiring; other semirings get other codes later
FLAG_ACCUMULATE = 1  # y / C already holds the initial sums; otherwise the device zeroes it
# Every row tile has a tile, so every row of y / C is written whole and needs no zeros first
# (without ACCUMULATE; the device checks it): the host sets it when it holds.
FLAG_COVERED = 2
FLAGS = FLAG_ACCUMULATE | FLAG_COVERED

HEADER = np.dtype(
    [
        ("magic", "<u4"),
        ("version", "<u2"),
        ("kernel", "u1"),
        ("dtype", "u1"),
        ("op", "u1"),
        ("flags", "u1"),
        ("lanes", "<u2"),
        ("m", "<u4"),
        ("n", "<u4"),
        ("k", "<u4"),
        ("n_tiles", "<u4"),
        ("total_bytes", "<u4"),
        ("a_addr", "<u8"),
        ("a_bytes", "<u8"),
        ("x_addr", "<u8"),
        ("y_addr", "<u8"),
        ("x_row_bytes", "<u4"),
        ("y_row_bytes", "<u4"),
        ("lane_table_offset", "<u4"),
        ("tile_list_offset", "<u4"),
        ("reserved", "V16"),
    ]
)
LANE = np.dtype([("first", "<u4"), ("count", "<u4")])
assert HEADER.itemsize == 96 and LANE.itemsize == 8


@dataclass(frozen=True)
class Directory:
    """The tile directory of a 2-D "ds" (CSR) DMA image, as the schedule needs it."""

    row_tile: np.ndarray  # (n,) row-tile index of each directory entry
    col_tile: np.ndarray  # (n,) column-tile index
    nvals: np.ndarray  # (n,) stored values per tile
    nbytes: np.ndarray  # (n,) bytes per tile
    # (n,) the columns of its x slice each tile reads, [x_lo, x_hi), local to the slice;
    # (0, 0) where the image does not record them (docs/dma-image.md): the whole slice
    x_lo: np.ndarray
    x_hi: np.ndarray
    head_bytes: int  # header + mode table + directory: what the firmware reads first
    tile_rows: int
    tile_cols: int

    @classmethod
    def of(cls, image: di.DmaImage) -> Directory:
        return cls.from_bytes(image.data)

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> Directory:
        """Read the directory of a 2-D image (uint8 array); raises DeviceError when the image
        is not a 2-D "ds" image or its directory lies outside it."""
        if len(data) < di.HEADER.itemsize + 2 * di.MODE.itemsize:
            raise DeviceError("A's image is shorter than its header")
        h = data[: di.HEADER.itemsize].view(di.HEADER)[0]
        modes = data[di.HEADER.itemsize : di.HEADER.itemsize + 2 * di.MODE.itemsize].view(di.MODE)
        if (
            int(h["magic"]) != di.MAGIC
            or int(h["ndim"]) != 2
            or list(modes["kind"]) != [0, 1]
            or list(modes["mode"]) != [0, 1]
        ):
            raise DeviceError("A's image is not a 2-D CSR ('ds') fiberflow DMA image")
        n, dir_offset = int(h["n_tiles"]), int(h["dir_offset"])
        entry = di.dir_entry_dtype(2)
        if dir_offset + n * entry.itemsize > len(data):
            raise DeviceError("A's image directory runs past the end of its buffer")
        entries = data[dir_offset : dir_offset + n * entry.itemsize].view(entry)
        index = entries["index"].astype(np.int64).reshape(n, 2)
        if (index >= modes["grid"].astype(np.int64)).any():
            raise DeviceError("A's image directory names a tile outside its tile grid")
        extents = di.extents_of(data, dir_offset, n).astype(np.int64)
        col_ext = np.minimum(
            int(modes["tile"][1]), int(modes["size"][1]) - index[:, 1] * int(modes["tile"][1])
        )
        recorded = extents[:, 1] > 0
        if (recorded & ((extents[:, 0] >= extents[:, 1]) | (extents[:, 1] > col_ext))).any():
            raise DeviceError("A's image directory gives a tile a column window outside it")
        return cls(
            row_tile=index[:, 0],
            col_tile=index[:, 1],
            nvals=entries["nvals"].astype(np.int64),
            nbytes=entries["nbytes"].astype(np.int64),
            x_lo=extents[:, 0],
            x_hi=extents[:, 1],
            head_bytes=dir_offset + n * entry.itemsize,
            tile_rows=int(modes["tile"][0]),
            tile_cols=int(modes["tile"][1]),
        )


def schedule(d: Directory, lanes: int, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Assign row tiles to lanes and order each lane's tiles.

    Row tiles go to lanes greedily, the heaviest first, each to the least-loaded lane (the
    "longest processing time" rule), so lanes finish close together. Returns the lane table
    ``(lanes, 2)`` of ``(first, count)`` into the tile list, and the tile list: directory
    indices, lane by lane, each lane's in increasing directory order.
    """
    n = len(d.nvals)
    lane_of = lane_assignment(d, lanes, k)
    order = np.lexsort((np.arange(n), lane_of)).astype(np.uint32)  # by lane, then directory
    counts = np.bincount(lane_of, minlength=lanes)
    table = np.zeros((lanes, 2), dtype=np.uint32)
    table[:, 1] = counts
    table[1:, 0] = np.cumsum(counts)[:-1]
    return table, order


def lane_assignment(d: Directory, lanes: int, k: int = 1) -> np.ndarray:
    """The lane of every directory entry: whole row tiles per lane, balanced by cost."""
    n = len(d.nvals)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rt, first = np.unique(d.row_tile, return_index=True)
    cost = np.add.reduceat(d.nvals * k + TILE_OVERHEAD_CYCLES, first)
    load = np.zeros(lanes, dtype=np.int64)
    lane_of_rt = np.empty(len(rt), dtype=np.int64)
    for i in np.argsort(-cost, kind="stable"):
        lane = int(np.argmin(load))
        lane_of_rt[i] = lane
        load[lane] += cost[i]
    return lane_of_rt[np.searchsorted(rt, d.row_tile)]


def descriptor_bytes(lanes: int, n_tiles: int) -> int:
    """Header + lane table + tile list, padded with zeros to a multiple of 16 bytes (whole
    beats of a 128-bit bus, as the DMA image's sections)."""
    return int(di.align(HEADER.itemsize + LANE.itemsize * lanes + 4 * n_tiles))


def write_descriptor(
    out: np.ndarray,
    *,
    kernel: str,
    dtype: np.dtype,
    m: int,
    n: int,
    k: int,
    a_addr: int,
    a_bytes: int,
    x_addr: int,
    y_addr: int,
    lane_table: np.ndarray,
    tile_list: np.ndarray,
    flags: int = 0,
) -> None:
    """Write a descriptor into ``out`` (a uint8 array of ``descriptor_bytes`` bytes)."""
    lanes, n_tiles = len(lane_table), len(tile_list)
    total = descriptor_bytes(lanes, n_tiles)
    h = np.zeros(1, HEADER)
    h["magic"], h["version"] = MAGIC, VERSION
    h["kernel"], h["dtype"], h["op"], h["flags"] = KERNELS[kernel], dtypes.CODES[dtype], 0, flags
    h["lanes"], h["m"], h["n"], h["k"] = lanes, m, n, k
    h["n_tiles"], h["total_bytes"] = n_tiles, total
    h["a_addr"], h["a_bytes"], h["x_addr"], h["y_addr"] = a_addr, a_bytes, x_addr, y_addr
    h["x_row_bytes"] = h["y_row_bytes"] = 4 * k
    h["lane_table_offset"] = HEADER.itemsize
    h["tile_list_offset"] = HEADER.itemsize + LANE.itemsize * lanes
    out[: HEADER.itemsize] = h.view(np.uint8)
    lt = np.ascontiguousarray(lane_table, dtype="<u4").view(np.uint8).reshape(-1)
    out[HEADER.itemsize : HEADER.itemsize + lt.size] = lt
    tl = np.ascontiguousarray(tile_list, dtype="<u4").view(np.uint8)
    start = HEADER.itemsize + lt.size
    out[start : start + tl.size] = tl


@dataclass(frozen=True)
class Descriptor:
    """A parsed, checked job descriptor."""

    kernel: str
    dtype: np.dtype
    flags: int
    m: int
    n: int
    k: int
    a_addr: int
    a_bytes: int
    x_addr: int
    y_addr: int
    x_row_bytes: int
    y_row_bytes: int
    lane_table: np.ndarray  # (lanes, 2) u32
    tile_list: np.ndarray  # (n_tiles,) u32
    total_bytes: int

    @property
    def lanes(self) -> int:
        return len(self.lane_table)


def check_disjoint(ranges: dict[str, tuple[int, int]], written: tuple[str, ...]) -> None:
    """Refuse a job in which a range that is written (``ranges[w]`` for ``w`` in ``written``)
    overlaps another of its ranges (``name: (address, nbytes)``): the write would destroy that
    operand (A's resident image, x, the descriptor). Checked before anything is written."""
    for w in written:
        start, nbytes = ranges[w]
        for name, (other, size) in ranges.items():
            if name != w and nbytes and size and start < other + size and other < start + nbytes:
                raise DeviceError(
                    f"the job's {w} ({nbytes} bytes at {start:#x}) overlaps its {name} "
                    f"({size} bytes at {other:#x}); every operand needs a buffer of its own"
                )


def parse(data: np.ndarray, address: int | None = None) -> Descriptor:
    """Parse and check the descriptor at the start of ``data`` (uint8), trusting nothing.

    The output range must not overlap A's image or x, nor the descriptor itself when its
    device ``address`` is given."""
    if len(data) < HEADER.itemsize:
        raise DeviceError(f"job descriptor of {len(data)} bytes is shorter than its header")
    h = data[: HEADER.itemsize].view(HEADER)[0]
    if int(h["magic"]) != MAGIC or int(h["version"]) != VERSION:
        raise DeviceError("not a version-1 fiberflow job descriptor (bad magic or version)")
    if int(h["kernel"]) not in KERNEL_NAMES or int(h["dtype"]) not in dtypes.BY_CODE:
        raise DeviceError("job descriptor names an unknown kernel or value type")
    if int(h["op"]) != OP_PLUS_TIMES or int(h["flags"]) & ~FLAGS or int(h["flags"]) == FLAGS:
        raise DeviceError("job descriptor asks for an operation or flag this device lacks")
    lanes, n_tiles, total = int(h["lanes"]), int(h["n_tiles"]), int(h["total_bytes"])
    lt_off, tl_off = int(h["lane_table_offset"]), int(h["tile_list_offset"])
    if (
        lanes < 1
        or total != descriptor_bytes(lanes, n_tiles)
        or total > len(data)
        or lt_off != HEADER.itemsize
        or tl_off != lt_off + LANE.itemsize * lanes
    ):
        raise DeviceError("job descriptor tables are inconsistent with its header")
    k = int(h["k"])
    if k < 1 or int(h["x_row_bytes"]) != 4 * k or int(h["y_row_bytes"]) != 4 * k:
        raise DeviceError("job descriptor has bad row strides for its k")
    table = data[lt_off:tl_off].view(LANE)
    lane_table = np.stack([table["first"], table["count"]], axis=1).astype(np.uint32)
    tile_list = data[tl_off : tl_off + 4 * n_tiles].view("<u4").astype(np.uint32)
    ranges = {
        "matrix image": (int(h["a_addr"]), int(h["a_bytes"])),
        "dense input": (int(h["x_addr"]), int(h["n"]) * int(h["x_row_bytes"])),
        "output": (int(h["y_addr"]), int(h["m"]) * int(h["y_row_bytes"])),
    }
    if address is not None:
        ranges["descriptor"] = (address, total)
    check_disjoint(ranges, ("output",))
    return Descriptor(
        kernel=KERNEL_NAMES[int(h["kernel"])],
        dtype=dtypes.BY_CODE[int(h["dtype"])],
        flags=int(h["flags"]),
        m=int(h["m"]),
        n=int(h["n"]),
        k=k,
        a_addr=int(h["a_addr"]),
        a_bytes=int(h["a_bytes"]),
        x_addr=int(h["x_addr"]),
        y_addr=int(h["y_addr"]),
        x_row_bytes=int(h["x_row_bytes"]),
        y_row_bytes=int(h["y_row_bytes"]),
        lane_table=lane_table,
        tile_list=tile_list,
        total_bytes=total,
    )


def check_schedule(desc: Descriptor, d: Directory) -> np.ndarray:
    """Check the schedule rules (docs/jobs.md) against A's directory; return each tile-list
    entry's lane. Rules: every directory entry appears exactly once; the lane table covers the
    tile list in order without gaps; each lane's entries increase; no row tile is split
    between lanes."""
    n = len(d.nvals)
    tl = desc.tile_list.astype(np.int64)
    first, count = desc.lane_table[:, 0].astype(np.int64), desc.lane_table[:, 1].astype(np.int64)
    if len(tl) != n or not np.array_equal(np.sort(tl), np.arange(n)):
        raise DeviceError("the tile list must name every tile of A exactly once")
    if count.sum() != n or not np.array_equal(first, np.concatenate(([0], np.cumsum(count)[:-1]))):
        raise DeviceError("the lane table must cover the tile list in order, without gaps")
    lane_of = np.repeat(np.arange(desc.lanes), count)
    row_tiles = 0  # distinct row tiles with a tile
    if n:
        same_lane = lane_of[1:] == lane_of[:-1]
        if (same_lane & (tl[1:] <= tl[:-1])).any():
            raise DeviceError("each lane's tiles must be in increasing directory order")
        # Row tiles renumbered densely: the table is as long as the directory, whatever
        # indices a corrupted directory holds.
        present, rt = np.unique(d.row_tile[tl], return_inverse=True)
        row_tiles = len(present)
        per_rt = np.full(n, -1, dtype=np.int64)
        per_rt[rt] = lane_of
        if (per_rt[rt] != lane_of).any():
            raise DeviceError("a row tile is split between lanes; a lane must own whole row tiles")
    if desc.flags & FLAG_COVERED and row_tiles != grid_rows(d, desc.m):
        raise DeviceError("the job says every row tile has a tile (COVERED), and one has none")
    return lane_of


def grid_rows(d: Directory, m: int) -> int:
    """Row tiles of an m-row matrix tiled as directory ``d`` says."""
    return -(-m // d.tile_rows) if d.tile_rows else 0


def covers(d: Directory, m: int) -> bool:
    """Whether every row tile of an m-row matrix has a tile in directory ``d``."""
    return len(np.unique(d.row_tile)) == grid_rows(d, m)
