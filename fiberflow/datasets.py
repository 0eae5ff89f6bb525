"""Matrices for fiberflow's devices: the bundled ones (for the demo, tests and examples,
stored in Matrix Market format) and a user's Matrix Market file, converted to a device's value
type with every conversion said out loud; a finite-element problem; and a small text task
for the pruned-network example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from fiberflow.errors import FiberflowError

BUNDLED = {
    "poisson2d_32": "5-point Laplacian on a 32x32 grid (1024 x 1024, banded)",
    "powerlaw_2000": "power-law graph, 2000 nodes, about 7 nonzeros per row",
}


def load(name: str) -> sp.csr_array:
    """Load a bundled matrix as a float64 ``csr_array`` (convert with ``dtype=`` when packing)."""
    if name not in BUNDLED:
        raise FiberflowError(f"no bundled matrix {name!r}; choose one of {sorted(BUNDLED)}")
    with resources.files("fiberflow").joinpath(f"data/{name}.mtx").open("rb") as f:
        return sp.csr_array(scipy.io.mmread(f))


@dataclass
class MatrixFile:
    """A Matrix Market file read for a device: its values as the file holds them, the matrix
    converted to the device's value type, and what the conversion did (one line each)."""

    path: Path
    field: str  # the file's field: real, integer or pattern
    exact: sp.csr_array  # float64 (real, pattern) or int64 (integer) values
    matrix: sp.csr_array  # float32 or int32 values, the same structure
    dtype: str
    conversions: list[str]


INT32 = np.iinfo(np.int32)


def read_matrix_market(path: Path, dtype: str | None = None) -> MatrixFile:
    """Read ``path`` and convert its values to ``dtype`` ("float32" or "int32"; default: the
    file's own kind, int32 for integer files, float32 otherwise). Every conversion that can
    change a value is named in ``conversions``; one that would change it silently beyond
    rounding (a fraction or an integer outside int32 as int32, a value beyond float32's range,
    complex values) is a FiberflowError saying what to use instead."""
    path = Path(path)
    if not path.exists():
        raise FiberflowError(f"{path}: no such file; give a Matrix Market (.mtx) file")
    try:
        field = scipy.io.mminfo(path)[4]
        M = scipy.io.mmread(path)
    except (ValueError, OSError, IndexError) as exc:
        raise FiberflowError(f"{path} is not a readable Matrix Market file: {exc}") from None
    if field == "complex" or np.iscomplexobj(M.data if sp.issparse(M) else M):
        raise FiberflowError(
            f"{path} holds complex values; fiberflow computes with real values (float32 or "
            "int32): split it into real and imaginary parts first"
        )
    exact = sp.csr_array(M)
    exact = exact.astype(np.int64 if field == "integer" else np.float64)
    dtype = dtype or ("int32" if field == "integer" else "float32")
    conversions = []
    if field == "pattern":
        conversions.append("pattern file (no values): every stored entry is 1")
    if dtype == "int32":
        v = exact.data
        if field == "real" and not np.array_equal(v, np.round(v)):
            raise FiberflowError(f"{path} has non-integer values; run it with --dtype float32")
        if v.size and (v.min() < INT32.min or v.max() > INT32.max):
            raise FiberflowError(
                f"{path} has integer values beyond int32 (from {v.min():.0f} to {v.max():.0f}); "
                "run it with --dtype float32 (rounded to 24 significant bits)"
            )
        if field == "real":
            conversions.append("converted float64 values to int32 (all are integers: exact)")
        elif field == "integer":
            conversions.append("converted the integer values to int32 (all fit: exact)")
        return MatrixFile(path, field, exact, exact.astype(np.int32), dtype, conversions)
    with np.errstate(over="ignore"):
        matrix = exact.astype(np.float32)
    if not np.isfinite(matrix.data).all() and np.isfinite(exact.data).all():
        raise FiberflowError(
            f"{path} has values beyond float32's range (|v| > {np.finfo(np.float32).max:.3g})"
            "; scale the matrix first"
        )
    if field != "pattern":
        kind = "float64" if field == "real" else "integer"
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.abs(matrix.data.astype(np.float64) - exact.data) / np.abs(exact.data)
        worst = float(np.nanmax(change)) if change.size else 0.0
        conversions.append(
            f"converted {kind} values to float32 (max relative rounding {worst:.2g})"
            if worst
            else f"converted {kind} values to float32 (all exact)"
        )
    return MatrixFile(path, field, exact, matrix, dtype, conversions)


def fem_poisson(side: int = 40, seed: int = 0) -> tuple[sp.csr_array, np.ndarray]:
    """A 2-D finite-element problem: ``-laplace(u) = 1`` on the unit square, ``u = 0`` on its
    edge, with linear (P1) triangles on a Delaunay mesh of a ``side`` x ``side`` grid of points
    whose interior points are moved at random by up to a third of the spacing. Returns the
    stiffness matrix of the interior nodes (symmetric positive definite, float64, about 7
    nonzeros a row) and the load vector."""
    from scipy.spatial import Delaunay

    if side < 3:
        raise FiberflowError(f"the mesh needs at least 3 points a side, not {side}")
    rng = np.random.default_rng(seed)
    g = np.linspace(0.0, 1.0, side)
    pts = np.array([(x, y) for y in g for x in g])
    edge = (pts == 0.0).any(axis=1) | (pts == 1.0).any(axis=1)
    h = 1.0 / (side - 1)
    pts[~edge] += rng.uniform(-h / 3, h / 3, size=(int((~edge).sum()), 2))
    tri = Delaunay(pts).simplices
    # per triangle: the gradients of its three hat functions, and its area
    p = pts[tri]  # (t, 3, 2)
    B = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], axis=2)  # columns: the two edges
    area = np.abs(np.linalg.det(B)) / 2
    ref = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    grads = np.linalg.solve(np.transpose(B, (0, 2, 1)), np.broadcast_to(ref, (len(tri), 2, 3)))
    local = area[:, None, None] * np.einsum("tki,tkj->tij", grads, grads)
    rows = np.repeat(tri, 3, axis=1).ravel()
    cols = np.tile(tri, (1, 3)).ravel()
    K = sp.csr_array((local.ravel(), (rows, cols)), shape=(len(pts),) * 2)
    K.sum_duplicates()
    load = np.bincount(tri.ravel(), weights=np.repeat(area / 3, 3), minlength=len(pts))
    inner = np.flatnonzero(~edge)
    A = sp.csr_array(K[inner][:, inner])
    A.eliminate_zeros()
    return A, load[inner]


@dataclass(frozen=True)
class Paragraphs:
    """A small retrieval task on real text: prose paragraphs of Python's own reference
    documentation (the help topics the interpreter ships in ``pydoc_data``), each labelled
    with its topic ("assert", "for", "import", ...). A sentence encoder does well when each
    paragraph's nearest other paragraph comes from the same topic: :meth:`accuracy`."""

    texts: list[str]
    labels: np.ndarray  # the topic's index in ``topics``, one a text
    topics: list[str]

    def accuracy(self, embeddings: np.ndarray) -> float:
        """The share of paragraphs whose most similar other paragraph (cosine similarity of
        the rows of ``embeddings``, one a text) has the same topic."""
        E = np.asarray(embeddings, dtype=np.float64)
        E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
        sim = E @ E.T
        np.fill_diagonal(sim, -np.inf)
        return float((self.labels[sim.argmax(axis=1)] == self.labels).mean())


def doc_paragraphs(per_topic: int = 8, min_per_topic: int = 4) -> Paragraphs:
    """The first ``per_topic`` prose paragraphs (20 words or more, not code or grammar) of
    every help topic that has at least ``min_per_topic``. The text comes from the running
    interpreter's standard library, so it differs a little between Python versions."""
    from pydoc_data.topics import topics

    texts, labels, names = [], [], []
    for name in sorted(topics):
        prose = [
            " ".join(p.split())
            for p in re.split(r"\n\s*\n", topics[name])
            # indented paragraphs are code and grammar; short ones headings and labels
            if not p.startswith((" ", "\t")) and len(p.split()) >= 20
        ][:per_topic]
        if len(prose) >= min_per_topic:
            labels += [len(names)] * len(prose)
            names.append(name)
            texts += prose
    return Paragraphs(texts=texts, labels=np.array(labels), topics=names)
