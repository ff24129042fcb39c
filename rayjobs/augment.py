"""Paired augmentation (SPEC §3): one random draw per pair, applied to both crops.


Teacher and student must see the same view of the same frame, so flip, grayscale and colour
jitter are drawn once per pair and applied to the raw and the compressed crop alike.
Plain NumPy on uint8 ``(N, H, W, 3)`` RGB batches, so it runs in any Ray Data worker.
"""

from __future__ import annotations

import numpy as np

from rayjobs.config import AugmentConfig

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _gray(images: np.ndarray) -> np.ndarray:
    return (images @ _LUMA)[..., None]


def augment_together(
    images: list[np.ndarray], config: AugmentConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """The same random flip, grayscale and brightness/contrast/saturation jitter on each batch.

    ``images`` are aligned batches of one set of crops (e.g. raw and c23): row ``i`` of every
    batch gets row ``i``'s draw.
    """
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"aligned batches must share a shape, got {sorted(shapes)}")
    n = images[0].shape[0]
    flip = rng.random(n) < config.flip
    gray = rng.random(n) < config.grayscale
    brightness = rng.uniform(1 - config.brightness, 1 + config.brightness, n).astype(np.float32)
    contrast = rng.uniform(1 - config.contrast, 1 + config.contrast, n).astype(np.float32)
    saturation = rng.uniform(1 - config.saturation, 1 + config.saturation, n).astype(np.float32)

    def apply(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        x[flip] = x[flip, :, ::-1]
        x *= brightness[:, None, None, None]
        mean = _gray(x).mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * contrast[:, None, None, None] + mean
        luma = _gray(x)
        x = (x - luma) * saturation[:, None, None, None] + luma
        x[gray] = np.repeat(_gray(x[gray]), 3, axis=-1)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    return [apply(image) for image in images]
