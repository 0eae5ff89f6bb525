import numpy as np
import pytest

from fiberflow.overlay.primitives import crddrop
from fiberflow.overlay.primitives.stream import fiber_tree_tokens, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_fiber, random_tree

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def sim():
    return StreamSim("prim_crddrop", crddrop.CoordDropper())


def test_hand_example(sim):
    outer, inner = parse("0 1 2 S0 D"), parse("5 S0 S0 6 7 S1 D")
    want = (parse("0 2 S0 D"), parse("5 S0 6 7 S1 D"))
    assert crddrop.model(outer, inner) == want
    assert tuple(sim.run([outer, inner]).outputs) == want


def random_pair(rng, depth):
    """An outer coordinate tree, the inner fiber of each of its coordinates (often empty), and
    the same two trees with the empty fibers and their coordinates removed."""
    outer = random_tree(rng, depth, dim=12, fanout=3)

    def inner_of(t, d):
        if d == 1:
            return [random_fiber(rng, 8) if rng.random() < 0.6 else [] for _ in t]
        return [inner_of(c, d - 1) for c in t]

    inner = inner_of(outer, depth)

    def keep(o, i, d):
        if d == 1:
            pairs = [(c, f) for c, f in zip(o, i, strict=True) if f]
            return [c for c, _ in pairs], [f for _, f in pairs]
        kept = [keep(oc, ic, d - 1) for oc, ic in zip(o, i, strict=True)]
        return [k[0] for k in kept], [k[1] for k in kept]

    ko, ki = keep(outer, inner, depth)
    d = depth
    streams = (fiber_tree_tokens(outer, d), fiber_tree_tokens(inner, d + 1))
    return streams, (fiber_tree_tokens(ko, d), fiber_tree_tokens(ki, d + 1))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_model_matches_tree_filtering(depth):
    rng = np.random.default_rng(depth)
    for _ in range(500):
        (outer, inner), want = random_pair(rng, depth)
        assert crddrop.model(outer, inner) == want


def random_pairs(rng, n):
    """``n`` random input pairs of depth 1..3, back to back: (outer, inner, want outer, want
    inner)."""
    outer, inner, wo, wi = [], [], [], []
    for _ in range(n):
        (o, i), (a, b) = random_pair(rng, int(rng.integers(1, 4)))
        outer += o
        inner += i
        wo += a
        wi += b
    return outer, inner, wo, wi


@pytest.mark.parametrize("seed", range(4))
def test_random_backpressure(sim, seed):
    rng = np.random.default_rng(seed)
    outer, inner, wo, wi = random_pairs(rng, 200)
    res = sim.run([outer, inner], p_valid=0.6, p_ready=0.5, seed=seed)
    assert res.outputs == [wo, wi]


def test_throughput_long_fibers(sim):
    outer = parse("0 1 S0 D")
    inner = parse(
        " ".join(str(i) for i in range(1000))
        + " S0 "
        + " ".join(str(i) for i in range(1000))
        + " S1 D"
    )
    res = sim.run([outer, inner])
    assert res.cycles <= 2000 + 2 * 3 + 4


@pytest.mark.parametrize(("p_valid", "p_ready"), [(0.1, 0.95), (0.95, 0.1)])
def test_extreme_rates(sim, p_valid, p_ready):
    rng = np.random.default_rng(42)
    outer, inner, wo, wi = random_pairs(rng, 100)
    res = sim.run([outer, inner], p_valid=p_valid, p_ready=p_ready, max_cycles=10**7)
    assert res.outputs == [wo, wi]
