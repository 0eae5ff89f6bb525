"""Memory for large DMA images (host/images/image_memory.py, imagemem.c): freed images' pages are
reused, never while any view of them lives, and every byte of a packed image is written."""

import gc
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.images import image_memory, pack_c

pytestmark = pytest.mark.skipif(not pack_c.available(), reason="the C packer is not built")

MB = 1 << 20


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def nothing_kept():
    image_memory.trim()
    yield
    gc.collect()
    image_memory.trim()


def test_freed_pages_are_reused_for_the_next_image_that_fits():
    a = image_memory.new(8 * MB)
    a[:] = 7
    where = address(a)
    del a
    assert image_memory.kept() >= 8 * MB
    b = image_memory.new(8 * MB - 12345)
    assert address(b) == where and image_memory.kept() == 0
    # Too small for the kept region (it would waste more than half of it): new pages.
    del b
    c = image_memory.new(2 * MB)
    assert address(c) != where
    assert image_memory.kept() >= 8 * MB


def test_a_view_keeps_the_pages_from_reuse():
    a = image_memory.new(8 * MB)
    v = a[100:200]
    v[:] = 1
    del a
    gc.collect()
    assert image_memory.kept() == 0
    b = image_memory.new(8 * MB)
    b[:] = 2
    assert (v == 1).all()
    del b, v
    gc.collect()
    assert image_memory.kept() >= 16 * MB


def test_at_most_two_regions_are_kept_and_trim_gives_them_back():
    arrays = [image_memory.new(n * MB) for n in (6, 8, 10)]
    while arrays:
        arrays.pop(0)  # freed in this order
    assert image_memory.kept() == 8 * MB + 10 * MB  # the oldest (6 MiB) was unmapped
    assert image_memory.trim() == 18 * MB
    assert image_memory.kept() == 0


def test_small_images_come_from_numpy():
    a = image_memory.new(image_memory.SMALLEST - 1)
    assert a.flags.owndata
    del a
    assert image_memory.kept() == 0


def test_tracemalloc_counts_the_image():
    tracemalloc.start()
    try:
        a = image_memory.new(8 * MB)
        _, peak = tracemalloc.get_traced_memory()
        del a
        now, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= 8 * MB > now


def test_every_byte_is_written_over_an_earlier_image():
    """A pack into pages full of another image's bytes equals the numpy reference."""
    rng = np.random.default_rng(3)
    n = 60_000
    big = sp.random(n, n, density=2e-4, format="csr", random_state=rng, dtype=np.float32)
    img = ff.pack(ff.Tensor.from_scipy(big), (512, 4096))
    assert img.nbytes >= image_memory.SMALLEST
    img.data[:] = 0xA5
    del img
    assert image_memory.kept() > 0
    # Slightly fewer nonzeros: the next image fits the kept region and is smaller than it.
    small = big.copy()
    small.data[::50] = 0
    small.eliminate_zeros()
    t = ff.Tensor.from_scipy(small)
    got = ff.pack(t, (512, 4096))
    assert image_memory.kept() == 0
    assert np.array_equal(got.data, ff.pack(t, (512, 4096), impl="numpy").data)


def test_threads_take_and_give_back_regions():
    def work(seed: int) -> None:
        for i in range(20):
            a = image_memory.new((4 + (seed + i) % 5) * MB)
            a[::4096] = seed
            assert (a[::4096] == seed).all()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4), timeout=60))  # re-raises a worker's failure
    gc.collect()
    assert image_memory.kept() <= 2 * 10 * MB
