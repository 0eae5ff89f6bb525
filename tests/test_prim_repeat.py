import numpy as np
import pytest

from fiberflow.overlay.primitives import repeat, scanner
from fiberflow.overlay.primitives.stream import Val, fiber_tree_tokens, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_tree

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def rsim():
    return StreamSim("prim_repeater", repeat.Repeater())


@pytest.fixture(scope="module")
def gsim():
    return StreamSim("prim_repsig", repeat.RepeatSigGen())


def test_hand_example(rsim, gsim):
    ref, crd = parse("7 8 S0 D"), parse("3 5 S0 9 S1 D")
    rep = gsim.run([crd]).outputs[0]
    assert rep == parse("0 0 S0 0 S1 D") == repeat.model_sig(crd)
    assert rsim.run([ref, rep]).outputs[0] == parse("7 7 S0 8 S1 D") == repeat.model(ref, rep)


def test_spmv_root(rsim):
    ref, rep = parse("0 D"), parse("0 0 0 S0 D")
    assert rsim.run([ref, rep]).outputs[0] == parse("0 0 0 S0 D")


def pair(rng, depth):
    """A reference stream of ``depth`` stop levels, and a repeat signal one level deeper made
    the way a scanner would make it (each reference scans to a random fiber)."""
    tree = random_tree(rng, depth, dim=50, fanout=3) if depth else None
    refs = fiber_tree_tokens(tree) if depth else parse("0 D")
    refs = [Val(int(rng.integers(2**32))) if isinstance(t, Val) else t for t in refs]
    lens = [int(x) for x in rng.choice([0, 1, 2, 5, 30], size=len(refs))]

    def fiber(r: int) -> tuple[list, list]:
        cs = [Val(c) for c in range(lens[r % len(lens)])]
        return cs, cs

    crd, _ = scanner.scan_model(refs, fiber)
    return refs, repeat.model_sig(crd)


@pytest.mark.parametrize("seed", range(5))
def test_random(rsim, seed):
    rng = np.random.default_rng(seed)
    ref, rep = [], []
    for _ in range(150):
        a, b = pair(rng, int(rng.integers(0, 4)))
        ref += a
        rep += b
    res = rsim.run([ref, rep], p_valid=0.6, p_ready=0.5, seed=seed)
    assert res.outputs[0] == repeat.model(ref, rep)


def test_throughput(rsim):
    ref, rep = parse("5 D"), parse(" ".join(["0"] * 3000) + " S0 D")
    res = rsim.run([ref, rep])
    assert res.cycles <= 3002 + 1


def test_repsig_throughput(gsim):
    crd = parse(" ".join(str(i) for i in range(3000)) + " S0 D")
    res = gsim.run([crd])
    assert res.outputs[0] == repeat.model_sig(crd)
    assert res.cycles <= len(crd)


@pytest.mark.parametrize(("p_valid", "p_ready"), [(0.1, 0.95), (0.95, 0.1)])
def test_extreme_rates(rsim, p_valid, p_ready):
    rng = np.random.default_rng(5)
    ref, rep = [], []
    for _ in range(80):
        a, b = pair(rng, int(rng.integers(0, 4)))
        ref += a
        rep += b
    res = rsim.run([ref, rep], p_valid=p_valid, p_ready=p_ready, max_cycles=10**7)
    assert res.outputs[0] == repeat.model(ref, rep)
