"""FrequencyBands against SciPy's orthonormal DCT, in float64 and float32."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.fft import dctn, idctn

from sffb.dct import F3NET_CUTS, FrequencyBands, band_masks


def scipy_bands(images: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    """Reference: per-band masked inverse of SciPy's DCT, masks from the definition on i+j."""
    size = images.shape[-1]
    index = np.add.outer(np.arange(size), np.arange(size))
    edges = [0.0, *(c * size for c in cuts), math.inf]
    coefficients = dctn(images, norm="ortho", axes=(-2, -1))
    bands = [
        idctn(coefficients * ((index >= lo) & (index < hi)), norm="ortho", axes=(-2, -1))
        for lo, hi in itertools.pairwise(edges)
    ]
    return np.concatenate(bands, axis=1)  # band-major, as FrequencyBands documents


@pytest.mark.parametrize("size", [32, 37, 64])
def test_float64_matches_scipy(size):
    images = np.random.default_rng(size).random((2, 3, size, size))
    ours = FrequencyBands(size)(torch.from_numpy(images))
    assert ours.dtype == torch.float64 and ours.shape == (2, 9, size, size)
    assert np.abs(ours.numpy() - scipy_bands(images, F3NET_CUTS)).max() < 1e-10


def test_float32_matches_scipy_at_256():
    images = np.random.default_rng(0).random((2, 3, 256, 256))
    ours = FrequencyBands(256)(torch.from_numpy(images).float())
    assert ours.dtype == torch.float32
    assert np.abs(ours.double().numpy() - scipy_bands(images, F3NET_CUTS)).max() < 1e-5


def test_custom_cuts_match_scipy():
    cuts = (0.1, 0.3, 0.9)
    images = np.random.default_rng(1).random((1, 3, 24, 24))
    ours = FrequencyBands(24, cuts)(torch.from_numpy(images))
    assert ours.shape == (1, 12, 24, 24)
    assert np.abs(ours.numpy() - scipy_bands(images, cuts)).max() < 1e-10


@pytest.mark.parametrize("size", [16, 31, 256])
def test_masks_partition_the_plane(size):
    masks = band_masks(size)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks.sum(0), torch.ones(size, size))
    # F3-Net's cut points: low i+j < N/2.82, middle < N/2, high the rest.
    index = torch.arange(size)[:, None] + torch.arange(size)[None, :]
    assert masks[0].sum() == (index < size / 2.82).sum()
    assert masks[2].sum() == (index >= size / 2).sum()


def test_bands_sum_back_to_the_image():
    images = torch.rand(3, 3, 48, 48, dtype=torch.float64)
    bands = FrequencyBands(48)(images).view(3, 3, 3, 48, 48)  # (B, band, C, H, W)
    assert torch.allclose(bands.sum(1), images, atol=1e-12)


def test_gradients_flow():
    images = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(FrequencyBands(8), (images,))


def test_bfloat16_input_keeps_its_dtype_and_precision():
    images = torch.rand(2, 3, 64, 64)
    reference = FrequencyBands(64)(images)
    out = FrequencyBands(64)(images.bfloat16())
    assert out.dtype == torch.bfloat16
    # Only the bf16 rounding of input and output remains: the transform itself ran in float32.
    assert (out.float() - reference).abs().max() < 0.05


def test_basis_is_not_in_the_state_dict():
    assert FrequencyBands(16).state_dict() == {}


def test_wrong_size_and_bad_cuts_are_refused():
    with pytest.raises(
        ValueError, match=r"FrequencyBands\(32\) expects .* got shape \(1, 3, 16, 16\)"
    ):
        FrequencyBands(32)(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="strictly increasing"):
        FrequencyBands(32, cuts=(0.5, 0.2))
