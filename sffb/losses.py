"""Multi-knowledge distillation loss (SPEC §2, paper Table 4).

``L_total = lambda1 * L_feature + lambda2 * L_soft + lambda3 * L_hard`` where the feature term
is an MSE on the knowledge maps the variant names, ``L_soft`` the cross-entropy of the student's
tempered softmax against the teacher's, and ``L_hard`` the cross-entropy against the labels.

Options beyond the paper (all off by default), for balancing the terms: ``soft_scale="t2"``
multiplies ``L_soft`` by T^2 (Hinton et al.: keeps its gradients' scale as T grows);
``feature_norm="l2"`` compares each map after L2-normalising it per sample (the squared
distance of unit vectors, in [0, 4], summed over a sample and averaged over the batch), so the
feature term no longer scales with the 728-channel maps' magnitude; ``balance="running"``
divides each term by a running mean of its own (detached) value, so the lambdas weigh terms of
magnitude ~1 instead of terms whose scales differ by orders of magnitude; and
``kd_warmup_epochs`` ramps the two distillation terms in linearly (hard loss alone in epoch 0).
``class_weights`` (real, fake) weigh the hard cross-entropy per class (PyTorch's weighted mean),
for a training split with one real per several fakes; they come from the data, not the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sffb.model import SFFBOutput

KnowledgeMaps = Callable[[SFFBOutput], tuple[torch.Tensor, ...]]

#: Feature knowledge by name: the maps whose student/teacher MSEs are summed into L_feature.
FEATURE_KNOWLEDGE: dict[str, KnowledgeMaps] = {
    "maps": lambda out: (out.freq_map, out.spatial_map),  # L_f + L_s
    "sum_of_maps": lambda out: (out.spatial_map + out.freq_map,),
    "fused_map": lambda out: (out.fused_map,),
}
_LOGITS_SUFFIX = "+logits"
SOFT_SCALES = ("none", "t2")
FEATURE_NORMS = ("none", "l2")
BALANCES = ("none", "running")
TERMS = ("feature", "soft", "hard")
#: ``none`` is the teacher's pretraining: hard loss only, no teacher needed.
KNOWLEDGE_TYPES = (
    "none",
    *FEATURE_KNOWLEDGE,
    *(name + _LOGITS_SUFFIX for name in FEATURE_KNOWLEDGE),
)


@dataclass(frozen=True)
class LossTerms:
    """The total and each unweighted term, for the optimiser and for logging.

    ``weighted`` holds each term as it enters the total (lambda, warm-up and balance applied;
    they sum to ``total``): what a diagnosis differentiates to see which term steers the student.
    """

    total: torch.Tensor
    feature: torch.Tensor
    soft: torch.Tensor
    hard: torch.Tensor
    weighted: dict[str, torch.Tensor] = field(default_factory=dict)

    def as_floats(self) -> dict[str, float]:
        return {
            name: float(getattr(self, name).detach())
            for name in ("total", "feature", "soft", "hard")
        }


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision activations (autocast) are upcast so the loss itself is float32 or wider."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(_wide(student), _wide(teacher))


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``-sum_i softmax(v/T)_i log softmax(z/T)_i``, batch mean (SPEC §2; no T^2 factor)."""
    target = (_wide(teacher_logits) / temperature).softmax(dim=1)
    log_probs = (_wide(student_logits) / temperature).log_softmax(dim=1)
    return -(target * log_probs).sum(dim=1).mean()


def normalised_map_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``|s/|s| - t/|t||^2`` per sample over the flattened map, batch mean."""
    s = F.normalize(_wide(student).flatten(1), dim=1)
    t = F.normalize(_wide(teacher).flatten(1), dim=1)
    return (s - t).pow(2).sum(dim=1).mean()


def kd_warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """The distillation terms' weight in ``epoch`` (0-based): ``epoch / warmup_epochs``, at most 1.

    Epoch 0 learns from the labels alone, so the student's own features form before the
    teacher's maps pull on them; full weight from epoch ``warmup_epochs`` on.
    """
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)


class RunningMagnitude(nn.Module):
    """An exponential moving average of each loss term's detached value, per term.

    The first value seeds the average (no bias towards zero); it moves only in training mode,
    and lives in buffers so a checkpoint restores it with the loss's ``state_dict``.
    """

    def __init__(self, momentum: float = 0.99) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("means", torch.zeros(len(TERMS), dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(len(TERMS), dtype=torch.bool))

    def normalise(self, name: str, term: torch.Tensor) -> torch.Tensor:
        """``term / mean``, after folding ``term`` into the mean (training mode)."""
        index = TERMS.index(name)
        if self.training:
            value = term.detach().to(self.means)
            if self.seen[index]:
                value = self.momentum * self.means[index] + (1.0 - self.momentum) * value
            self.means[index] = value
            self.seen[index] = True
        if not self.seen[index]:
            return term
        return term / self.means[index].clamp_min(1e-12).to(term.dtype)


class DistillationLoss(nn.Module):
    """Student loss against a frozen teacher; defaults are the paper's (lambda 2/100/1, T = 1).

    ``knowledge`` is one of ``KNOWLEDGE_TYPES``: ``maps+logits`` (paper default), ``maps``,
    ``sum_of_maps``, ``fused_map`` (each optionally ``+logits``), or ``none`` for the teacher's
    own pretraining (``DistillationLoss.hard_only()``). Terms a variant does not use are zero.
    """

    def __init__(
        self,
        lambda1: float = 2.0,
        lambda2: float = 100.0,
        lambda3: float = 1.0,
        temperature: float = 1.0,
        knowledge: str = "maps+logits",
        soft_scale: str = "none",
        feature_norm: str = "none",
        balance: str = "none",
        balance_momentum: float = 0.99,
        kd_warmup_epochs: int = 0,
        class_weights: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if balance not in BALANCES:
            raise ValueError(f"unknown balance {balance!r}; one of {BALANCES}")
        if not 0.0 <= balance_momentum < 1.0:
            raise ValueError(f"balance momentum must be in [0, 1), got {balance_momentum}")
        if kd_warmup_epochs < 0:
            raise ValueError(f"kd_warmup_epochs must be >= 0, got {kd_warmup_epochs}")
        if soft_scale not in SOFT_SCALES:
            raise ValueError(f"unknown soft_scale {soft_scale!r}; one of {SOFT_SCALES}")
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"unknown feature_norm {feature_norm!r}; one of {FEATURE_NORMS}")
        if knowledge not in KNOWLEDGE_TYPES:
            raise ValueError(
                f"unknown knowledge {knowledge!r}; one of {', '.join(KNOWLEDGE_TYPES)}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        for name, weight in (("lambda1", lambda1), ("lambda2", lambda2), ("lambda3", lambda3)):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0 (a loss weight), got {weight}")
        self.lambda1, self.lambda2, self.lambda3 = lambda1, lambda2, lambda3
        self.temperature = temperature
        self.knowledge = knowledge
        self.uses_logits = knowledge.endswith(_LOGITS_SUFFIX)
        self.feature_maps = FEATURE_KNOWLEDGE.get(knowledge.removesuffix(_LOGITS_SUFFIX))
        self.uses_features = self.feature_maps is not None
        self.soft_factor = temperature**2 if soft_scale == "t2" else 1.0
        self.map_distance = normalised_map_distance if feature_norm == "l2" else _mse
        self.magnitudes = RunningMagnitude(balance_momentum) if balance == "running" else None
        self.kd_warmup_epochs = kd_warmup_epochs
        if class_weights is not None and (len(class_weights) != 2 or min(class_weights) <= 0):
            raise ValueError(f"class_weights must be two positive numbers, got {class_weights}")
        weights = None if class_weights is None else torch.tensor(class_weights)
        self.register_buffer("class_weights", weights, persistent=False)
        self.distillation_weight = kd_warmup_factor(0, kd_warmup_epochs)

    def start_epoch(self, epoch: int) -> None:
        """Sets the KD warm-up's weight of the feature and soft terms for ``epoch`` (0-based)."""
        self.distillation_weight = kd_warmup_factor(epoch, self.kd_warmup_epochs)

    def _balanced(self, name: str, term: torch.Tensor, used: bool) -> torch.Tensor:
        if self.magnitudes is None or not used:
            return term
        return self.magnitudes.normalise(name, term)

    @classmethod
    def hard_only(cls, class_weights: tuple[float, float] | None = None) -> DistillationLoss:
        """Cross-entropy alone, for pretraining the teacher on raw frames."""
        return cls(
            lambda1=0.0, lambda2=0.0, lambda3=1.0, knowledge="none", class_weights=class_weights
        )

    @property
    def needs_teacher(self) -> bool:
        return self.knowledge != "none"

    def forward(
        self, student: SFFBOutput, teacher: SFFBOutput | None, labels: torch.Tensor
    ) -> LossTerms:
        logits = _wide(student.logits)
        weights = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        hard = F.cross_entropy(logits, labels, weight=weights)
        zero = hard.new_zeros(())
        if self.needs_teacher and teacher is None:
            raise ValueError(f"knowledge {self.knowledge!r} needs the teacher's output")
        feature = soft = zero
        if self.feature_maps is not None:
            pairs = zip(self.feature_maps(student), self.feature_maps(teacher), strict=True)
            feature = sum((self.map_distance(s, t.detach()) for s, t in pairs), zero)
        if self.uses_logits:
            soft = self.soft_factor * soft_cross_entropy(
                student.logits, teacher.logits.detach(), self.temperature
            )
        kd = self.distillation_weight
        weighted = {
            "feature": kd * self.lambda1 * self._balanced("feature", feature, self.uses_features),
            "soft": kd * self.lambda2 * self._balanced("soft", soft, self.uses_logits),
            "hard": self.lambda3 * self._balanced("hard", hard, True),
        }
        total = weighted["feature"] + weighted["soft"] + weighted["hard"]
        return LossTerms(total, feature, soft, hard, weighted)
