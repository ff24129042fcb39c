"""Class balance of the training split (``data.balance``): what corrects 1 real : N fakes.

Training on several FF++ methods gives one real per N fakes, and an unweighted loss first learns
"always fake" (validation ACC sits at the fake share). Two corrections, and when to apply them,
chosen from the train split's row counts in the shards' manifest before any worker starts:

- ``loss_weights``: the hard cross-entropy weighs each class by ``rows / (2 * class rows)``, so
  both classes carry half the loss (scikit-learn's "balanced" class weights);
- ``sampler``: the smaller class's rows are repeated (an expected ``majority / minority`` times
  each, fresh draws every epoch) before decoding, so batches hold both classes equally;
- ``auto`` (default): ``loss_weights`` when the ratio passes ``AUTO_RATIO``, else ``none``.

The paper trains one manipulation method at a time (1:1), where ``auto`` changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

BALANCES = ("auto", "none", "loss_weights", "sampler")
#: ``auto`` corrects a training split whose larger class outnumbers the smaller by more than this.
AUTO_RATIO = 2.0


@dataclass(frozen=True)
class ClassBalance:
    """The resolved correction and the train split's class counts (rows)."""

    method: str  # none, loss_weights or sampler
    real: int
    fake: int

    @property
    def ratio(self) -> float:
        """Larger class over smaller class, >= 1."""
        return max(self.real, self.fake) / max(1, min(self.real, self.fake))

    def loss_weights(self) -> tuple[float, float] | None:
        """(real, fake) cross-entropy weights, or None when the loss stays unweighted."""
        if self.method != "loss_weights":
            return None
        total = self.real + self.fake
        return (total / (2 * self.real), total / (2 * self.fake))

    def oversampling(self) -> tuple[int, float] | None:
        """(label to repeat, expected copies per row), or None when rows are read once."""
        if self.method != "sampler" or self.real == self.fake:
            return None
        minority = 0 if self.real < self.fake else 1
        return minority, self.ratio

    def describe(self) -> str:
        return (
            f"class balance: {self.real:,} real : {self.fake:,} fake training rows "
            f"(1:{self.fake / max(1, self.real):.2f}); correction: {self.method}"
        )


def resolve_balance(choice: str, real: int, fake: int) -> ClassBalance:
    """``data.balance`` made concrete for the train split's counts (``auto`` decided here)."""
    if choice not in BALANCES:
        raise ValueError(f"data.balance: unknown {choice!r}; one of {BALANCES}")
    if min(real, fake) == 0:
        raise ValueError(f"the training split holds {real} real and {fake} fake rows: no balance")
    balance = ClassBalance("none", real, fake)
    if choice == "auto":
        return ClassBalance("loss_weights" if balance.ratio > AUTO_RATIO else "none", real, fake)
    return ClassBalance(choice, real, fake)


def train_class_counts(manifest: dict, methods: tuple[str, ...]) -> tuple[int, int]:
    """(real, fake) rows of the train split the job reads: every real, the fakes of
    ``methods`` (all when empty), from the shards' manifest (its per-method row counts)."""
    rows = manifest.get("rows", {}).get("train", {})
    real = sum(int(by_label.get("0", 0)) for by_label in rows.values())
    fake = sum(
        int(by_label.get("1", 0))
        for method, by_label in rows.items()
        if not methods or method in methods
    )
    return real, fake


class RepeatClass:
    """``map_batches`` step: each row of ``label`` appears ``floor(f)`` or ``ceil(f)`` times
    (``f`` on average), other rows once; fresh draws in every task, so epochs differ."""

    def __init__(self, label: int, factor: float) -> None:
        self.label, self.factor = label, factor
        self.rng: np.random.Generator | None = None  # made in the task: a pickled one repeats

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Arrow in, Arrow out: the crop columns keep their exact types for decoding."""
        if self.rng is None:
            self.rng = np.random.default_rng()
        chosen = batch.column("label").to_numpy() == self.label
        whole, part = divmod(self.factor, 1.0)
        extra = self.rng.random(chosen.size) < part
        copies = np.where(chosen, int(whole) + extra, 1)
        return batch.take(np.repeat(np.arange(chosen.size), copies))
