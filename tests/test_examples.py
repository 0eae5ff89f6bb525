"""The examples in examples/, each against an independent reference: scipy's csgraph for BFS
and shortest paths, networkx's own PageRank, scipy's cg and a direct solve for CG."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse import csgraph

import fiberflow as ff

ROOT = pathlib.Path(__file__).resolve().parents[1]
nx = pytest.importorskip("networkx")


def example(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dev():  # type: ignore[no-untyped-def]
    d = ff.open("emu")
    yield d
    d.close()


def test_bfs_levels_match_csgraph(dev) -> None:  # type: ignore[no-untyped-def]
    bfs = example("bfs")
    A = bfs.karate()
    for source in (0, 16, 33):
        want = csgraph.shortest_path(A, unweighted=True, indices=source)
        got = bfs.bfs_levels(A, source, dev)
        np.testing.assert_array_equal(got, np.where(np.isinf(want), -1, want).astype(int))
    # a vertex no edge reaches stays at -1
    B = sp.block_diag([A, sp.csr_array((1, 1), dtype=np.int32)], format="csr").astype(np.int32)
    assert bfs.bfs_levels(sp.csr_array(B), 0, dev)[-1] == -1


def test_shortest_paths_match_dijkstra(dev) -> None:  # type: ignore[no-untyped-def]
    sssp = example("sssp")
    W, names = sssp.les_miserables()
    for source in (0, names.index("Valjean")):
        d, rounds = sssp.shortest_paths(W, source, dev)
        want = csgraph.dijkstra(W.astype(np.float64), indices=source)
        np.testing.assert_allclose(d, want, rtol=1e-5)
        assert rounds <= W.shape[0]


def test_pagerank_matches_networkx(dev) -> None:  # type: ignore[no-untyped-def]
    pr = example("pagerank")
    M, names = pr.link_matrix()
    p, rounds = pr.pagerank(M, dev)
    want = nx.pagerank(nx.les_miserables_graph(), alpha=0.85, weight="weight", tol=1e-10)
    np.testing.assert_allclose(p, [want[n] for n in names], atol=2e-5)
    assert 10 < rounds < 200


@pytest.mark.rtl
def test_pagerank_on_the_rtl_device() -> None:
    pytest.importorskip("fiberflow.host.devices.rtl")
    pr = example("pagerank")
    M, _ = pr.link_matrix()
    with ff.open("rtl") as rtl:
        p, _ = pr.pagerank(M, rtl)
    with ff.open("emu") as emu:
        q, _ = pr.pagerank(M, emu)
    np.testing.assert_array_equal(p.view(np.uint32), q.view(np.uint32))  # bit for bit


def test_fem_cg_example() -> None:
    r = example("fem_cg").solve("emu", side=30)
    assert r["converged"] and abs(r["iterations"] - r["scipy_iterations"]) <= 2
    assert r["error"] < 1e-4 and r["products"] >= r["iterations"] > 10
    assert r["cycles_per_product"] > 0 and not r["measured"]


def test_examples_run_as_scripts(capsys) -> None:  # type: ignore[no-untyped-def]
    example("bfs").main()
    example("sssp").main()
    example("pagerank").main([])
    example("fem_cg").main(["--side", "12"])
    out = capsys.readouterr().out
    assert "karate club" in out and "Valjean" in out and "PageRank" in out
    assert "cg on emu" in out and "nonzeros per cycle" in out


def test_gnn_attention_layer_matches_dense(dev) -> None:  # type: ignore[no-untyped-def]
    """SDDMM scores, a neighbour softmax and SpMM aggregation against the same in dense numpy
    (scores masked to the edges)."""
    gnn = example("gnn_attention")
    S = gnn.karate_graph()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((S.shape[0], 12)).astype(np.float32)
    Wq, Wk, Wv = (rng.standard_normal((12, 6)).astype(np.float32) / 3 for _ in range(3))
    got = gnn.layer(S, X, Wq, Wk, Wv, dev)
    Q, K, V = (X @ W for W in (Wq, Wk, Wv))
    logits = np.where(S.toarray() != 0, Q @ K.T / np.sqrt(6), -np.inf)
    att = np.exp(logits - logits.max(axis=1, keepdims=True))
    att /= att.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, att @ V, rtol=1e-4, atol=1e-5)
