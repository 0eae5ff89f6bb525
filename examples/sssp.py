"""Single-source shortest paths as sparse linear algebra: Bellman-Ford, each round a product
in the ``min_plus`` semiring, d[j] = min(d[j], min over i of w[i, j] + d[i]), until nothing
changes.

    python examples/sssp.py

The graph: the co-appearances of the characters of Victor Hugo's Les Miserables (D. E. Knuth,
"The Stanford GraphBase", 1993), 77 characters and 254 weighted edges, as networkx ships it.
A weight here is a distance: 1 / (the number of chapters two characters share), so close
companions are near.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

import fiberflow as ff


def les_miserables() -> tuple[sp.csr_array, list[str]]:
    """Distances 1 / co-appearances, as a symmetric float32 matrix, and the characters."""
    G = nx.les_miserables_graph()
    names = list(G.nodes)
    W = nx.to_scipy_sparse_array(G, nodelist=names, weight="weight", dtype=np.float64)
    D = sp.csr_array(W)
    D.data = (1.0 / D.data).astype(np.float64)
    return sp.csr_array(D, dtype=np.float32), names


def shortest_paths(W: sp.csr_array, source: int, device: ff.Device) -> tuple[np.ndarray, int]:
    """Distances from ``source`` (+inf: unreachable) and the rounds it took."""
    n = W.shape[0]
    WT = sp.csr_array(W.T)  # y = WT d in min_plus: y[j] = min_i W[i, j] + d[i]
    d = np.full(n, np.inf, np.float32)
    d[source] = 0
    for rounds in range(1, n + 1):
        better = np.minimum(d, ff.spmv(WT, d, device=device, semiring="min_plus"))
        if np.array_equal(better, d):
            return d, rounds
        d = better
    raise RuntimeError("a negative cycle")  # (none: the distances are positive)


def main() -> None:
    W, names = les_miserables()
    source = names.index("Valjean")
    with ff.open("emu") as dev:
        d, rounds = shortest_paths(W, source, dev)
    print(f"Les Miserables: {len(names)} characters, {W.nnz // 2} co-appearances; "
          f"from Valjean in {rounds} rounds")  # fmt: skip
    for k in np.argsort(d)[-5:]:
        print(f"  {names[k]:>18}: {d[k]:.3f}")


if __name__ == "__main__":
    main()
