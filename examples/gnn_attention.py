"""One graph-attention layer as sparse kernels: attention scores only on the graph's edges
(SDDMM: S .* (Q @ K^T)), a softmax over each node's neighbours, then the features aggregated
along the edges (SpMM: A @ V).

    python examples/gnn_attention.py

The graph: Zachary's karate club (W. W. Zachary, J. Anthropological Research 33, 1977), as
networkx ships it, with self-loops; the features and weights are random (a layer's shapes,
not a trained model).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

import fiberflow as ff


def layer(S: sp.csr_array, X: np.ndarray, Wq: np.ndarray, Wk: np.ndarray, Wv: np.ndarray,
          device: ff.Device) -> np.ndarray:  # fmt: skip
    """``softmax_rows(S .* (Q K^T) / sqrt(d)) @ V`` with ``Q, K, V = X Wq, X Wk, X Wv``;
    ``S`` is the graph's 0/1 adjacency (float32, with self-loops)."""
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    scores = ff.sddmm(S, Q / np.float32(np.sqrt(Q.shape[1])), np.ascontiguousarray(K.T),
                      device=device)  # fmt: skip
    # softmax over each row's stored entries (its neighbours), on the host
    e = scores.copy()
    row_max = np.maximum.reduceat(e.data, e.indptr[:-1]) if e.nnz else e.data
    e.data = np.exp(e.data - np.repeat(row_max, np.diff(e.indptr))).astype(np.float32)
    sums = np.add.reduceat(e.data, e.indptr[:-1])
    e.data /= np.repeat(sums, np.diff(e.indptr)).astype(np.float32)
    return ff.spmm(e, np.ascontiguousarray(V), device=device)


def karate_graph() -> sp.csr_array:
    A = nx.to_scipy_sparse_array(nx.karate_club_graph(), weight=None, dtype=np.float32)
    return sp.csr_array(A + sp.eye_array(A.shape[0], dtype=np.float32))


def main() -> None:
    S = karate_graph()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((S.shape[0], 16)).astype(np.float32)
    Wq, Wk, Wv = (rng.standard_normal((16, 8)).astype(np.float32) / 4 for _ in range(3))
    with ff.open("emu") as dev:
        H = layer(S, X, Wq, Wk, Wv, dev)
    first = np.round(H[0, :4], 3)
    print(f"attention layer on the karate club: {S.shape[0]} nodes, {S.nnz} edges "
          f"(self-loops included); output {H.shape}, first row {first}")  # fmt: skip


if __name__ == "__main__":
    main()
