"""Precise BatchNorm statistics against a float64 NumPy reference, alone and over DDP ranks."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sffb.batchnorm import common_batch_count, recalibrate_batchnorm
from tests.servers import free_port


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model[0].running_mean.fill_(5.0)  # stale statistics, far from the data's
    model[0].running_var.fill_(9.0)
    return model.eval()


def _batches(seed: int, count: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, 3, 8, 8, generator=g) * (i + 1) + i for i in range(count)]


def _reference(batches: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """update_bn's cumulative average of each batch's channel mean and unbiased variance."""
    arrays = [b.double().numpy() for b in batches]
    means = [a.mean(axis=(0, 2, 3)) for a in arrays]
    variances = [a.var(axis=(0, 2, 3), ddof=1) for a in arrays]
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def test_statistics_are_recomputed_from_the_batches():
    model, batches = _model(), _batches(1)
    weights = [p.detach().clone() for p in model.parameters()]
    recalibrate_batchnorm(model, batches)
    mean, var = _reference(batches)
    np.testing.assert_allclose(model[0].running_mean.double().numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(model[0].running_var.double().numpy(), var, rtol=1e-5)
    assert not model.training  # the mode it had
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert model[0].momentum == 0.1  # update_bn's cumulative mode is undone


def _rank(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        batches = _batches(10 + rank, count=2 + rank)  # rank 1 holds one batch more
        count = common_batch_count(len(batches), torch.device("cpu"))
        model = _model()
        recalibrate_batchnorm(model, batches[:count])
        results[rank] = (count, model[0].running_mean.clone(), model[0].running_var.clone())
    finally:
        dist.destroy_process_group()


def test_ranks_use_as_many_batches_and_end_with_the_averaged_statistics():
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_rank, args=(free_port(), results), nprocs=2, join=True)
    (count0, mean0, var0), (count1, mean1, var1) = results[0], results[1]
    assert count0 == count1 == 2
    assert torch.equal(mean0, mean1) and torch.equal(var0, var1)
    per_rank = [_reference(_batches(10 + rank, count=2 + rank)[:2]) for rank in (0, 1)]
    np.testing.assert_allclose(mean0.double().numpy(), np.mean([m for m, _ in per_rank], 0),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(var0.double().numpy(), np.mean([v for _, v in per_rank], 0),
                               rtol=1e-5)  # fmt: skip
