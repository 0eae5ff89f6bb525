"""PageRank by power iteration, the link matrix put on the device once and multiplied by
the rank vector each round (plus_times, so it runs on every device, the board included).

    python examples/pagerank.py [--device rtl]

The graph: the co-appearances of the characters of Victor Hugo's Les Miserables (D. E. Knuth,
"The Stanford GraphBase", 1993), 77 characters and 254 edges, as networkx ships it; each
edge links both ways, weighted by how many chapters the two share.
"""

from __future__ import annotations

import argparse

import networkx as nx
import numpy as np
import scipy.sparse as sp

import fiberflow as ff


def link_matrix() -> tuple[sp.csr_array, list[str]]:
    """M[j, i] = w(i, j) / (the sum of i's weights): column i spreads i's rank over its links."""
    G = nx.les_miserables_graph()
    names = list(G.nodes)
    W = nx.to_scipy_sparse_array(G, nodelist=names, weight="weight", dtype=np.float64)
    out = np.asarray(W.sum(axis=1)).ravel()
    M = sp.csr_array((W / out[:, None]).T)
    return sp.csr_array(M, dtype=np.float32), names


def pagerank(M: sp.csr_array, device: ff.Device, alpha: float = 0.85,
             tol: float = 1e-6) -> tuple[np.ndarray, int]:  # fmt: skip
    """The ranks (summing to 1) and the rounds taken."""
    n = M.shape[0]
    p = np.full(n, 1.0 / n, np.float32)
    with device.put(M) as h:  # packed once, used every round
        for rounds in range(1, 1001):
            q = (alpha * (h @ p) + (1 - alpha) / n).astype(np.float32)
            q /= q.sum()
            if np.abs(q - p).sum() < tol:
                return q, rounds
            p = q
    raise RuntimeError("PageRank did not converge in 1000 rounds")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="emu", help="emu (default), rtl")
    args = ap.parse_args(argv)
    M, names = link_matrix()
    with ff.open(args.device) as dev:
        p, rounds = pagerank(M, dev)
    print(f"PageRank of {len(names)} characters in {rounds} rounds on {args.device}:")
    for k in np.argsort(p)[::-1][:5]:
        print(f"  {names[k]:>12}: {p[k]:.4f}")


if __name__ == "__main__":
    main()
