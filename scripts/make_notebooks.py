"""Write the notebooks in notebooks/ from the cells below (no outputs: they are run in CI by
tests/test_notebooks.py, and by their readers).

    python scripts/make_notebooks.py
"""

from __future__ import annotations

import pathlib
import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def md(text: str) -> tuple[str, str]:
    return "md", textwrap.dedent(text).strip()


def code(text: str) -> tuple[str, str]:
    return "code", textwrap.dedent(text).strip()


QUICKSTART = [
    md("""
        # fiberflow: quick start

        Sparse linear algebra on a PYNQ board's fabric, or on its emulator when no board is
        there. This notebook runs on the emulator; on a board, open the `pynq` device
        instead (docs/deploy.md)."""),
    code("""
        import numpy as np
        import scipy.sparse as sp

        import fiberflow as ff

        dev = ff.open("emu")  # the functional emulator: bit-exact with the hardware
        dev"""),
    md("""
        ## SpMV

        `ff.spmv` packs the matrix into tiles, runs the job and returns numpy.
        `dev.last_stats` says what the job cost: cycles (estimated on the emulator, counted
        on hardware), nonzeros per cycle, lane utilisation, DMA bytes."""),
    code("""
        A = sp.random_array((2000, 2000), density=0.005, format="csr", dtype=np.float32, rng=0)
        x = np.ones(2000, np.float32)
        y = ff.spmv(A, x, device=dev)
        print(np.abs(y - A @ x).max())
        dev.last_stats"""),
    md("""
        ## A matrix that stays on the device

        `dev.put(A)` packs once; `h @ x` then runs without packing again, as iterative
        methods need."""),
    code("""
        h = dev.put(A)
        for _ in range(5):
            x = h @ x
            x /= np.abs(x).max()
        h.T, x[:5]"""),
    md("""
        ## Expressions

        Any tensor expression in index notation compiles to a graph of the overlay's stream
        primitives (docs/compiler.md)."""),
    code("""
        k = ff.compile("X(i,j) = B(i,k) * C(k,j)", {"B": "ds", "C": "ds"})
        print(k)
        X = k(B=A, C=A, device=dev)
        print(abs(X - A @ A).max())
        k.graph.count()"""),
    code("""
        # min over j of A[i, j] + 0: each row's smallest entry (+inf for an empty row)
        d = ff.spmv(A, np.zeros(2000, np.float32), device=dev, semiring="min_plus")
        d[:5]"""),
]

SOLVER = [
    md("""
        # Conjugate gradients on a finite-element problem

        `-laplace(u) = 1` on the unit square, `u = 0` on its edge, linear triangles on a
        perturbed Delaunay mesh. `ff.aslinearoperator` makes the matrix a scipy
        `LinearOperator` whose products run on the device, so scipy's own `cg` solves it."""),
    code("""
        import numpy as np
        import scipy.sparse as sp
        import scipy.sparse.linalg as sla

        import fiberflow as ff
        from fiberflow import datasets

        A, b = datasets.fem_poisson(50)
        A32, b32 = sp.csr_array(A, dtype=np.float32), b.astype(np.float32)
        A.shape, A.nnz"""),
    code("""
        dev = ff.open("emu")
        op = ff.aslinearoperator(A32, device=dev)
        cycles = []
        matvec = op.matvec


        def counted(v):  # each product's cycles, as the solver runs
            y = matvec(v)
            cycles.append(dev.last_stats.cycles)
            return y


        op.matvec = counted
        steps = {"device": 0, "scipy": 0}


        def step(who):
            def count(_):
                steps[who] += 1

            return count


        x, info = sla.cg(op, b32, rtol=1e-5, callback=step("device"))
        z, _ = sla.cg(A32, b32, rtol=1e-5, callback=step("scipy"))
        steps"""),
    code("""
        exact = sla.spsolve(A.tocsc(), b)
        print("max error", np.abs(x - exact).max() / exact.max())
        per = np.mean(cycles)
        print(
            f"{per:,.0f} cycles per product, {A.nnz / per:.2f} nonzeros per cycle, "
            f"{sum(cycles) / 100e6 * 1e3:.1f} ms on the device at 100 MHz"
        )
        dev.last_stats"""),
]

GRAPHS = [
    md("""
        # Graph analytics with semirings

        BFS is repeated products in the `lor_land` semiring, shortest paths in `min_plus`,
        PageRank in the ordinary `plus_times`. The graphs are two that networkx ships:
        Zachary's karate club (1977) and the co-appearances of the characters of Les
        Miserables (Knuth, The Stanford GraphBase, 1993)."""),
    code("""
        import networkx as nx
        import numpy as np
        import scipy.sparse as sp
        from scipy.sparse import csgraph

        import fiberflow as ff

        dev = ff.open("emu")"""),
    md("## BFS on the karate club"),
    code("""
        G = nx.karate_club_graph()
        A = sp.csr_array(nx.to_scipy_sparse_array(G, weight=None, dtype=np.int32))
        AT = sp.csr_array(A.T)
        level = np.full(A.shape[0], -1)
        frontier = np.zeros(A.shape[0], np.int32)
        frontier[0], level[0] = 1, 0
        depth = 0
        while frontier.any():
            depth += 1
            reached = ff.spmv(AT, frontier, device=dev, semiring="lor_land")
            frontier = ((reached != 0) & (level < 0)).astype(np.int32)
            level[frontier != 0] = depth
        assert (level == csgraph.shortest_path(A, unweighted=True, indices=0)).all()
        level"""),
    md("""
        ## Shortest paths in Les Miserables

        A distance is 1 / (the chapters two characters share)."""),
    code("""
        G = nx.les_miserables_graph()
        names = list(G.nodes)
        W = nx.to_scipy_sparse_array(G, nodelist=names, weight="weight", dtype=np.float64)
        W = sp.csr_array(W)
        W.data = 1.0 / W.data
        W = sp.csr_array(W, dtype=np.float32)
        WT = sp.csr_array(W.T)
        source = names.index("Valjean")
        d = np.full(W.shape[0], np.inf, np.float32)
        d[source] = 0
        while True:
            better = np.minimum(d, ff.spmv(WT, d, device=dev, semiring="min_plus"))
            if np.array_equal(better, d):
                break
            d = better
        want = csgraph.dijkstra(W.astype(np.float64), indices=source)
        np.testing.assert_allclose(d, want, rtol=1e-5)
        sorted(zip(d, names, strict=True))[-3:]"""),
    md("## PageRank"),
    code("""
        M = nx.to_scipy_sparse_array(G, nodelist=names, weight="weight", dtype=np.float64)
        M = sp.csr_array((M / M.sum(axis=1)[:, None]).T, dtype=np.float32)
        n = len(names)
        p = np.full(n, 1 / n, np.float32)
        with dev.put(M) as h:  # packed once, used every round
            for _ in range(200):
                q = (0.85 * (h @ p) + 0.15 / n).astype(np.float32)
                q /= q.sum()
                if np.abs(q - p).sum() < 1e-7:
                    break
                p = q
        want = nx.pagerank(G, weight="weight")
        assert np.allclose(p, [want[name] for name in names], atol=1e-4)
        [names[k] for k in np.argsort(p)[::-1][:5]]"""),
]


def write(name: str, cells: list[tuple[str, str]]) -> None:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(t) if kind == "md" else new_code_cell(t) for kind, t in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nbformat.write(nb, OUT / f"{name}.ipynb")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    write("quickstart", QUICKSTART)
    write("solver", SOLVER)
    write("graphs", GRAPHS)


if __name__ == "__main__":
    main()
