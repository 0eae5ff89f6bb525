import numpy as np
import pytest

from fiberflow.overlay.primitives import spacc
from fiberflow.overlay.primitives.alu import Op
from fiberflow.overlay.primitives.stream import Val, fiber_tree_tokens, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_fiber

pytestmark = pytest.mark.rtl

SIZE = 64


@pytest.fixture(scope="module")
def sim():
    return StreamSim("prim_spacc", spacc.SparseAccumulator(SIZE))


def test_hand_example(sim):
    crd, val = parse("1 5 S0 5 S1 D"), parse("10 20 S0 2 S1 D")
    want = (parse("1 5 S0 D"), parse("10 22 S0 D"))
    assert spacc.model(crd, val, Op.ADD) == want
    assert tuple(sim.run([crd, val], cfg={"op": int(Op.ADD)}).outputs) == want


def random_groups(rng, n_groups, floats):
    """Groups (rows) of partial fibers, 2 or 3 stop levels deep."""
    depth = int(rng.integers(2, 4))
    if depth == 2:
        tree = [
            [random_fiber(rng, SIZE) for _ in range(rng.integers(0, 5))] for _ in range(n_groups)
        ]
    else:
        tree = [
            [
                [random_fiber(rng, SIZE) for _ in range(rng.integers(0, 4))]
                for _ in range(rng.integers(0, 3))
            ]
            for _ in range(n_groups)
        ]
    crd = fiber_tree_tokens(tree)
    if floats:
        val = [
            Val(int(np.float32(rng.standard_normal()).view(np.uint32))) if isinstance(t, Val) else t
            for t in crd
        ]
    else:
        val = [Val(int(rng.integers(2**32))) if isinstance(t, Val) else t for t in crd]
    return crd, val


@pytest.mark.parametrize(("op", "seed"), [(Op.ADD, 0), (Op.FADD, 1), (Op.FADD, 2), (Op.MAX, 3)])
def test_random(sim, op, seed):
    rng = np.random.default_rng(seed)
    crd, val = [], []
    for _ in range(30):
        c, v = random_groups(rng, int(rng.integers(0, 12)), floats=op == Op.FADD)
        crd += c
        val += v
    want = spacc.model(crd, val, op, SIZE)
    res = sim.run([crd, val], cfg={"op": int(op)}, p_valid=0.6, p_ready=0.5, seed=seed)
    assert tuple(res.outputs) == want


def test_throughput(sim):
    # 40 partial rows of 20 distinct coordinates each into one 60-coordinate row
    crd, val = [], []
    for r in range(40):
        cs = [(r + 3 * k) % 60 for k in range(20)]
        crd += [Val(c) for c in sorted(cs)] + parse("S0")
        val += [Val(1)] * 20 + parse("S0")
    crd[-1] = val[-1] = parse("S1")[0]
    crd += parse("D")
    val += parse("D")
    res = sim.run([crd, val], cfg={"op": int(Op.ADD)})
    n_out = len(res.outputs[0])
    # one cycle per input token, one per output token (+1 for the done token's drain check)
    assert res.cycles <= len(crd) + n_out + 2


@pytest.mark.parametrize(("p_valid", "p_ready"), [(0.1, 0.95), (0.95, 0.1)])
def test_extreme_rates(sim, p_valid, p_ready):
    rng = np.random.default_rng(8)
    crd, val = [], []
    for _ in range(15):
        c, v = random_groups(rng, int(rng.integers(0, 12)), floats=True)
        crd += c
        val += v
    want = spacc.model(crd, val, Op.FADD, SIZE)
    res = sim.run(
        [crd, val], cfg={"op": int(Op.FADD)}, p_valid=p_valid, p_ready=p_ready, max_cycles=10**7
    )
    assert tuple(res.outputs) == want
