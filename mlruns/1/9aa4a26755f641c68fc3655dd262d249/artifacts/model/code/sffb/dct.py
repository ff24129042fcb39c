"""Frequency input of SFFB (SPEC §1.1): DCT band decomposition of an RGB image.

Each colour channel goes through an orthonormal 2-D DCT-II, is masked to one of three bands
(low, middle, high on the anti-diagonal index ``i + j``) and comes back through the inverse DCT.
The transform is linear and fixed, so it lives in the model as two matrix products each way and
runs on whatever device the model runs on, never in the CPU data pipeline.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

#: F3-Net's cut points on ``i + j``, as fractions of the side N: low < N/2.82 <= mid < N/2 <= high.
F3NET_CUTS: tuple[float, ...] = (1 / 2.82, 1 / 2)


def dct_matrix(size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` with ``D @ x`` the transform of a column vector ``x``.

    ``D[k, n] = a_k cos(pi (2n + 1) k / (2 N))``, ``a_0 = sqrt(1/N)``, ``a_k = sqrt(2/N)``; built in
    float64 and then cast, so the float32 basis is as exact as float32 allows.
    """
    if size < 1:
        raise ValueError(f"DCT size must be positive, got {size}")
    k = torch.arange(size, dtype=torch.float64).unsqueeze(1)
    n = torch.arange(size, dtype=torch.float64).unsqueeze(0)
    basis = torch.cos(math.pi * (2 * n + 1) * k / (2 * size)) * math.sqrt(2 / size)
    basis[0] /= math.sqrt(2)
    return basis.to(dtype)


def band_masks(size: int, cuts: Sequence[float] = F3NET_CUTS) -> torch.Tensor:
    """Masks of shape ``(len(cuts) + 1, size, size)`` that partition the coefficient plane.

    Band ``b`` holds the coefficients with ``cuts[b-1] * size <= i + j < cuts[b] * size`` (the
    first band starts at 0, the last is open above). Half-open intervals put every coefficient in
    exactly one band, unlike F3-Net's inclusive filters, which count boundary diagonals twice.
    """
    cuts = tuple(float(c) for c in cuts)
    if not cuts or any(c <= 0 for c in cuts) or any(b <= a for a, b in itertools.pairwise(cuts)):
        raise ValueError(f"band cuts must be positive and strictly increasing, got {cuts}")
    index = torch.arange(size).unsqueeze(1) + torch.arange(size).unsqueeze(0)
    edges = [0.0, *(c * size for c in cuts), math.inf]
    masks = [(index >= lo) & (index < hi) for lo, hi in itertools.pairwise(edges)]
    return torch.stack(masks).float()


class FrequencyBands(nn.Module):
    """RGB ``(B, 3, N, N)`` -> band image ``(B, 3 * bands, N, N)``, ordered band-major.

    Channels come as ``[low R, low G, low B, mid R, ..., high B]`` (F3-Net's order). The bands of
    one channel sum to that channel. The transform runs in float32 (float64 for float64 input)
    with autocast off, because in bfloat16 the rounding of the large low band would swamp the
    small high band that carries the compression and blending traces; the result is cast back to
    the input dtype.
    """

    def __init__(self, image_size: int, cuts: Sequence[float] = F3NET_CUTS) -> None:
        super().__init__()
        self.image_size = image_size
        self.cuts = tuple(float(c) for c in cuts)
        # Derived from (image_size, cuts): non-persistent, so checkpoints do not carry them.
        # Kept in float64 and cast per call (a 256x256 cast is nothing next to the matmuls), so
        # float64 input gets an exact basis and float32 input a correctly rounded one.
        self.register_buffer("basis", dct_matrix(image_size, torch.float64), persistent=False)
        self.register_buffer("masks", band_masks(image_size, cuts), persistent=False)

    @property
    def num_bands(self) -> int:
        return self.masks.shape[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"FrequencyBands({self.image_size}) expects (B, C, {self.image_size}, "
                f"{self.image_size}) images, got shape {tuple(images.shape)}"
            )
        work_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=images.device.type, enabled=False):
            basis = self.basis.to(work_dtype)
            x = images.to(work_dtype)
            coefficients = basis @ x @ basis.T  # (B, C, N, N)
            banded = coefficients.unsqueeze(1) * self.masks.to(work_dtype)[None, :, None]
            spatial = basis.T @ banded @ basis  # (B, bands, C, N, N)
        return spatial.flatten(1, 2).to(images.dtype)
