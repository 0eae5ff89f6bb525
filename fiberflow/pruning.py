"""Magnitude pruning, and a network's pruned linear layers run as SpMM on a device.

``magnitude_prune(W, sparsity)`` keeps the largest weights of one layer by magnitude and drops
the rest (no retraining). ``DeviceLinear`` runs such layers as ``ff.spmm(W, X.T)`` on a device
and keeps each call's :class:`~fiberflow.RunStats`, so a network's forward pass reports what
its sparse layers would move and take on the overlay (examples/pruned_minilm.py,
docs/workflows.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from fiberflow.errors import FiberflowError


def magnitude_prune(W: Any, sparsity: float) -> sp.csr_array:
    """``W`` (a 2-D float array) with its ``sparsity`` share of weights, the smallest by
    magnitude, dropped: a float32 CSR array keeping ``round((1 - sparsity) * W.size)`` of them
    (of equal magnitudes, the first in row-major order stay)."""
    W = np.asarray(W, dtype=np.float32)
    if W.ndim != 2:
        raise FiberflowError(f"a layer's weights are a 2-D array, not {W.ndim}-D")
    if not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise FiberflowError(
            f"sparsity is the share of weights dropped, from 0 to below 1, not {sparsity!r}"
        )
    keep = round((1 - sparsity) * W.size)
    order = np.argsort(-np.abs(W).ravel(), kind="stable")[:keep]
    mask = np.zeros(W.size, dtype=bool)
    mask[order] = True
    kept = np.where(mask.reshape(W.shape), W, np.float32(0))
    out = sp.csr_array(kept)
    out.eliminate_zeros()  # weights that were 0.0 to begin with
    return out


def host_linear(
    weights: dict[str, sp.csr_array], biases: dict[str, np.ndarray]
) -> Callable[[str, np.ndarray], np.ndarray]:
    """The same layers as :class:`DeviceLinear`, computed on the host by scipy (whose sums the
    emulator's equal bit for bit): ``(name, x) -> x @ W.T + b``."""

    def linear(name: str, x: np.ndarray) -> np.ndarray:
        return (weights[name] @ x.T).T + biases[name]

    return linear


class DeviceLinear:
    """A network's pruned linear layers, resident on ``device`` (each packed once, as a
    deployed network keeps its weights): called as ``(name, x)`` it returns ``x @ W.T + b``,
    the product from ``ff.spmm`` on the device, and keeps the call's RunStats in ``stats``
    (by layer name). ``close()`` frees the device memory."""

    def __init__(
        self, weights: dict[str, sp.csr_array], biases: dict[str, np.ndarray], device: Any
    ) -> None:
        self.device = device
        self.biases = biases
        self.handles = {}
        try:
            for name, W in weights.items():
                self.handles[name] = device.put(W)
        except BaseException:
            self.close()
            raise
        self.stats: dict[str, list[Any]] = {}

    @property
    def image_bytes(self) -> int:
        """Device memory the layers' images take."""
        return sum(h.image_bytes for h in self.handles.values())

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        from fiberflow.host.kernels import spmm

        xt = np.ascontiguousarray(x.T, dtype=np.float32)
        y = spmm(self.handles[name], xt, device=self.device)
        self.stats.setdefault(name, []).append(self.device.last_stats)
        return (y.T + self.biases[name]).astype(np.float32)

    def close(self) -> None:
        for h in self.handles.values():
            h.free()
        self.handles = {}

    def __enter__(self) -> DeviceLinear:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
