"""The learning-rate schedule (timm's, stepped per epoch) against the formulas by hand."""

import math

import pytest
import torch

from rayjobs.lib.config import OptimConfig
from rayjobs.lib.train_loop import lr_schedule


def _optimiser(lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(config: OptimConfig, epochs) -> list[float]:
    optimiser = _optimiser(config.lr)
    schedule = lr_schedule(optimiser, config)
    rates = []
    for epoch in epochs:
        schedule.step(epoch)
        rates.append(optimiser.param_groups[0]["lr"])
    return rates


def test_cosine_after_a_linear_warm_up_matches_the_formula():
    config = OptimConfig(lr=1e-3, epochs=6, schedule="cosine", warmup_epochs=2, warmup_lr=1e-5,
                         min_lr=1e-6)  # fmt: skip
    warm_up = [1e-5 + e * (1e-3 - 1e-5) / 2 for e in range(2)]
    cosine = [1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * e / 6)) for e in range(2, 6)]
    assert _lrs(config, range(6)) == pytest.approx(warm_up + cosine, rel=1e-9)


def test_the_rate_depends_on_the_epoch_alone_so_a_resumed_run_continues_it():
    config = OptimConfig(lr=1e-3, epochs=5, schedule="cosine", warmup_epochs=1)
    assert _lrs(config, [3, 4]) == pytest.approx(_lrs(config, range(5))[3:])


def test_the_default_keeps_the_papers_constant_learning_rate():
    assert _lrs(OptimConfig(lr=2e-4, epochs=4), range(4)) == [2e-4] * 4
    warmed = OptimConfig(lr=2e-4, epochs=4, warmup_epochs=1, warmup_lr=2e-5)
    assert _lrs(warmed, range(4)) == pytest.approx([2e-5, 2e-4, 2e-4, 2e-4])
