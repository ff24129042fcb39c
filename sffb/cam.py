"""Grad-CAM of SFFB's three knowledge maps (the paper's Fig. 4), with the ``grad-cam`` package.

For the "fake" class, one map per stage: the spatial stream's output M_s, the frequency
stream's M_f (its bands are per-pixel filtered copies of the image, so its map lies on the same
grid) and the fused map M_m1. Each map is scaled to [0, 1] per image and up-sampled to the crop.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from sffb.model import SFFB

#: Map name -> the SFFB submodule whose output it explains.
STAGES = {"spatial": "spatial_stream", "frequency": "freq_stream", "fused": "fusion"}
FAKE = 1  # the class explained: label 1 = fake


class _Logits(nn.Module):
    """SFFB with the logits as its only output, as CAM libraries expect."""

    def __init__(self, model: SFFB) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images).logits


def stage_cams(model: SFFB, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Grad-CAM of the fake class at each stage: ``(N, H, W)`` float maps in [0, 1] for uint8
    or [0, 1] float NCHW ``images`` on the model's device."""
    inputs = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    wrapped = _Logits(model)
    targets = [ClassifierOutputTarget(FAKE)] * len(inputs)
    cams = {}
    for name, attribute in STAGES.items():
        with GradCAM(model=wrapped, target_layers=[getattr(model, attribute)]) as cam:
            cams[name] = cam(input_tensor=inputs, targets=targets)
    model.zero_grad(set_to_none=True)  # the weights' gradients were only a means
    return cams


def overlay_strip(image: np.ndarray, cams: dict[str, np.ndarray]) -> np.ndarray:
    """One RGB picture: the crop, then each map as a heat map over it, side by side.

    ``image``: uint8 CHW RGB; ``cams``: name -> (H, W) map in [0, 1], in ``STAGES`` order.
    """
    rgb = np.ascontiguousarray(image.transpose(1, 2, 0))
    base = rgb.astype(np.float32) / 255
    overlays = [show_cam_on_image(base, cams[name], use_rgb=True) for name in STAGES]
    return np.concatenate([rgb, *overlays], axis=1)
