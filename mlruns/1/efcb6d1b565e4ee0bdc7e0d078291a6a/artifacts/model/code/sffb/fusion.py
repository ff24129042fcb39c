"""Fusion of the spatial map ``M_s`` and frequency map ``M_f`` (SPEC §1.3, paper Table 3).

Every variant maps ``(M_s, M_f)``, each ``(B, C, H, W)``, to one ``(B, C, H, W)`` map, and is
built by name from ``FUSIONS`` so a config or a Tune search space can name it as a string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FusionOptions:
    """Knobs of the fusion variants; the defaults are SKNet's (SPEC marks them (ours))."""

    reduction: int = 16  # r in d = max(C / r, min_width)
    min_width: int = 32
    select: str = "softmax"  # "softmax" across the two branches per channel, or "sigmoid"
    grid: tuple[int, int] = (2, 2)  # blocks (rows, cols) of the chunked variant


class SKFusion(nn.Module):
    """Selective-kernel fusion, the two streams standing in for SKNet's split (SPEC eq. 3-8).

    ``M_m = M_f + M_s``; ``z = ReLU(BN(fc(GAP(M_m))))``; ``a_f, a_s = select(fc1(z), fc2(z))``;
    ``A = a * M + M`` per stream; ``M_m1 = conv1x1([A_f, A_s])``.
    """

    def __init__(self, channels: int, options: FusionOptions = FusionOptions()) -> None:
        super().__init__()
        if options.select not in ("softmax", "sigmoid"):
            raise ValueError(f"SK select must be 'softmax' or 'sigmoid', got {options.select!r}")
        width = max(channels // options.reduction, options.min_width)
        self.select = options.select
        self.squeeze = nn.Sequential(
            nn.Linear(channels, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)
        )
        self.attend_freq = nn.Linear(width, channels)
        self.attend_spatial = nn.Linear(width, channels)
        self.project = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        z = self.squeeze((spatial + freq).mean(dim=(2, 3)))
        logits = torch.stack([self.attend_freq(z), self.attend_spatial(z)])
        weights = logits.softmax(dim=0) if self.select == "softmax" else logits.sigmoid()
        a_freq, a_spatial = weights[..., None, None]
        attended_freq = a_freq * freq + freq
        attended_spatial = a_spatial * spatial + spatial
        return self.project(torch.cat([attended_freq, attended_spatial], dim=1))


class SumFusion(nn.Module):
    """``M_s + M_f``: the parameter-free ablation."""

    def __init__(self, channels: int, options: FusionOptions = FusionOptions()) -> None:
        super().__init__()

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        return spatial + freq


class ConcatFusion(nn.Module):
    """``conv1x1([M_s, M_f])``: fusion without attention."""

    def __init__(self, channels: int, options: FusionOptions = FusionOptions()) -> None:
        super().__init__()
        self.project = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([spatial, freq], dim=1))


class ChunkedFusion(nn.Module):
    """Split both maps into a ``rows x cols`` grid and SK-fuse each block pair on its own.

    Every block position has its own SK module, so its channel attention is local to that block.
    Maps that do not divide evenly get blocks that differ by at most one row or column.
    """

    def __init__(self, channels: int, options: FusionOptions = FusionOptions()) -> None:
        super().__init__()
        rows, cols = options.grid
        if rows < 1 or cols < 1:
            raise ValueError(f"chunked fusion grid must be positive, got {options.grid}")
        self.grid = (rows, cols)
        self.blocks = nn.ModuleList(SKFusion(channels, options) for _ in range(rows * cols))

    def forward(self, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        if spatial.shape[2] < rows or spatial.shape[3] < cols:
            raise ValueError(f"a {tuple(spatial.shape[2:])} map cannot be cut into {rows}x{cols}")
        fused_rows, block = [], iter(self.blocks)
        row_pairs = zip(spatial.tensor_split(rows, 2), freq.tensor_split(rows, 2), strict=True)
        for s_row, f_row in row_pairs:
            pairs = zip(s_row.tensor_split(cols, 3), f_row.tensor_split(cols, 3), strict=True)
            fused_rows.append(torch.cat([next(block)(s, f) for s, f in pairs], dim=3))
        return torch.cat(fused_rows, dim=2)


FusionBuilder = Callable[[int, FusionOptions], nn.Module]

FUSIONS: dict[str, FusionBuilder] = {
    "sk": SKFusion,
    "sum": SumFusion,
    "concat": ConcatFusion,
    "chunked": ChunkedFusion,
}


def build_fusion(name: str, channels: int, options: FusionOptions = FusionOptions()) -> nn.Module:
    """The fusion variant registered as ``name``, for maps of ``channels`` channels."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; registered: {', '.join(sorted(FUSIONS))}")
    return FUSIONS[name](channels, options)
