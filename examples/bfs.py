"""Breadth-first search as sparse linear algebra: each level's frontier is the previous one
times the adjacency matrix in the ``lor_land`` semiring (OR of ANDs), less what was visited.

    python examples/bfs.py

The graph: Zachary's karate club (W. W. Zachary, "An information flow model for conflict and
fission in small groups", J. Anthropological Research 33, 1977), 34 members and 78
friendships, as networkx ships it.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

import fiberflow as ff


def karate() -> sp.csr_array:
    """The club's friendships as a symmetric 0/1 int32 adjacency matrix."""
    return sp.csr_array(
        nx.to_scipy_sparse_array(nx.karate_club_graph(), weight=None, dtype=np.int32)
    )


def bfs_levels(A: sp.csr_array, source: int, device: ff.Device) -> np.ndarray:
    """Each vertex's distance in edges from ``source`` (-1: unreachable)."""
    n = A.shape[0]
    AT = sp.csr_array(A.T)  # y = AT x in lor_land: y[j] = OR_i A[i, j] AND x[i]
    level = np.full(n, -1)
    frontier = np.zeros(n, np.int32)
    frontier[source], level[source] = 1, 0
    depth = 0
    while frontier.any():
        depth += 1
        reached = ff.spmv(AT, frontier, device=device, semiring="lor_land")
        frontier = ((reached != 0) & (level < 0)).astype(np.int32)
        level[frontier != 0] = depth
    return level


def main() -> None:
    A = karate()
    with ff.open("emu") as dev:
        level = bfs_levels(A, 0, dev)
    print(f"karate club: {A.shape[0]} members, {A.nnz // 2} friendships")
    for d in range(level.max() + 1):
        members = np.flatnonzero(level == d)
        print(f"  {d} step(s) from member 0: {len(members)} members {members.tolist()}")


if __name__ == "__main__":
    main()
