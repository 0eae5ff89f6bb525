"""Resident handles on the emulator: no leak, no write over an operand, no corrupted image used."""

import gc
import weakref

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.host.devices.device import Buffer
from fiberflow.host.devices.emu import EmuDevice
from fiberflow.host.devices.resident import ResidentMatrix
from fiberflow.host.images import dma_image as di
from fiberflow.host.images import job


@pytest.fixture
def dev():
    with ff.open("emu") as d:
        yield d


@pytest.fixture
def A():
    return sp.random_array((100, 80), density=0.1, format="csr", dtype=np.float32, rng=4)


# -- 4: handles are freed -----------------------------------------------------------------------


def test_discarded_handles_leave_memory_flat(dev, A):
    before = dev.memory_used
    for _ in range(1000):
        dev.put(A)  # the handle is dropped at once
    gc.collect()
    assert dev.memory_used == before


def test_the_finalizer_does_not_keep_the_handle_alive(dev, A):
    h = dev.put(A)
    ref = weakref.ref(h)
    assert dev.memory_used > 0
    del h
    assert ref() is None  # freed by reference counting, without a collection
    assert dev.memory_used == 0


def test_with_block_frees_the_handle(dev, A):
    x = np.ones(80, np.float32)
    with dev.put(A) as h:
        y = ff.spmv(h, x, device=dev)
        assert dev.memory_used == h.image_bytes
    assert h.freed and dev.memory_used == 0
    np.testing.assert_array_equal(y, ff.spmv(A, x, device=dev))
    with pytest.raises(ff.DeviceError, match="was freed"):
        ff.spmv(h, x, device=dev)
    h.free()  # a second free is harmless


def test_a_handle_outliving_its_device_is_harmless(A):
    dev = EmuDevice()
    h = dev.put(A)
    dev.close()
    assert h.freed
    h.free()
    del h
    gc.collect()  # the finalizer runs after close without an error (warnings are errors here)


# -- 5: an output overlapping an operand --------------------------------------------------------


def handwritten_job(dev, h, x_addr, y_addr):
    """A descriptor written by hand (not by ff.spmv) for SpMV on resident ``h``."""
    table, tiles = h.schedule(dev.lanes, 1)
    jb = dev.alloc(job.descriptor_bytes(len(table), len(tiles)))
    m, n = h.shape
    job.write_descriptor(jb.array, kernel="spmv", dtype=h.dtype, m=m, n=n, k=1,
                         a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=x_addr,
                         y_addr=y_addr, lane_table=table, tile_list=tiles)  # fmt: skip
    return jb


@pytest.mark.parametrize("target", ["image", "x"])
def test_an_output_overlapping_an_operand_is_refused_before_any_write(dev, A, target):
    h = dev.put(A)
    xb = dev.alloc(4 * 100)  # room for y too, to overlap x
    xb.write(np.ones(80, np.float32))
    image_before, x_before = h.buffer.array.copy(), xb.array.copy()
    y_addr = h.buffer.address + 16 if target == "image" else xb.address + 8
    jb = handwritten_job(dev, h, xb.address, y_addr)
    with pytest.raises(ff.DeviceError, match=r"output .* overlaps its"):
        dev.submit(jb)
    assert np.array_equal(h.buffer.array, image_before)
    assert np.array_equal(xb.array, x_before)
    y = ff.spmv(h, np.ones(80, np.float32), device=dev)  # the handle still works
    np.testing.assert_array_equal(y, ff.spmv(A, np.ones(80, np.float32), device=dev))


def test_parse_refuses_an_output_over_the_descriptor_when_it_knows_its_address(dev, A):
    h = dev.put(A)
    xb, yb = dev.alloc(4 * 80), dev.alloc(4 * 100)
    jb = handwritten_job(dev, h, xb.address, yb.address)
    job.parse(jb.array, address=jb.address)  # disjoint: accepted
    data = _with_y(jb, jb.address + 32)
    job.parse(data)  # without its address, the descriptor's own range is unknown
    with pytest.raises(ff.DeviceError, match="overlaps its descriptor"):
        job.parse(data, address=jb.address)


def _with_y(jb, y_addr):
    data = jb.array.copy()
    data[:96].view(job.HEADER)["y_addr"] = y_addr
    return data


class OverlappingEmu(EmuDevice):
    """An emulator whose allocator is broken: it hands out the next buffer over the bytes of
    ``overlap_next`` (its real buffer is freed in its place)."""

    def __init__(self):
        super().__init__()
        self.overlap_next: Buffer | None = None
        self.real: dict[int, Buffer] = {}

    def alloc(self, nbytes):
        buf = super().alloc(nbytes)
        if self.overlap_next is None:
            return buf
        fake = Buffer(self.overlap_next.array[: buf.nbytes], self.overlap_next.address, self)
        self.overlap_next, self.real = None, {id(fake): buf}
        return fake

    def free(self, buffer):
        real = self.real.pop(id(buffer), None)
        super().free(real if real is not None else buffer)
        buffer.freed = True


def test_kernels_refuse_overlapping_buffers_before_writing(A):
    dev = OverlappingEmu()
    h = dev.put(A)
    before = h.buffer.array.copy()
    dev.overlap_next = h.buffer  # x's buffer will be A's image
    with pytest.raises(ff.DeviceError, match="overlaps its matrix image"):
        ff.spmv(h, np.ones(80, np.float32), device=dev)
    assert np.array_equal(h.buffer.array, before)


# -- 6: a corrupted resident image ------------------------------------------------------------


def test_every_single_byte_corruption_of_a_resident_image_is_caught(dev):
    A = sp.random_array((30, 20), density=0.15, format="csr", dtype=np.float32, rng=6)
    x = np.arange(20, dtype=np.float32)
    h = dev.put(A, tile=(8, 8))
    want = ff.spmv(h, x, device=dev)
    with pytest.raises(ValueError, match="read-only"):  # a stray host write fails at once
        h.buffer.array[0] ^= 1
    h.buffer.array.flags.writeable = True  # a write that gets past the view anyway
    for at in range(h.image_bytes):
        h.buffer.array[at] ^= 0x41
        with pytest.raises(ff.ImageError, match="corrupted"):
            ff.spmv(h, x, device=dev)
        h.buffer.array[at] ^= 0x41
    np.testing.assert_array_equal(ff.spmv(h, x, device=dev), want)
    assert dev.memory_used == h.image_bytes  # the failed jobs freed their buffers


class LossyEmu(EmuDevice):
    """An emulator whose buffer writes flip one bit: the copy into device memory is damaged."""

    def alloc(self, nbytes):
        buf = super().alloc(nbytes)
        write = buf.write

        def lossy(data, offset=0):
            write(data, offset)
            buf.array[-1] ^= 1

        buf.write = lossy  # type: ignore[method-assign]
        return buf


def test_put_checks_the_bytes_as_they_landed(A):
    dev = LossyEmu()
    with pytest.raises(ff.ImageError, match="corrupted"):
        dev.put(A)
    assert dev.memory_used == 0


def test_the_handle_keeps_the_image_crc(dev, A):
    h = dev.put(A)
    assert h.crc == int(h.buffer.array[di.CHECKSUM_OFFSET :][:4].view("<u4")[0])
    assert h.crc == di.checksum(h.buffer.array)


def test_devices_that_cannot_afford_it_check_the_crc_at_put_only(monkeypatch):
    """A board's host CPU checks a resident image at put only (``recheck_images`` False);
    the emulator checks it before every job too."""
    calls = []
    monkeypatch.setattr(ResidentMatrix, "verify", lambda self: calls.append(self))
    A = sp.random_array((30, 20), density=0.15, format="csr", dtype=np.float32, rng=7)
    x = np.ones(20, np.float32)

    class Board(EmuDevice):
        recheck_images = False

    for device, per_job in ((ff.open("emu"), 1), (Board(), 0)):
        h = device.put(A)
        assert len(calls) == 1  # at put, on every device
        ff.spmv(h, x, device=device)
        ff.spmv(h, x, device=device)
        assert len(calls) == 1 + 2 * per_job
        calls.clear()
