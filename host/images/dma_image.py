"""The DMA image: one contiguous little-endian buffer holding a tiled tensor.

This module owns the byte layout (documented byte for byte in ``docs/dma-image.md``): the
header, mode table, tile directory and tile headers, the planning of where every section goes,
and the checksum. The two packers (:mod:`pack_numpy` and the C fast path) only count entries
per tile and fill the sections this module has placed, so their bytes agree by construction.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from fiberflow.errors import ImageError, TileShapeError
from fiberflow.host import args
from fiberflow.host.formats import dtypes
from fiberflow.host.formats.formats import COMPRESSED, DENSE, MAX_NDIM, Format

MAGIC = 0x49444646  # the bytes "FFDI" read as a little-endian u32
VERSION = 1
ALIGN = 16  # every section starts on a 16-byte boundary: one beat of a 128-bit bus
VALUE_BYTES = 4
MAX_GRID_TILES = 1 << 22  # bounds the packers' per-tile bookkeeping
MAX_U32 = 2**32 - 1
KIND_CODES = {DENSE: 0, COMPRESSED: 1}

HEADER = np.dtype(
    [
        ("magic", "<u4"),
        ("version", "<u2"),
        ("ndim", "u1"),
        ("dtype", "u1"),
        ("coord_bytes", "u1"),
        ("align_log2", "u1"),
        ("dir_entry_bytes", "<u2"),
        ("n_tiles", "<u4"),
        ("total_bytes", "<u8"),
        ("nvals", "<u8"),
        ("dir_offset", "<u8"),
        ("checksum", "<u4"),
        ("reserved", "V20"),
    ]
)
CHECKSUM_OFFSET = 40
MODE = np.dtype(
    [
        ("size", "<u4"),
        ("tile", "<u4"),
        ("kind", "u1"),
        ("mode", "u1"),
        ("reserved", "<u2"),
        ("grid", "<u4"),
    ]
)
assert HEADER.itemsize == 64 and MODE.itemsize == 16
assert HEADER.fields is not None and HEADER.fields["checksum"][1] == CHECKSUM_OFFSET


AlignT = TypeVar("AlignT", int, np.ndarray)


def align(n: AlignT) -> AlignT:
    """Round up to the next multiple of ALIGN."""
    return (n + (ALIGN - 1)) // ALIGN * ALIGN


def dir_entry_dtype(ndim: int) -> np.dtype:
    return np.dtype(
        {
            "names": ["offset", "nbytes", "nvals", "index"],
            "formats": ["<u8", "<u4", "<u4", ("<u4", (ndim,))],
            "offsets": [0, 8, 12, 16],
            "itemsize": int(align(16 + 4 * ndim)),
        }
    )


def records_extents(geo: Geometry) -> bool:
    """Whether the directory records each tile's level-1 coordinate range (words 6 and 7: a
    2-D image whose level 1 is compressed; the lanes load only that window of x)."""
    return geo.ndim == 2 and not geo.dense[1]


def extents_of(data: np.ndarray, dir_offset: int, n_tiles: int) -> np.ndarray:
    """The ``(n_tiles, 2)`` view of a 2-D image's directory words 6 and 7: each tile's lowest
    level-1 coordinate and one past its highest (``(0, 0)``: not recorded, the whole extent)."""
    entry = dir_entry_dtype(2).itemsize
    words = data[dir_offset : dir_offset + n_tiles * entry].view("<u4").reshape(n_tiles, entry // 4)
    return words[:, 6:8]


def tile_header_dtype(ndim: int) -> np.dtype:
    level = np.dtype([("npos", "<u4"), ("seg_offset", "<u4"), ("crd_offset", "<u4")])
    return np.dtype(
        {
            "names": ["nvals", "vals_offset", "levels"],
            "formats": ["<u4", "<u4", (level, (ndim,))],
            "offsets": [0, 4, 8],
            "itemsize": int(align(8 + 12 * ndim)),
        }
    )


@dataclass(frozen=True)
class Geometry:
    """Everything about an image that does not depend on the data: per storage level, the
    kind, the logical mode, the size, the tile size and the number of tiles."""

    shape: tuple[int, ...]  # logical
    fmt: Format
    tile: tuple[int, ...]  # logical, clipped to the shape
    dtype: np.dtype
    coord_bytes: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([self.shape[m] for m in self.fmt.order], dtype=np.int64)

    @property
    def tiles(self) -> np.ndarray:
        return np.array([self.tile[m] for m in self.fmt.order], dtype=np.int64)

    @property
    def grid(self) -> np.ndarray:
        return -(-self.sizes // self.tiles)

    @property
    def dense(self) -> np.ndarray:
        return np.array([k == DENSE for k in self.fmt.levels])

    def tile_index(self, tile_ids: np.ndarray) -> np.ndarray:
        """Storage-order tile indices ``(n_tiles, ndim)`` of linear (row-major) tile ids."""
        if len(tile_ids) == 0:
            return np.zeros((0, self.ndim), dtype=np.int64)
        return np.stack(np.unravel_index(tile_ids, tuple(self.grid)), axis=1).astype(np.int64)

    def extents(self, index: np.ndarray) -> np.ndarray:
        """Per-tile extents ``(n_tiles, ndim)``: edge tiles are cut at the tensor's edge."""
        return np.minimum(self.tiles, self.sizes - index * self.tiles)


def make_geometry(
    shape: tuple[int, ...], fmt: Format, dtype: np.dtype, tile: object, coord_bits: int | None
) -> Geometry:
    """Check a requested tile shape and coordinate width, and return the image geometry."""
    ndim = len(shape)
    if tile is None:
        req = tuple(min(max(d, 1), 65536) for d in shape)
    elif isinstance(tile, (str, bytes)) or not hasattr(tile, "__iter__"):
        req = (args.integer(tile, "tile (an int or a tuple of ints)", TileShapeError),) * ndim
    else:
        req = args.integers(tile, "tile", TileShapeError)
    if len(req) != ndim:
        raise TileShapeError(f"tile {req} has {len(req)} modes but the tensor has {ndim}")
    if any(t < 1 for t in req):
        raise TileShapeError(f"tile {req}: every tile dimension must be at least 1")
    clipped = tuple(min(t, max(d, 1)) for t, d in zip(req, shape, strict=True))
    widest = max(clipped)
    if coord_bits is None:
        coord_bits = 16 if widest <= 1 << 16 else 32
    exact = isinstance(coord_bits, (int, np.integer)) and not isinstance(coord_bits, bool)
    if not exact or coord_bits not in (16, 32):  # 16.0 would make the byte width a float
        raise TileShapeError(f"coord_bits must be the int 16 or 32, not {coord_bits!r}")
    if widest > 1 << coord_bits:
        raise TileShapeError(
            f"tile {req} has a dimension of {widest}, but {coord_bits}-bit local coordinates "
            f"reach at most {1 << coord_bits}; use a smaller tile or coord_bits=32"
        )
    geo = Geometry(shape, fmt, clipped, dtype, coord_bits // 8)
    n_grid = int(np.prod(geo.grid))
    if n_grid > MAX_GRID_TILES:
        raise TileShapeError(
            f"tile {req} cuts shape {shape} into {n_grid} tiles, more than the "
            f"{MAX_GRID_TILES} an image may hold; use a larger tile"
        )
    return geo


@dataclass
class Layout:
    """Where every section of every non-empty tile goes. Offsets are absolute bytes."""

    tile_ids: np.ndarray  # (n,) int64 linear tile ids, increasing
    index: np.ndarray  # (n, ndim) storage-order tile indices
    npos: np.ndarray  # (n, ndim) positions per level
    seg_offset: np.ndarray  # (n, ndim) absolute; 0 for dense levels
    crd_offset: np.ndarray  # (n, ndim) absolute; 0 for dense levels
    vals_offset: np.ndarray  # (n,) absolute
    tile_offset: np.ndarray  # (n,)
    tile_bytes: np.ndarray  # (n,)
    dir_offset: int
    total_bytes: int


def positions(geo: Geometry, extents: np.ndarray, ncrd: np.ndarray) -> np.ndarray:
    """Positions per level for tiles with the given extents and compressed-level counts."""
    npos = np.empty_like(extents)
    parents = np.ones(len(extents), dtype=np.int64)
    for k, dense in enumerate(geo.dense):
        parents = parents * extents[:, k] if dense else ncrd[:, k].astype(np.int64)
        npos[:, k] = parents
    return npos


def check_limits(npos: np.ndarray, tile_bytes: np.ndarray) -> None:
    """Raise TileShapeError if a tile's positions or bytes do not fit the 32-bit fields."""
    if (npos > MAX_U32).any():
        raise TileShapeError(
            f"a tile would hold {int(npos.max())} positions, more than 32-bit offsets can "
            "address; use a smaller tile"
        )
    if len(tile_bytes) and tile_bytes.max() > MAX_U32:
        raise TileShapeError("a tile would exceed 4 GiB; use a smaller tile")


def directory_span(ndim: int, n: int) -> tuple[int, int]:
    """Where the directory of ``n`` tiles starts, and where it ends (the first tile's offset)."""
    dir_offset = int(align(HEADER.itemsize + MODE.itemsize * ndim))
    return dir_offset, dir_offset + n * dir_entry_dtype(ndim).itemsize


def plan(geo: Geometry, tile_ids: np.ndarray, ncrd: np.ndarray) -> Layout:
    """Place the sections of the non-empty tiles ``tile_ids``, whose compressed levels hold
    ``ncrd[:, k]`` coordinates (entries for dense levels are ignored)."""
    n, ndim = len(tile_ids), geo.ndim
    index = geo.tile_index(tile_ids)
    npos = positions(geo, geo.extents(index), ncrd)
    seg = np.zeros((n, ndim), dtype=np.int64)
    crd = np.zeros((n, ndim), dtype=np.int64)
    cur = np.full(n, tile_header_dtype(ndim).itemsize, dtype=np.int64)
    parents = np.ones(n, dtype=np.int64)
    for k, dense in enumerate(geo.dense):
        if not dense:
            seg[:, k] = cur
            cur = align(cur + 4 * (parents + 1))
            crd[:, k] = cur
            cur = align(cur + geo.coord_bytes * npos[:, k])
        parents = npos[:, k]
    vals = cur
    tile_bytes = align(cur + VALUE_BYTES * parents)
    check_limits(npos, tile_bytes)
    dir_offset, first = directory_span(ndim, n)
    tile_offset = first + np.concatenate(([0], np.cumsum(tile_bytes)[:-1])).astype(np.int64)
    tile_offset = tile_offset[:n]
    dense_cols = geo.dense[None, :]
    return Layout(
        tile_ids=tile_ids,
        index=index,
        npos=npos,
        seg_offset=np.where(dense_cols, 0, seg + tile_offset[:, None]),
        crd_offset=np.where(dense_cols, 0, crd + tile_offset[:, None]),
        vals_offset=vals + tile_offset,
        tile_offset=tile_offset,
        tile_bytes=tile_bytes,
        dir_offset=dir_offset,
        total_bytes=int(first + tile_bytes.sum()),
    )


def write_tables(
    geo: Geometry, lay: Layout, data: np.ndarray, tile_headers: bool = True, directory: bool = True
) -> None:
    """Write the header (without checksum), mode table, directory and, unless ``tile_headers``
    is false, the tile headers. ``directory=False`` leaves out the directory and the tile
    headers (the C packer writes both as it fills each tile)."""
    ndim, n = geo.ndim, len(lay.tile_ids)
    header = np.zeros(1, HEADER)
    header["magic"] = MAGIC
    header["version"] = VERSION
    header["ndim"] = ndim
    header["dtype"] = dtypes.CODES[geo.dtype]
    header["coord_bytes"] = geo.coord_bytes
    header["align_log2"] = ALIGN.bit_length() - 1
    header["dir_entry_bytes"] = dir_entry_dtype(ndim).itemsize
    header["n_tiles"] = n
    header["total_bytes"] = lay.total_bytes
    header["nvals"] = int(lay.npos[:, -1].sum()) if n else 0
    header["dir_offset"] = lay.dir_offset
    data[: HEADER.itemsize] = header.view(np.uint8)

    modes = np.zeros(ndim, MODE)
    modes["size"] = geo.sizes
    modes["tile"] = geo.tiles
    modes["kind"] = [KIND_CODES[k] for k in geo.fmt.levels]
    modes["mode"] = geo.fmt.order
    modes["grid"] = geo.grid
    data[HEADER.itemsize : HEADER.itemsize + modes.nbytes] = modes.view(np.uint8)
    if not directory:
        return

    entries = np.zeros(n, dir_entry_dtype(ndim))
    entries["offset"] = lay.tile_offset
    entries["nbytes"] = lay.tile_bytes
    entries["nvals"] = lay.npos[:, -1] if n else 0
    entries["index"] = lay.index
    data[lay.dir_offset : lay.dir_offset + entries.nbytes] = entries.view(np.uint8)
    if not tile_headers:
        return

    th = tile_header_dtype(ndim)
    heads = np.zeros(n, th)
    heads["nvals"] = entries["nvals"]
    heads["vals_offset"] = lay.vals_offset - lay.tile_offset
    rel = lay.tile_offset[:, None]
    heads["levels"]["npos"] = lay.npos
    heads["levels"]["seg_offset"] = np.where(lay.seg_offset > 0, lay.seg_offset - rel, 0)
    heads["levels"]["crd_offset"] = np.where(lay.crd_offset > 0, lay.crd_offset - rel, 0)
    if n:
        # Tile offsets, header sizes and the image size are multiples of ALIGN: copy ALIGN-byte
        # records (a per-byte index took a quarter of a second for 600k tiles).
        rec = data.view(f"V{ALIGN}")
        per = th.itemsize // ALIGN
        where = (lay.tile_offset // ALIGN)[:, None] + np.arange(per)
        rec[where] = heads.view(f"V{ALIGN}").reshape(n, per)


def crc32(buf: memoryview, crc: int = 0) -> int:
    """``zlib.crc32(buf, crc)``, by the C extension's carry-less-multiply CRC when it is built
    (about 3x zlib's speed, on a thread per 4 MB up to the cores); the value is the same
    either way."""
    from fiberflow.host import workers
    from fiberflow.host.images import pack_c  # the C extension is optional here

    if not pack_c.available():
        return zlib.crc32(buf, crc)
    data = pack_c.ffi.from_buffer("uint8_t[]", buf)
    return int(pack_c.lib.ff_crc32_threads(crc, data, len(buf), workers.threads(len(buf) // 16)))


def checksum(data: np.ndarray, tail: tuple[int, int] | None = None) -> int:
    """CRC-32 (zlib's) of the image with the checksum field read as zero.

    ``tail = (start, crc)`` gives the CRC of ``data[start:]`` (start past the header) when the
    packer has already computed it while writing those bytes."""
    buf = data.data
    crc = zlib.crc32(buf[:CHECKSUM_OFFSET])
    crc = zlib.crc32(b"\0\0\0\0", crc)
    if tail is None:
        return crc32(buf[CHECKSUM_OFFSET + 4 :], crc)
    start, tail_crc = tail
    from fiberflow.host.images import pack_c

    crc = crc32(buf[CHECKSUM_OFFSET + 4 : start], crc)
    return int(pack_c.lib.ff_crc32_combine(crc, tail_crc, len(buf) - start))


def seal(data: np.ndarray, tail: tuple[int, int] | None = None) -> None:
    """Store the checksum; the last step of packing. ``tail``: see :func:`checksum`."""
    data[CHECKSUM_OFFSET : CHECKSUM_OFFSET + 4] = np.array([checksum(data, tail)], "<u4").view(
        np.uint8
    )


class DmaImage:
    """A packed tensor: ``data`` is the image as a uint8 ndarray, ready to copy into a DMA
    buffer. The geometry and layout describe what is inside."""

    def __init__(self, data: np.ndarray, geometry: Geometry, n_tiles: int, nvals: int) -> None:
        self.data = data
        self.geometry = geometry
        self.n_tiles = n_tiles
        self.nvals = nvals

    @property
    def shape(self) -> tuple[int, ...]:
        return self.geometry.shape

    @property
    def format(self) -> str:
        return str(self.geometry.fmt)

    @property
    def tile(self) -> tuple[int, ...]:
        return self.geometry.tile

    @property
    def dtype(self) -> np.dtype:
        return self.geometry.dtype

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def tobytes(self) -> bytes:
        return self.data.tobytes()

    def __repr__(self) -> str:
        return (
            f"DmaImage(shape={self.shape}, format={self.format!r}, tile={self.tile}, "
            f"dtype={self.dtype}, tiles={self.n_tiles}, nbytes={self.nbytes})"
        )


def image_error(msg: str) -> ImageError:
    return ImageError(f"{msg}; the image is corrupted or truncated, pack the tensor again")


def read_geometry(data: np.ndarray) -> tuple[Geometry, np.ndarray]:
    """Validate the header and mode table; return the geometry and the header record."""
    if len(data) < HEADER.itemsize:
        raise image_error(f"only {len(data)} bytes, shorter than the {HEADER.itemsize}-byte header")
    h = data[: HEADER.itemsize].view(HEADER)[0]
    if int(h["magic"]) != MAGIC:
        raise ImageError("not a fiberflow DMA image (bad magic number); was it made by ff.pack?")
    if int(h["version"]) != VERSION:
        raise ImageError(
            f"image version {int(h['version'])} is not supported by this fiberflow "
            f"(version {VERSION}); pack the tensor again with this version"
        )
    ndim = int(h["ndim"])
    if not 1 <= ndim <= MAX_NDIM:
        raise image_error(f"header claims {ndim} modes")
    if int(h["total_bytes"]) != len(data):
        raise image_error(f"header says {int(h['total_bytes'])} bytes but {len(data)} were given")
    if checksum(data) != int(h["checksum"]):
        raise image_error("checksum mismatch")
    if int(h["dtype"]) not in dtypes.BY_CODE or int(h["coord_bytes"]) not in (2, 4):
        raise image_error("unknown value type or coordinate width")
    if int(h["align_log2"]) != ALIGN.bit_length() - 1:
        raise image_error("unsupported alignment")
    if int(h["dir_entry_bytes"]) != dir_entry_dtype(ndim).itemsize:
        raise image_error("wrong directory entry size")
    end = HEADER.itemsize + MODE.itemsize * ndim
    if end > len(data):
        raise image_error("the mode table runs past the end")
    modes = data[HEADER.itemsize : end].view(MODE)
    kinds = []
    for m in modes:
        if int(m["kind"]) not in (0, 1):
            raise image_error("unknown level kind")
        kinds.append(DENSE if int(m["kind"]) == 0 else COMPRESSED)
    order = tuple(int(m) for m in modes["mode"])
    if sorted(order) != list(range(ndim)):
        raise image_error("the mode ordering is not a permutation")
    sizes = modes["size"].astype(np.int64)
    tiles = modes["tile"].astype(np.int64)
    if (tiles < 1).any() or (sizes > 2**31 - 1).any():
        raise image_error("bad mode sizes")
    shape = [0] * ndim
    tile = [0] * ndim
    for k, m in enumerate(order):
        shape[m], tile[m] = int(sizes[k]), int(tiles[k])
    geo = Geometry(
        tuple(shape),
        Format(tuple(kinds), order),
        tuple(tile),
        dtypes.BY_CODE[int(h["dtype"])],
        int(h["coord_bytes"]),
    )
    if (
        (geo.tiles > np.maximum(geo.sizes, 1)).any()
        or (geo.grid != modes["grid"]).any()
        or int(np.prod(geo.grid)) > MAX_GRID_TILES
        or int(geo.tiles.max()) > 1 << (8 * geo.coord_bytes)
    ):
        raise image_error("inconsistent tile grid")
    return geo, h
