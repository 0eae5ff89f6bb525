import numpy as np
import pytest

from fiberflow.overlay.primitives import array, writer
from fiberflow.overlay.primitives.stream import EMPTY, Val, fiber_tree_tokens, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_tree, random_values

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def rd():
    return StreamSim("prim_array_read", array.ArrayReader())


@pytest.fixture(scope="module")
def wr():
    return StreamSim("prim_array_write", array.ArrayWriter())


@pytest.fixture(scope="module")
def cw():
    return StreamSim("prim_writer_c", writer.CompressedWriter())


@pytest.fixture(scope="module")
def dw():
    return StreamSim("prim_writer_d", writer.DenseWriter())


def test_reader_hand(rd):
    vals = np.array([10, 11, 12, 13], np.uint32)
    refs = parse("3 N 0 S0 1 S1 D")
    assert rd.run([refs], rmem={"vals": vals}).outputs[0] == parse("13 0 10 S0 11 S1 D")


@pytest.mark.parametrize("seed", range(4))
def test_reader_random(rd, seed):
    rng = np.random.default_rng(seed)
    vals = rng.integers(0, 2**32, size=500, dtype=np.uint64).astype(np.uint32)
    refs = []
    for _ in range(300):
        s = random_values(rng, int(rng.integers(1, 5)))
        refs += [
            (EMPTY if rng.random() < 0.1 else Val(int(rng.integers(500))))
            if isinstance(t, Val)
            else t
            for t in s
        ]
    res = rd.run([refs], rmem={"vals": vals}, p_valid=0.6, p_ready=0.4, seed=seed)
    assert res.outputs[0] == array.model_read(refs, vals)


def test_reader_throughput(rd):
    refs = parse(" ".join(str(i % 7) for i in range(3000)) + " S0 D")
    res = rd.run([refs], rmem={"vals": np.arange(7, dtype=np.uint32)})
    assert res.cycles <= len(refs) + 2


@pytest.mark.parametrize("seed", range(3))
def test_array_writer_random(wr, seed):
    rng = np.random.default_rng(seed)
    toks = random_values(rng, 3, fanout=8) + random_values(rng, 4, fanout=6)
    res = wr.run([toks], wmem={"vals": 4096}, p_valid=0.5, seed=seed)
    assert np.array_equal(res.mems["vals"], array.model_write(toks, 4096))


@pytest.mark.parametrize("seed", range(4))
def test_compressed_writer_random(cw, seed):
    rng = np.random.default_rng(seed)
    toks = []
    for _ in range(int(rng.integers(1, 4))):
        tree = random_tree(rng, int(rng.integers(1, 5)), dim=30, fanout=5)
        toks += fiber_tree_tokens(tree)
    seg, crd = writer.model_compressed(toks)
    res = cw.run([toks], wmem={"seg": len(toks) + 2, "crd": len(toks) + 2}, p_valid=0.5, seed=seed)
    assert np.array_equal(res.mems["seg"][: len(seg)], seg)
    assert np.array_equal(res.mems["crd"][: len(crd)], crd)


def test_compressed_writer_hand(cw):
    res = cw.run([parse("1 4 S0 S1 0 2 S1 D")], wmem={"seg": 4, "crd": 4})
    assert res.mems["seg"].tolist() == [0, 2, 2, 4]
    assert res.mems["crd"].tolist() == [1, 4, 0, 2]


def test_dense_writer(dw):
    toks = parse("0 1 2 S0 0 5 S1 D")
    assert writer.model_dense(toks) == 6
    assert dw.run([toks], wmem={"info": 1}, p_valid=0.5).mems["info"][0] == 6


def test_writers_take_one_token_per_cycle(wr, cw, dw):
    toks = parse(" ".join(str(i) for i in range(2000)) + " S0 D")
    # the harness idles 17 cycles after the last input before it stops
    assert wr.run([toks], wmem={"vals": 2000}).cycles <= len(toks) + 17
    assert cw.run([toks], wmem={"seg": 2, "crd": 2000}).cycles <= len(toks) + 1 + 17
    assert dw.run([toks], wmem={"info": 1}).cycles <= len(toks) + 17
