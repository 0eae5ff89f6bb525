"""Memory for large DMA images, from imagemem.c: the pages of a few freed images are kept
(and given back to the kernel whenever it needs them) so that the next pack writes into pages
it has written before instead of new ones, which the kernel must clear first."""

from __future__ import annotations

import ctypes

import numpy as np

try:
    from fiberflow.host._cpack import ffi, lib
except ImportError:  # pragma: no cover - only when the package was not built
    ffi = lib = None

SMALLEST = 4 << 20
"""Images below this come from numpy: malloc reuses small blocks by itself."""

_TRACE_DOMAIN = 0x66660001  # tracemalloc's count of these images (numpy has its own domain)


def new(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of ``nbytes``, from kept pages when they fit. Its memory
    goes back when the array and every view of it are gone."""
    if lib is None or nbytes < SMALLEST:
        return np.empty(nbytes, dtype=np.uint8)
    capacity = ffi.new("int64_t *")
    raw = lib.ff_image_alloc(nbytes, capacity)
    if raw == ffi.NULL:
        raise MemoryError(f"cannot map {nbytes} bytes for a DMA image")
    cap = int(capacity[0])
    address = int(ffi.cast("uintptr_t", raw))
    size_t = ctypes.c_size_t
    ctypes.pythonapi.PyTraceMalloc_Track(_TRACE_DOMAIN, size_t(address), size_t(cap))

    def release(p: object) -> None:
        ctypes.pythonapi.PyTraceMalloc_Untrack(_TRACE_DOMAIN, size_t(address))
        lib.ff_image_free(p, cap)

    owner = ffi.gc(raw, release, size=cap)
    # The array's base is the cffi buffer, which holds `owner`; numpy views of the array keep
    # that buffer as their base too, so the pages are given back only after the last view.
    return np.frombuffer(ffi.buffer(owner, nbytes), dtype=np.uint8)


def kept() -> int:
    """Bytes of freed images kept for reuse."""
    return 0 if lib is None else int(lib.ff_image_kept())


def trim() -> int:
    """Give every kept page back to the system now; returns how many bytes."""
    return 0 if lib is None else int(lib.ff_image_trim())
