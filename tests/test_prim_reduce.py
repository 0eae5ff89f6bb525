import numpy as np
import pytest

from fiberflow.overlay.primitives import reduce
from fiberflow.overlay.primitives.alu import Op
from fiberflow.overlay.primitives.stream import Val, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_values

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def sim():
    return StreamSim("prim_reduce", reduce.Reducer())


def test_hand_example(sim):
    toks = parse("1 2 S0 3 S1 S0 4 S2 D")
    want = parse("3 3 S0 0 4 S1 D")
    assert reduce.model(toks, Op.ADD, 0) == want
    assert sim.run([toks], cfg={"op": int(Op.ADD)}).outputs[0] == want
    want1 = parse("6 4 S0 D")
    assert reduce.model(toks, Op.ADD, 0, level=1) == want1
    assert sim.run([toks], cfg={"op": int(Op.ADD), "level": 1}).outputs[0] == want1


@pytest.mark.parametrize(
    ("op", "init", "level", "seed"),
    [
        (Op.ADD, 0, 0, 0),
        (Op.FADD, 0, 0, 1),
        (Op.FADD, 0, 1, 2),
        (Op.FMAX, 0xFF800000, 0, 3),
        (Op.MIN, 0x7FFFFFFF, 2, 4),
        (Op.FADD, 0, 3, 5),
    ],
)
def test_random(sim, op, init, level, seed):
    rng = np.random.default_rng(seed)
    toks = []
    for _ in range(300):
        toks += random_values(rng, int(rng.integers(1, 6)))
    if op in (Op.FADD, Op.FMAX):  # moderate floats so sums are interesting, some specials
        toks = [
            Val(int(np.float32(rng.standard_normal() * 100).view(np.uint32)))
            if isinstance(t, Val) and rng.random() < 0.9
            else t
            for t in toks
        ]
    cfg = {"op": int(op), "init": init, "level": level}
    res = sim.run([toks], cfg=cfg, p_valid=0.6, p_ready=0.5, seed=seed)
    assert res.outputs[0] == reduce.model(toks, op, init, level)


def test_throughput(sim):
    toks = parse(" ".join(str(i) for i in range(4000)) + " S0 D")
    res = sim.run([toks], cfg={"op": int(Op.FADD)})
    assert res.cycles <= len(toks) + 1


@pytest.mark.parametrize(("p_valid", "p_ready"), [(0.1, 0.95), (0.95, 0.1)])
def test_extreme_rates(sim, p_valid, p_ready):
    rng = np.random.default_rng(12)
    toks = []
    for _ in range(150):
        toks += random_values(rng, int(rng.integers(1, 6)))
    for level in (0, 2):
        cfg = {"op": int(Op.ADD), "level": level}
        res = sim.run([toks], cfg=cfg, p_valid=p_valid, p_ready=p_ready, max_cycles=10**7)
        assert res.outputs[0] == reduce.model(toks, Op.ADD, 0, level)
