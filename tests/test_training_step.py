"""One optimisation step: the gradient norm it reports, and clipping (``optim.clip_grad_norm``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayjobs.lib.config import load_job_config
from rayjobs.lib.step import TrainingStep
from sffb.losses import DistillationLoss
from sffb.model import SFFB


def _step(clip: float) -> tuple[TrainingStep, dict[str, float]]:
    """A teacher step on one random batch, from the same weights and inputs whatever ``clip``."""
    job = load_job_config(
        "cpu-demo",
        overrides=["model.backbone=test_resnet", "model.image_size=64",
                   f"optim.clip_grad_norm={clip}", "data.augment_on=cpu"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = SFFB(job.model)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.0)  # the gradients stay readable
    step = TrainingStep(
        model, None, DistillationLoss.hard_only(), optimiser, job, "raw", ("raw",),
        torch.device("cpu"),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    batch = {
        "raw": torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=generator),
        "label": torch.tensor([0, 1, 0, 1]),
    }
    return step, step(batch)


def _gradient_norm(model: torch.nn.Module) -> float:
    """The global L2 norm in float64 NumPy, apart from torch's own computation."""
    squares = [np.square(p.grad.double().numpy()).sum() for p in model.parameters()
               if p.grad is not None]  # fmt: skip
    return float(np.sqrt(np.sum(squares)))


def test_the_reported_norm_is_the_gradients_and_clipping_bounds_it():
    free, free_terms = _step(0.0)
    assert free_terms["grad_norm"] == pytest.approx(_gradient_norm(free.model), rel=1e-5)
    limit = free_terms["grad_norm"] / 4
    clipped, clipped_terms = _step(limit)
    assert clipped_terms["grad_norm"] == pytest.approx(free_terms["grad_norm"], rel=1e-6)
    assert _gradient_norm(clipped.model) == pytest.approx(limit, rel=1e-4)
    # Clipped, the gradient keeps its direction.
    for a, b in zip(free.model.parameters(), clipped.model.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad / 4, rtol=1e-4, atol=1e-9)


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match=r"optim\.clip_grad_norm must be >= 0, got -1\.0"):
        load_job_config("cpu-demo", overrides=["optim.clip_grad_norm=-1.0"])
