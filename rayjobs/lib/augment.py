"""Paired augmentation (SPEC §3): one random draw per pair, applied to both crops.

Teacher and student must see the same view of the same frame, so flip, grayscale and colour
jitter are drawn once per pair and applied to the raw and the compressed crop alike.

Written in PyTorch on uint8 ``(N, 3, H, W)`` batches so that it runs where it is cheapest: on
the training worker's device by default (a GPU does it in microseconds, and the CPUs are left to
decoding), or inside Ray Data's CPU workers (``data.augment_on: cpu``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rayjobs.lib.config import AugmentConfig

_LUMA = (0.299, 0.587, 0.114)


class AugmentDraw(NamedTuple):
    """One pair's random choices; row ``i`` of every field belongs to pair ``i``."""

    flip: torch.Tensor  # bool (N,)
    gray: torch.Tensor  # bool (N,)
    brightness: torch.Tensor  # float32 (N,) factors
    contrast: torch.Tensor
    saturation: torch.Tensor


def draw(n: int, config: AugmentConfig, generator: torch.Generator) -> AugmentDraw:
    """``n`` independent draws, on the generator's device."""
    device = generator.device

    def uniform(span: float) -> torch.Tensor:
        unit = torch.rand(n, generator=generator, device=device)
        return 1 - span + 2 * span * unit

    return AugmentDraw(
        flip=torch.rand(n, generator=generator, device=device) < config.flip,
        gray=torch.rand(n, generator=generator, device=device) < config.grayscale,
        brightness=uniform(config.brightness),
        contrast=uniform(config.contrast),
        saturation=uniform(config.saturation),
    )


def _gray(x: torch.Tensor) -> torch.Tensor:
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * luma).sum(dim=1, keepdim=True)


def apply(images: torch.Tensor, choice: AugmentDraw) -> torch.Tensor:
    """Flip, brightness, contrast, saturation, grayscale (in that order) on one uint8 batch."""
    per_image = (-1, 1, 1, 1)
    x = images.float()
    x = torch.where(choice.flip.view(per_image), x.flip(-1), x)
    x = x * choice.brightness.view(per_image)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * choice.contrast.view(per_image) + mean
    luma = _gray(x)
    x = (x - luma) * choice.saturation.view(per_image) + luma
    x = torch.where(choice.gray.view(per_image), _gray(x).expand_as(x), x)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def augment_together(
    images: list[torch.Tensor], config: AugmentConfig, generator: torch.Generator
) -> list[torch.Tensor]:
    """The same random draw applied to each aligned uint8 ``(N, 3, H, W)`` batch (e.g. raw, c23)."""
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"aligned batches must share a shape, got {sorted(shapes)}")
    choice = draw(images[0].shape[0], config, generator)
    return [apply(image, choice) for image in images]
