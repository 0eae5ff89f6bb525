import numpy as np
import pytest

from fiberflow.overlay.primitives import join
from fiberflow.overlay.primitives.stream import parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import paired_trees

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def isim():
    return StreamSim("prim_intersect", join.Intersecter())


@pytest.fixture(scope="module")
def usim():
    return StreamSim("prim_union", join.Unioner())


HAND = (
    parse("0 2 5 S0 S1 D"),
    parse("10 12 15 S0 S1 D"),
    parse("2 3 5 S0 4 S1 D"),
    parse("22 23 25 S0 24 S1 D"),
)


def test_intersect_hand(isim):
    res = isim.run(list(HAND))
    assert res.outputs == [parse("2 5 S0 S1 D"), parse("12 15 S0 S1 D"), parse("22 25 S0 S1 D")]
    assert list(join.model(*HAND, union=False)) == res.outputs


def test_union_hand(usim):
    res = usim.run(list(HAND))
    assert res.outputs == [
        parse("0 2 3 5 S0 4 S1 D"),
        parse("10 12 N 15 S0 N S1 D"),
        parse("N 22 23 25 S0 24 S1 D"),
    ]
    assert list(join.model(*HAND, union=True)) == res.outputs


def streams(seed):
    rng = np.random.default_rng(seed)
    s = [[], [], [], []]
    for _ in range(60):
        for k, part in enumerate(paired_trees(rng, int(rng.integers(1, 5)))):
            s[k] += part
    return s


@pytest.mark.parametrize("union", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_random_backpressure(isim, usim, union, seed):
    s = streams(seed)
    sim = usim if union else isim
    res = sim.run(s, p_valid=0.6, p_ready=0.5, seed=seed)
    assert res.outputs == list(join.model(*s, union=union))


@pytest.mark.parametrize("union", [False, True])
def test_throughput_equal_streams(isim, usim, union):
    crd = parse(" ".join(str(i) for i in range(3000)) + " S0 D")
    res = (usim if union else isim).run([crd, crd, crd, crd])
    assert res.cycles <= len(crd) + 1


@pytest.mark.parametrize("union", [False, True])
@pytest.mark.parametrize(("p_valid", "p_ready"), [(0.1, 0.95), (0.95, 0.1)])
def test_extreme_rates(isim, usim, union, p_valid, p_ready):
    s = streams(17)
    res = (usim if union else isim).run(s, p_valid=p_valid, p_ready=p_ready, max_cycles=10**7)
    assert res.outputs == list(join.model(*s, union=union))
