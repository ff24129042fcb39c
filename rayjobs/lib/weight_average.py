"""An exponential moving average of the weights (timm's ``ModelEmaV3``): the model a run keeps.

Why: a teacher trained a few hundred small-batch steps at a high rate ends each epoch at one
noisy point of its trajectory, and a small validation split then picks among noisy points
(docs/distillation.md, "Seventeenth"). The average over the last steps is a smoother model.
With ``optim.ema_decay`` > 0 the average is what is validated, checkpointed (``model``) and
used downstream; the trained weights (``live_model``) are kept only to resume training.

The decay of the s-th update warms up with timm's schedule (``1 - s ** -0.75``, capped at
``optim.ema_decay``; the first update copies the weights), so the average does not keep the
random start.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.utils import ModelEmaV3

#: timm's suggestion for runs shorter than ~10k steps (its ``ModelEmaV3`` docstring).
WARMUP_POWER = 0.75


class WeightAverage:
    """The averaged copy of ``network`` (unwrapped, not the DDP module), updated per step.

    Every DDP rank holds the same weights after each step, so the averages agree as well.
    """

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema_decay: a decay in (0, 1), got {decay}")
        self._ema = ModelEmaV3(
            network, decay=decay, use_warmup=True, warmup_power=WARMUP_POWER, foreach=True
        )
        self._network = network
        self.steps = 0

    @property
    def module(self) -> torch.nn.Module:
        return self._ema.module

    def update(self) -> None:
        """After an optimiser step: the average moves towards the network's new weights."""
        self.steps += 1
        self._ema.update(self._network, step=self.steps)

    def decay_now(self) -> float:
        """The decay the next update uses (logged: how many steps the average spans)."""
        return self._ema.get_decay(self.steps + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load(self, averaged: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Resume from a checkpoint: its ``model`` weights and this object's ``state_dict``."""
        self.module.load_state_dict(averaged)
        self.steps = int(state["steps"])
