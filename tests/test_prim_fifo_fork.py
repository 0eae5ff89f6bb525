import numpy as np
import pytest

from fiberflow.overlay.primitives import fifo, fork
from fiberflow.overlay.primitives.stream import parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import concat_streams, random_values

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def fifo_sim():
    return StreamSim("prim_fifo", fifo.StreamFifo(depth=8))


@pytest.fixture(scope="module")
def fork_sim():
    return StreamSim("prim_fork3", fork.Fork(3))


def test_fifo_hand_stream(fifo_sim):
    toks = parse("1 2 S0 N 3 S1 D")
    assert fifo_sim.run([toks]).outputs == [fifo.model(toks)]


@pytest.mark.parametrize("seed", range(4))
def test_fifo_random_backpressure(fifo_sim, seed):
    rng = np.random.default_rng(seed)
    toks = concat_streams([random_values(rng, int(rng.integers(1, 5))) for _ in range(300)])
    res = fifo_sim.run([toks], p_valid=0.6, p_ready=0.5, seed=seed)
    assert res.outputs[0] == fifo.model(toks)


def test_fifo_throughput(fifo_sim):
    toks = parse(" ".join(str(i) for i in range(2000)) + " S0 D")
    res = fifo_sim.run([toks])
    assert res.cycles <= len(toks) + 4


@pytest.mark.parametrize("seed", range(4))
def test_fork_random_backpressure(fork_sim, seed):
    rng = np.random.default_rng(seed)
    toks = concat_streams([random_values(rng, int(rng.integers(1, 5))) for _ in range(300)])
    res = fork_sim.run([toks], p_valid=0.7, p_ready=0.4, seed=seed)
    assert res.outputs == fork.model(toks, 3)


def test_fork_throughput(fork_sim):
    toks = parse(" ".join(str(i) for i in range(2000)) + " S0 D")
    res = fork_sim.run([toks])
    assert res.cycles <= len(toks) + 2
