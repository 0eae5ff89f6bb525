"""ff.unpack must reject damaged images with ImageError: never crash, never a wrong tensor."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from strategies import tensors

import fiberflow as ff
from fiberflow.host.images import dma_image as di


def small_image(fmt: str = "ds") -> ff.DmaImage:
    A = sp.random_array((40, 50), density=0.1, format="csr", dtype=np.float32, rng=5)
    return ff.pack(ff.Tensor.from_scipy(A, format=fmt), tile=(16, 16))


def resealed(data: np.ndarray) -> np.ndarray:
    """A damaged image whose checksum was recomputed, to reach the structural checks."""
    data = data.copy()
    di.seal(data)
    return data


@given(st.data())
def test_random_byte_flips_are_rejected(data):
    img = data.draw(st.sampled_from([small_image("ds"), small_image("ss"), small_image("dd")]))
    buf = img.data.copy()
    places = st.lists(st.integers(0, len(buf) - 1), min_size=1, max_size=4, unique=True)
    for at in data.draw(places):  # distinct places, so no flip undoes another
        buf[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ff.ImageError):
        ff.unpack(buf)


@given(st.data())
def test_truncations_are_rejected(data):
    img = small_image()
    cut = data.draw(st.integers(0, img.nbytes - 1))
    with pytest.raises(ff.ImageError):
        ff.unpack(img.data[:cut])


@given(st.data())
def test_resealed_damage_is_rejected_or_canonical(data):
    """With a valid checksum, damage must still be caught by the structural checks. What is
    accepted must be a canonical image: packing the decoded tensor again gives the same bytes
    (a changed value is a different tensor; changed padding is refused)."""
    t = data.draw(tensors(max_ndim=3))
    img = ff.pack(t, tuple(max(1, d // 2) for d in t.shape))
    if img.n_tiles == 0:
        return
    buf = img.data.copy()
    at = data.draw(st.integers(0, len(buf) - 1))
    buf[at] ^= data.draw(st.integers(1, 255))
    damaged = resealed(buf)
    try:
        back = ff.unpack(damaged)
    except ff.ImageError:
        return
    geo, _ = di.read_geometry(damaged)
    again = ff.pack(back, geo.tile, coord_bits=8 * geo.coord_bytes).data
    assert np.array_equal(again, damaged)


def first_tile(buf: np.ndarray, ndim: int = 2) -> tuple[int, np.ndarray]:
    """The offset and header record of the image's first tile."""
    dir_offset = int(buf[32:40].view("<u8")[0])
    at = int(buf[dir_offset : dir_offset + 8].view("<u8")[0])
    head = di.tile_header_dtype(ndim)
    return at, buf[at : at + head.itemsize].view(head)


@pytest.mark.parametrize("where", ["reserved", "mode", "directory", "tile header", "section"])
def test_nonzero_padding_is_rejected(where):
    if where == "tile header":  # a 1-D tile header has 20 bytes and 12 of padding
        buf = ff.pack(ff.Tensor.from_coo([[1, 5]], np.float32([1, 2]), (9,))).data.copy()
        buf[first_tile(buf, 1)[0] + 20] = 1
    else:
        buf = small_image().data.copy()
        at, head = first_tile(buf)
        places = {
            "reserved": 50,  # the header's reserved bytes
            "mode": 64 + 10,  # a mode table entry's reserved field
            "directory": int(buf[32:40].view("<u8")[0]) + 24,  # past a 2-D entry's index
            "section": at + int(head["levels"]["crd_offset"][0][1]) - 1,  # before coordinates
        }
        buf[places[where]] = 1
    with pytest.raises(ff.ImageError, match="not laid out exactly"):
        ff.unpack(resealed(buf))


def test_an_empty_compressed_fiber_is_rejected():
    """A DCSR tile whose second row coordinate has no column under it: a valid fibertree of
    the same entries, but not the one the packer writes."""
    t = ff.Tensor.from_coo([[0, 2], [1, 1]], np.float32([1, 2]), (4, 4), format="ss")
    buf = ff.pack(t).data.copy()
    at, head = first_tile(buf)
    seg1 = at + int(head["levels"]["seg_offset"][0][1])
    assert buf[seg1 : seg1 + 12].view("<u4").tolist() == [0, 1, 2]
    buf[seg1 + 4 : seg1 + 8] = np.array([2], "<u4").view(np.uint8)  # row 0 takes both columns
    crd1 = at + int(head["levels"]["crd_offset"][0][1])
    buf[crd1 : crd1 + 4] = np.array([0, 1], "<u2").view(np.uint8)  # strictly increasing
    with pytest.raises(ff.ImageError, match="not laid out exactly"):
        ff.unpack(resealed(buf))


def test_a_flipped_level_kind_on_an_image_without_tiles_is_rejected():
    t = ff.Tensor.from_coo(np.zeros((2, 0), np.int64), np.float32([]), (4, 4), format="ds")
    buf = ff.pack(t).data.copy()
    assert int(buf[12:16].view("<u4")[0]) == 0  # no tiles
    buf[64 + 16 + 8] = 0  # level 1: compressed -> dense, which would need every tile stored
    with pytest.raises(ff.ImageError, match="not laid out exactly"):
        ff.unpack(resealed(buf))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("magic", 0x12345678, "magic"),
        ("version", 99, "version 99"),
        ("ndim", 0, "modes"),
        ("dtype", 9, "value type"),
        ("coord_bytes", 3, "coordinate width"),
        ("n_tiles", 10**6, "runs past the end"),
        ("nvals", 7, "size disagrees"),
        ("dir_offset", 80, "directory"),
    ],
)
def test_header_fields_are_checked(field, value, match):
    buf = small_image().data.copy()
    h = buf[:64].view(di.HEADER)
    h[field] = value
    with pytest.raises(ff.ImageError, match=match):
        ff.unpack(resealed(buf))


def test_checksum_is_checked():
    buf = small_image().data.copy()
    buf[-1] ^= 1
    with pytest.raises(ff.ImageError, match="checksum"):
        ff.unpack(buf)


def test_unsorted_coordinates_are_rejected():
    t = ff.Tensor.from_coo([[0, 0], [1, 5]], np.float32([1, 2]), (4, 8), format="ds")
    img = ff.pack(t)
    buf = img.data.copy()
    off = int(buf[32:40].view("<u8")[0]) + 0  # directory offset
    tile_at = int(buf[off : off + 8].view("<u8")[0])
    th = buf[tile_at : tile_at + 32].view(di.tile_header_dtype(2))[0]
    crd_at = tile_at + int(th["levels"]["crd_offset"][1])
    buf[crd_at : crd_at + 4] = np.array([5, 1], "<u2").view(np.uint8)
    with pytest.raises(ff.ImageError, match="strictly increasing"):
        ff.unpack(resealed(buf))


def test_not_an_image():
    with pytest.raises(ff.ImageError, match="magic"):
        ff.unpack(b"\0" * 128)
    with pytest.raises(ff.ImageError, match="shorter"):
        ff.unpack(b"FFDI")
    with pytest.raises(ff.FiberflowError, match="DmaImage or bytes"):
        ff.unpack(12)  # type: ignore[arg-type]
