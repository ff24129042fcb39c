"""Class balance (data.balance): resolved from the manifest, applied as loss weights or by
repeating the smaller class in the real Ray Data input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from rayjobs.lib.balance import RepeatClass, resolve_balance, train_class_counts
from rayjobs.lib.config import load_job_config
from rayjobs.lib.data import paired_dataset, shard_files
from sffb.losses import DistillationLoss
from sffb.model import SFFBOutput


def test_auto_weighs_the_loss_only_past_one_to_two():
    assert resolve_balance("auto", 100, 100).method == "none"
    assert resolve_balance("auto", 100, 200).method == "none"
    assert resolve_balance("auto", 100, 400).method == "loss_weights"
    assert resolve_balance("auto", 400, 100).method == "loss_weights"
    assert resolve_balance("sampler", 100, 100).oversampling() is None
    assert resolve_balance("none", 1, 9).loss_weights() is None
    with pytest.raises(ValueError, match="unknown 'weights'"):
        resolve_balance("weights", 1, 9)
    with pytest.raises(ValueError, match="0 real and 9 fake"):
        resolve_balance("auto", 0, 9)


@pytest.mark.parametrize(("real", "fake"), [(120, 480), (300, 100), (7, 93)])
def test_loss_weights_are_sklearn_balanced_class_weights(real, fake):
    labels = np.r_[np.zeros(real), np.ones(fake)]
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    weights = resolve_balance("loss_weights", real, fake).loss_weights()
    np.testing.assert_allclose(weights, expected, rtol=1e-12)


def test_weighted_hard_loss_against_a_float64_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 2))
    labels = np.array([0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1])
    weights = (3.0, 0.6)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    per_sample = -log_probs[np.arange(12), labels] * np.take(weights, labels)
    expected = per_sample.sum() / np.take(weights, labels).sum()
    output = SFFBOutput(torch.tensor(logits, dtype=torch.float32), None, None, None)
    loss = DistillationLoss.hard_only(class_weights=weights)
    got = loss(output, None, torch.tensor(labels)).hard
    assert float(got) == pytest.approx(expected, rel=1e-6)
    unweighted = DistillationLoss.hard_only()(output, None, torch.tensor(labels)).hard
    assert float(unweighted) == pytest.approx(-log_probs[np.arange(12), labels].mean(), rel=1e-6)
    with pytest.raises(ValueError, match="two positive numbers"):
        DistillationLoss.hard_only(class_weights=(1.0, 0.0))


def test_repeat_class_copies_rows_whole_and_on_average_the_factor():
    labels = np.r_[np.zeros(4000, np.int8), np.ones(16000, np.int8)]
    crops = pa.array([bytes([i % 251]) * 3 for i in range(labels.size)], pa.binary(3))
    batch = pa.table({"label": labels, "row": np.arange(labels.size), "rgb_raw": crops})
    out = RepeatClass(0, 4.0 / 1.5)(batch)
    assert out.schema == batch.schema  # the crop column keeps its type for decoding
    assert [c[0] for c in out["rgb_raw"].to_pylist()] == [r % 251 for r in out["row"].to_pylist()]
    out = {name: out[name].to_numpy() for name in ("label", "row")}  # columns stayed aligned
    reals = out["row"][out["label"] == 0]
    copies = np.bincount(reals, minlength=4000)
    assert set(np.unique(copies)) == {2, 3}  # floor or ceil of 2.67
    assert copies.mean() == pytest.approx(4.0 / 1.5, abs=0.05)
    assert np.array_equal(np.sort(out["row"][out["label"] == 1]), np.arange(4000, 20000))


def test_invalid_balance_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"data.balance: unknown 'even'"):
        load_job_config("cpu-demo", overrides=["data.balance=even"])


def _manifest(shards) -> dict:
    return json.loads((shards / "manifest.json").read_text())


def _label_counts(shards, split, methods=()) -> tuple[int, int]:
    """Independent count: the shards' own label column, read with pyarrow."""
    real = fake = 0
    for path in shard_files(str(shards), split):
        table = pq.read_table(path, columns=["label", "method"]).to_pydict()
        for label, method in zip(table["label"], table["method"], strict=True):
            real += label == 0
            fake += label == 1 and (not methods or method in methods)
    return real, fake


def test_train_counts_come_from_the_manifest_and_match_the_shards(prepared):
    shards, _ = prepared
    assert train_class_counts(_manifest(shards), ()) == _label_counts(shards, "train")
    two = ("Deepfakes", "FaceSwap")
    assert train_class_counts(_manifest(shards), two) == _label_counts(shards, "train", two)


def test_sampler_balances_the_classes_ray_data_feeds(prepared, ray_session):
    shards, _ = prepared
    job = load_job_config(
        "cpu-demo", overrides=[f"data.shards={shards}", "data.methods=[]", "data.balance=sampler"]
    )
    balance = resolve_balance("sampler", *train_class_counts(_manifest(shards), ()))
    assert balance.ratio >= 3  # the embedded data: one real per four fakes
    dataset = paired_dataset(
        job.data, "train", ("raw",), 64, augment=True, repeat=balance.oversampling()
    )
    labels = np.concatenate([b["label"] for b in dataset.iter_batches(batch_format="numpy")])
    real, fake = int((labels == 0).sum()), int((labels == 1).sum())
    assert fake == balance.fake  # the larger class is read once
    assert real == pytest.approx(balance.fake, rel=0.15)  # the smaller one about as often
