"""Result regions (host/images/result_image.py): a device's sparse result of unknown size, read back
with every field checked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fiberflow as ff
from fiberflow.host.images import result_image as ri


def _tensor(
    shape: tuple[int, ...], density: float, seed: int, dtype: type, order=None
) -> ff.Tensor:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random(shape) < density, rng.integers(-9, 10, shape), 0).astype(dtype)
    fmt = "s" * len(shape) + (":" + ",".join(map(str, order)) if order else "")
    return ff.Tensor.from_numpy(dense, fmt)


SHAPES = [((7,), None), ((5, 6), None), ((5, 6), (1, 0)), ((3, 4, 5), (2, 0, 1)),
          ((2, 3, 2, 3), None)]  # fmt: skip


@pytest.mark.parametrize("shape, order", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_round_trip(shape, order, dtype) -> None:  # type: ignore[no-untyped-def]
    for seed, density in ((0, 0.0), (1, 0.3), (2, 1.0)):
        t = _tensor(shape, density, seed, dtype, order)
        for capacity in (t.nnz, t.nnz + 5):
            region = ri.encode(t, capacity)
            assert len(region) == ri.region_bytes(len(shape), capacity)
            got = ri.decode(region, shape, order)
            assert got == t


def test_full_incomplete_and_short_regions() -> None:
    t = _tensor((6, 6), 0.5, 3, np.float32)
    with pytest.raises(ff.ImageError, match=f"at least {t.nnz} entries.*room for {t.nnz}"):
        ri.decode(ri.encode(t, t.nnz - 1), (6, 6))
    region = bytearray(ri.encode(t, t.nnz))
    region[12] = ri.WRITING
    with pytest.raises(ff.ImageError, match="incomplete"):
        ri.decode(region, (6, 6))
    with pytest.raises(ff.ImageError, match="bytes"):
        ri.decode(ri.encode(t, t.nnz)[:-16], (6, 6))
    with pytest.raises(ff.ImageError, match="header"):
        ri.decode(b"FFRS", (6, 6))
    with pytest.raises(ff.ImageError, match="2-mode"):
        ri.decode(ri.encode(t, t.nnz), (6, 6, 1))
    with pytest.raises(ff.ShapeError, match="capacity"):
        ri.region_bytes(2, -1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
@example(seed=0, flips=[(11, 128)])  # the capacity's top bit: once a ShapeError, not ImageError
def test_damaged_regions_are_refused_or_still_valid(seed: int, flips: list) -> None:
    """Any bytes changed: decode raises ImageError, or returns a tensor that passes every
    check of ff.Tensor (never anything else, never a crash)."""
    t = _tensor((4, 5, 3), 0.4, seed, np.int32)
    region = bytearray(ri.encode(t, t.nnz + 3))
    for at, byte in flips:
        region[at % len(region)] = byte
    try:
        got = ri.decode(region, (4, 5, 3))
    except ff.ImageError:
        return
    coords, values = got.to_coo()
    assert coords.shape[1] == len(values) == got.nnz
