import numpy as np
import pytest

from fiberflow.overlay.primitives import scanner
from fiberflow.overlay.primitives.stream import Val, fiber_tree_tokens, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_fiber, random_tree

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def csim():
    return StreamSim("prim_scan_c", scanner.CompressedScanner())


@pytest.fixture(scope="module")
def dsim():
    return StreamSim("prim_scan_d", scanner.DenseScanner())


def random_level(rng, n_fibers, dim=40):
    fibers = [random_fiber(rng, dim) for _ in range(n_fibers)]
    seg = np.zeros(n_fibers + 1, dtype=np.uint32)
    seg[1:] = np.cumsum([len(f) for f in fibers])
    crd = np.array([c for f in fibers for c in f] or [0], dtype=np.uint32)
    return seg, crd


def random_refs(rng, n_fibers, depth):
    """A reference stream of the given stop depth pointing at random fibers (some EMPTY)."""
    tree = random_tree(rng, depth, dim=n_fibers, fanout=3) if depth else [0]
    toks = fiber_tree_tokens(tree) if depth else parse("0 D")
    return [t if not isinstance(t, Val) or rng.random() > 0.05 else parse("N")[0] for t in toks]


def many_refs(rng, n_fibers, streams):
    """``streams`` reference streams of random stop depths (0..4), back to back."""
    refs = []
    for _ in range(streams):
        refs += random_refs(rng, n_fibers, int(rng.integers(0, 5)))
    return refs


def test_compressed_hand_example(csim):
    seg = np.array([0, 2, 2, 5], np.uint32)
    crd = np.array([1, 4, 0, 2, 3], np.uint32)
    refs = parse("0 1 S0 2 N S1 D")
    res = csim.run([refs], rmem={"seg0": seg, "seg1": seg, "crd": crd})
    want_crd = parse("1 4 S0 S1 0 2 3 S0 S2 D")
    want_ref = parse("0 1 S0 S1 2 3 4 S0 S2 D")
    assert res.outputs == [want_crd, want_ref]
    assert scanner.model_compressed(refs, seg, crd) == (want_crd, want_ref)


def test_root_reference(dsim):
    res = dsim.run([parse("0 D")], cfg={"dim": 3})
    assert res.outputs == [parse("0 1 2 S0 D"), parse("0 1 2 S0 D")]


@pytest.mark.parametrize("seed", range(6))
def test_compressed_random(csim, seed):
    rng = np.random.default_rng(seed)
    seg, crd = random_level(rng, 300)
    refs = many_refs(rng, 300, 40)
    want = scanner.model_compressed(refs, seg, crd)
    res = csim.run(
        [refs],
        rmem={"seg0": seg, "seg1": seg, "crd": crd},
        p_valid=0.6,
        p_ready=0.5,
        seed=seed,
        out_cap=len(want[0]) + 16,
    )
    assert res.outputs == list(want)


@pytest.mark.parametrize("seed", range(6))
def test_dense_random(dsim, seed):
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(0, 9))
    refs = many_refs(rng, 50, 40)
    want = scanner.model_dense(refs, dim)
    res = dsim.run(
        [refs], cfg={"dim": dim}, p_valid=0.6, p_ready=0.5, seed=seed, out_cap=len(want[0]) + 16
    )
    assert res.outputs == list(want)


def test_compressed_throughput(csim):
    seg = np.array([0, 1000, 2000], np.uint32)
    crd = np.arange(2000, dtype=np.uint32)
    res = csim.run([parse("0 1 D")], rmem={"seg0": seg, "seg1": seg, "crd": crd})
    # 2000 coordinates + 2 stops + done, plus one segment read before the first fiber
    assert res.cycles <= 2003 + 2


def test_compressed_no_bubble_between_fibers(csim):
    seg = np.arange(0, 3 * 301, 3, dtype=np.uint32)  # 300 fibers of 3 coordinates
    crd = np.tile(np.array([1, 5, 9], np.uint32), 300)
    refs = parse(" ".join(str(r) for r in range(300)) + " D")
    res = csim.run([refs], rmem={"seg0": seg, "seg1": seg, "crd": crd})
    assert res.outputs[0] == scanner.model_compressed(refs, seg, crd)[0]
    assert res.cycles <= 300 * 4 + 1 + 2


def test_dense_throughput_no_stop_bubble(dsim):
    refs = parse(" ".join(str(i) for i in range(200)) + " D")
    res = dsim.run([refs], cfg={"dim": 10})
    assert res.cycles <= 200 * 11 + 1 + 2


@pytest.mark.parametrize(("p_valid", "p_ready"), [(0.1, 0.95), (0.95, 0.1), (1.0, 0.3)])
def test_scanners_extreme_rates(csim, dsim, p_valid, p_ready):
    rng = np.random.default_rng(99)
    seg, crd = random_level(rng, 200)
    refs = many_refs(rng, 200, 20)
    want = scanner.model_compressed(refs, seg, crd)
    res = csim.run(
        [refs],
        rmem={"seg0": seg, "seg1": seg, "crd": crd},
        p_valid=p_valid,
        p_ready=p_ready,
        out_cap=len(want[0]) + 16,
        max_cycles=10**7,
    )
    assert res.outputs == list(want)
    want = scanner.model_dense(refs, 3)
    res = dsim.run([refs], cfg={"dim": 3}, p_valid=p_valid, p_ready=p_ready, max_cycles=10**7)
    assert res.outputs == list(want)
