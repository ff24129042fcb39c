"""The Spatial-Frequency Fusion Branch detector (SPEC §1): two unshared trunks, fusion, one head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from sffb.backbone import build_split_backbone, input_normalisation
from sffb.dct import F3NET_CUTS, FrequencyBands
from sffb.fusion import FusionOptions, build_fusion


@dataclass(frozen=True)
class SFFBConfig:
    """Everything that fixes an SFFB's architecture and initial weights."""

    backbone: str = "legacy_xception"  # a name from sffb.backbone.available_backbones()
    fusion: str = "sk"  # a name from sffb.fusion.FUSIONS
    fusion_options: FusionOptions = field(default_factory=FusionOptions)
    num_classes: int = 2  # label 0 = real, 1 = fake
    image_size: int = 256  # square input side; the DCT basis is built for it
    band_cuts: tuple[float, ...] = F3NET_CUTS  # (ours) frequency band edges on i+j, fractions of N
    # Input normalisation; None = what the backbone's pretrained weights expect (timm's
    # pretrained config: 0.5 / 0.5 for legacy_xception, ImageNet's for ResNets).
    input_mean: tuple[float, float, float] | None = None
    input_std: tuple[float, float, float] | None = None
    drop_rate: float = 0.0  # dropout before the classifier
    pretrained_path: str | None = None  # local ImageNet weights file for both streams and the head

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the input: as set, else the backbone's pretrained config's. Resolved
        when a model is built (not stored), so ``replace(config, backbone=...)`` stays right."""
        mean, std = input_normalisation(self.backbone)
        return self.input_mean or mean, self.input_std or std


class SFFBOutput(NamedTuple):
    """What one forward pass gives; a tuple, so DDP and torch.compile pass it through."""

    logits: torch.Tensor  # (B, num_classes)
    spatial_map: torch.Tensor  # M_s, pre-fusion spatial knowledge (B, C, N/16, N/16)
    freq_map: torch.Tensor  # M_f, pre-fusion frequency knowledge
    fused_map: torch.Tensor  # M_m1, the fusion module's output


class SFFB(nn.Module):
    """SFFB detector; ``forward`` takes RGB in [0, 1] (float, or uint8 in [0, 255]).

    Normalisation (the backbone's pretrained mean/std) happens here, on the model's device, so
    the data pipeline ships compact uint8 crops; the frequency stream sees the DCT bands of the
    normalised image (as F3-Net does).
    """

    def __init__(self, config: SFFBConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SFFBConfig()
        spatial = build_split_backbone(
            config.backbone, 3, config.num_classes, config.drop_rate, config.pretrained_path
        )
        self.bands = FrequencyBands(config.image_size, config.band_cuts)
        freq = build_split_backbone(
            config.backbone,
            3 * self.bands.num_bands,
            config.num_classes,
            config.drop_rate,
            config.pretrained_path,
        )
        self.spatial_stream = spatial.trunk
        self.freq_stream = freq.trunk  # its own weights: the frequency model's head is dropped
        self.fusion = build_fusion(config.fusion, spatial.channels, config.fusion_options)
        self.head = spatial.head
        input_mean, input_std = config.normalisation()
        mean = torch.tensor(input_mean).view(1, 3, 1, 1)
        std = torch.tensor(input_std).view(1, 3, 1, 1)
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)

    def forward(self, images: torch.Tensor) -> SFFBOutput:
        if images.dtype == torch.uint8:
            images = images.float() / 255
        x = (images - self.input_mean) / self.input_std
        spatial_map = self.spatial_stream(x)
        freq_map = self.freq_stream(self.bands(x))
        fused_map = self.fusion(spatial_map, freq_map)
        return SFFBOutput(self.head(fused_map), spatial_map, freq_map, fused_map)

    @staticmethod
    def fake_probability(logits: torch.Tensor) -> torch.Tensor:
        """P(fake) per sample: softmax channel 1, the score every metric uses."""
        return logits.float().softmax(dim=1)[:, 1]
