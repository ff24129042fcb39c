"""Precise BatchNorm statistics: recompute the running mean/variance with the final weights.

BatchNorm's running statistics are an exponential average over training steps whose weights
kept changing, on augmented crops. In short runs from random initialisation they lag the
weights badly: measured on the embedded default (README, docs/distillation.md), the Xception
teacher ranks validation frames perfectly (AUC 1.0) yet calls every frame real in eval mode
(ACC 50 %), and its soft targets, which the student distils, carry that bias. Recomputing the
statistics on a few un-augmented training batches with the final weights ("precise BN", Wu &
Johnson 2021) removes it. ``torch.optim.swa_utils.update_bn`` does the recomputation; across
DDP workers the statistics are then averaged so every rank (and the checkpoint) holds the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import update_bn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Running statistics of every BatchNorm layer recomputed from ``batches`` (model inputs).

    The model's weights and training/eval mode are left as they were. Under
    ``torch.distributed``, each rank passes the same number of batches (SyncBatchNorm
    synchronises every forward) and the resulting statistics are averaged over the ranks.
    """
    layers = batchnorm_layers(model)
    if not layers or not batches:
        return
    update_bn(batches, model)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for layer in layers:
            for stat in (layer.running_mean, layer.running_var):
                dist.all_reduce(stat, op=dist.ReduceOp.SUM)
                stat /= dist.get_world_size()


def common_batch_count(count: int, device: torch.device) -> int:
    """The fewest calibration batches any rank holds (every rank must run as many forwards)."""
    if not (dist.is_available() and dist.is_initialized()):
        return count
    tensor = torch.tensor([count], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())
