"""The weight average against a float64 recursion written from its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayjobs.lib.config import load_job_config
from rayjobs.lib.weight_average import WARMUP_POWER, WeightAverage


def reference_average(weights: list[np.ndarray], cap: float) -> np.ndarray:
    """ema_1 = w_1; ema_s = d_s ema_(s-1) + (1 - d_s) w_s with d_s = min(cap, 1 - s^-power)."""
    average = weights[0].astype(np.float64)
    for step, w in enumerate(weights[1:], start=2):
        decay = min(cap, 1.0 - step**-WARMUP_POWER)
        average = decay * average + (1.0 - decay) * w.astype(np.float64)
    return average


@pytest.mark.parametrize("cap", [0.5, 0.9])
def test_the_average_follows_the_warmed_up_recursion(cap):
    torch.manual_seed(0)
    network = torch.nn.Linear(4, 3).double()
    average = WeightAverage(network, decay=cap)
    seen = []
    for _ in range(40):
        with torch.no_grad():  # an optimiser step: any change of the weights
            network.weight.add_(torch.randn_like(network.weight))
        seen.append(network.weight.detach().numpy().copy())
        average.update()
    expected = reference_average(seen, cap)
    np.testing.assert_allclose(average.module.weight.detach().numpy(), expected, rtol=1e-12)
    assert not np.allclose(expected, seen[-1])  # an average, not the last weights
    assert average.steps == 40
    assert average.decay_now() == pytest.approx(min(cap, 1 - 41**-WARMUP_POWER))


def test_resuming_continues_the_same_average():
    torch.manual_seed(1)
    network = torch.nn.Linear(3, 2)
    whole = WeightAverage(network, decay=0.8)
    steps = [torch.randn_like(network.weight) for _ in range(10)]

    def train(average: WeightAverage, deltas) -> None:
        for delta in deltas:
            with torch.no_grad():
                network.weight.add_(delta)
            average.update()

    start = network.weight.detach().clone()
    train(whole, steps)
    with torch.no_grad():
        network.weight.copy_(start)
    first = WeightAverage(network, decay=0.8)
    train(first, steps[:4])
    resumed = WeightAverage(network, decay=0.8)  # a relaunched worker: from the checkpoint
    resumed.load(first.module.state_dict(), first.state_dict())
    train(resumed, steps[4:])
    torch.testing.assert_close(resumed.module.weight, whole.module.weight)


def test_a_decay_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"optim\.ema_decay must be in \[0, 1\), got 1\.0"):
        load_job_config("cpu-demo", overrides=["optim.ema_decay=1.0"])
    with pytest.raises(ValueError, match=r"optim\.ema_decay: a decay in \(0, 1\), got 0"):
        WeightAverage(torch.nn.Linear(1, 1), decay=0)
