"""Regenerate the matrices bundled in fiberflow/data (deterministic: fixed seeds).

python scripts/make_demo_data.py
"""

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

OUT = Path(__file__).resolve().parent.parent / "fiberflow" / "data"


def poisson2d(n: int) -> sp.csr_array:
    """The 5-point Laplacian on an n x n grid: a banded scientific-mesh matrix."""
    one = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n))
    eye = sp.eye_array(n)
    return (sp.kron(one, eye) + sp.kron(eye, one)).tocsr()


def powerlaw_graph(n: int, avg_degree: int, seed: int) -> sp.csr_array:
    """A directed graph whose row lengths follow a Zipf law: a few hubs, many leaves."""
    rng = np.random.default_rng(seed)
    deg = np.minimum(rng.zipf(1.8, size=n), n // 4)
    deg = np.maximum(1, (deg * avg_degree * n / deg.sum()).astype(int))
    rows = np.repeat(np.arange(n), deg)
    cols = rng.integers(0, n, size=len(rows))
    vals = rng.uniform(0.5, 1.5, size=len(rows))
    A = sp.coo_array((vals, (rows, cols)), shape=(n, n)).tocsr()
    A.sum_duplicates()
    return A


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    scipy.io.mmwrite(
        OUT / "poisson2d_32.mtx", poisson2d(32), comment="5-point Laplacian, 32x32 grid"
    )
    scipy.io.mmwrite(
        OUT / "powerlaw_2000.mtx",
        powerlaw_graph(2000, 8, seed=7),
        comment="power-law graph, 2000 nodes, seed 7",
        precision=6,
    )
