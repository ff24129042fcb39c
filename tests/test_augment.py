"""Paired augmentation: one draw per pair, equal to a float64 NumPy write-out of the same ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayjobs.lib.augment import AugmentDraw, apply, augment_together, draw
from rayjobs.lib.config import AugmentConfig, DataConfig, JobConfig

LUMA = np.array([0.299, 0.587, 0.114])


def reference(images: np.ndarray, choice: AugmentDraw) -> np.ndarray:
    """The SPEC §3 augmentation in float64 NumPy, NCHW, one image at a time."""
    out = []
    for i, image in enumerate(images.astype(np.float64)):
        x = image[:, :, ::-1] if bool(choice.flip[i]) else image
        x = x * float(choice.brightness[i])
        mean = np.tensordot(LUMA, x, axes=1).mean()
        x = (x - mean) * float(choice.contrast[i]) + mean
        luma = np.tensordot(LUMA, x, axes=1)
        x = (x - luma) * float(choice.saturation[i]) + luma
        if bool(choice.gray[i]):
            x = np.repeat(np.tensordot(LUMA, x, axes=1)[None], 3, axis=0)
        out.append(np.clip(np.rint(x), 0, 255))
    return np.stack(out).astype(np.uint8)


def _batch(seed: int, n: int = 32) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, 12, 10), dtype=np.uint8))


def test_matches_float64_reference():
    images = _batch(0)
    config = AugmentConfig(flip=0.5, grayscale=0.3, brightness=0.4, contrast=0.4, saturation=0.4)
    choice = draw(len(images), config, torch.Generator().manual_seed(3))
    assert choice.flip.any() and (~choice.flip).any() and choice.gray.any()
    ours = apply(images, choice).numpy().astype(int)
    expected = reference(images.numpy(), choice).astype(int)
    assert np.abs(ours - expected).max() <= 1  # float32 vs float64 rounding at .5 boundaries
    assert (ours != expected).mean() < 0.01


def test_draws_cover_their_spans():
    config = AugmentConfig(flip=0.5, grayscale=0.1, brightness=0.2, contrast=0.3, saturation=0.0)
    choice = draw(20_000, config, torch.Generator().manual_seed(0))
    assert choice.brightness.min() >= 0.8 and choice.brightness.max() <= 1.2
    assert choice.contrast.min() < 0.71 and choice.contrast.max() > 1.29
    assert torch.all(choice.saturation == 1.0)
    assert abs(choice.flip.float().mean() - 0.5) < 0.02
    assert abs(choice.gray.float().mean() - 0.1) < 0.01


def test_pair_gets_one_draw():
    raw = _batch(1)
    noise = torch.randint(-3, 4, raw.shape, generator=torch.Generator().manual_seed(0))
    compressed = (raw.int() + noise).clamp(0, 255).to(torch.uint8)
    a, b = augment_together([raw, compressed], AugmentConfig(), torch.Generator().manual_seed(1))
    # Same draw: the augmented pair stays as close as the input pair was.
    assert (a.int() - b.int()).abs().max() <= 6
    same_a, same_b = augment_together([raw, raw], AugmentConfig(), torch.Generator().manual_seed(2))
    assert torch.equal(same_a, same_b)


def test_identity_flip_and_grayscale():
    images = _batch(2)
    off = AugmentConfig(flip=0, grayscale=0, brightness=0, contrast=0, saturation=0)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment_together([images], off, generator)[0], images)
    flip = AugmentConfig(flip=1, grayscale=0, brightness=0, contrast=0, saturation=0)
    assert torch.equal(augment_together([images], flip, generator)[0], images.flip(-1))
    gray = AugmentConfig(flip=0, grayscale=1, brightness=0, contrast=0, saturation=0)
    out = augment_together([images], gray, generator)[0]
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_misaligned_batches_are_refused():
    with pytest.raises(ValueError, match="must share a shape"):
        augment_together([_batch(0, 4), _batch(0, 5)], AugmentConfig(), torch.Generator())


def test_augment_on_is_validated():
    with pytest.raises(ValueError, match=r"data\.augment_on: expected device or cpu"):
        JobConfig(data=DataConfig(augment_on="gpu"))
