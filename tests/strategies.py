"""Hypothesis strategies for random tensors, shared by the property tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import fiberflow as ff


@st.composite
def formats(draw: st.DrawFn, ndim: int) -> str:
    kinds = "".join(draw(st.sampled_from("ds")) for _ in range(ndim))
    order = draw(st.permutations(range(ndim)))
    if list(order) == list(range(ndim)):
        return kinds
    return kinds + ":" + ",".join(map(str, order))


@st.composite
def tensors(draw: st.DrawFn, max_ndim: int = 4, max_dim: int = 9) -> ff.Tensor:
    """Random tensors of 1..max_ndim modes: random shapes (zero-size included), densities
    from empty to full, float32 (with NaN, Inf, -0.0) or int32 values, any format."""
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.lists(st.integers(0, max_dim), min_size=ndim, max_size=ndim)))
    size = int(np.prod(shape))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(rng.random(size) < density) if size else np.zeros(0, dtype=np.int64)
    if size and draw(st.booleans()):
        flat = np.append(flat, rng.integers(0, size))  # at least one entry; maybe a duplicate
    coords = np.array(np.unravel_index(flat, shape)).reshape(ndim, -1)
    if draw(st.booleans()):
        vals = rng.standard_normal(len(flat)).astype(np.float32)
        special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45], dtype=np.float32)
        mask = rng.random(len(vals)) < 0.1
        vals[mask] = rng.choice(special, mask.sum())
    else:
        vals = rng.integers(-(2**31), 2**31, size=len(flat), dtype=np.int64).astype(np.int32)
    fmt = draw(formats(ndim))
    return ff.Tensor.from_coo(coords, vals, shape, fmt)


@st.composite
def tiles(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(draw(st.integers(1, max(d, 1) + 1)) for d in shape)
