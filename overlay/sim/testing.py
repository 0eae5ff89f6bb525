"""Testbench helpers shared by the primitive tests: random fiber trees and stream checks."""

from __future__ import annotations

import numpy as np

from fiberflow.overlay.primitives.stream import Token, fiber_tree_tokens


def random_fiber(rng: np.random.Generator, dim: int = 64, max_len: int | None = None) -> list[int]:
    """A sorted list of unique coordinates below ``dim``: often empty, often one element,
    sometimes a long run (all of ``dim``)."""
    r = rng.random()
    if r < 0.15:
        return []
    if r < 0.3:
        return [int(rng.integers(dim))]
    if r < 0.4:
        n = dim if max_len is None else min(dim, max_len)
        return list(range(n))
    n = int(rng.integers(1, dim + 1)) if max_len is None else int(rng.integers(1, max_len + 1))
    return sorted(int(c) for c in rng.choice(dim, size=min(n, dim), replace=False))


def random_tree(rng: np.random.Generator, depth: int, dim: int = 16, fanout: int = 4) -> list:
    """A nested list ``depth`` levels deep whose innermost lists are random fibers."""
    if depth == 1:
        return random_fiber(rng, dim)
    n = int(rng.integers(0, fanout + 1))
    return [random_tree(rng, depth - 1, dim, fanout) for _ in range(n)]


def random_values(rng: np.random.Generator, depth: int, fanout: int = 4) -> list[Token]:
    """A value stream (random 32-bit words) with the stop structure of a random tree."""
    tree = random_tree(rng, depth, 12, fanout)

    def fill(t: list, d: int) -> list:
        if d == 1:
            return [int(v) for v in rng.integers(0, 2**32, size=len(t), dtype=np.uint64)]
        return [fill(c, d - 1) for c in t]

    return fiber_tree_tokens(fill(tree, depth)) if depth else []


def concat_streams(streams: list[list[Token]]) -> list[Token]:
    """Several complete streams back to back (each ends with its own done token)."""
    return [t for s in streams for t in s]


def paired_trees(
    rng: np.random.Generator, depth: int, dim: int = 24
) -> tuple[list[Token], list[Token], list[Token], list[Token]]:
    """Two coordinate streams with the same outer shape and independent innermost fibers, with
    reference streams (distinct running numbers, some ``EMPTY``) of the same shape."""
    from fiberflow.overlay.primitives.stream import EMPTY, Val

    shape = random_tree(rng, depth, dim=dim, fanout=3)

    def redo(t: list, d: int) -> list:
        return random_fiber(rng, dim) if d == 1 else [redo(c, d - 1) for c in t]

    out = []
    for base in (0, 1 << 20):
        crd = fiber_tree_tokens(redo(shape, depth))
        ref: list[Token] = []
        for k, t in enumerate(crd):
            if isinstance(t, Val):
                ref.append(EMPTY if rng.random() < 0.05 else Val(base + k))
            else:
                ref.append(t)
        out += [crd, ref]
    return out[0], out[1], out[2], out[3]
