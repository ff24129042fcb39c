"""Multi-knowledge distillation loss (SPEC §2, paper Table 4).

``L_total = lambda1 * L_feature + lambda2 * L_soft + lambda3 * L_hard`` where the feature term
is an MSE on the knowledge maps the variant names, ``L_soft`` the cross-entropy of the student's
tempered softmax against the teacher's, and ``L_hard`` the cross-entropy against the labels.

Two options beyond the paper (both off by default), for balancing the terms: ``soft_scale="t2"``
multiplies ``L_soft`` by T^2 (Hinton et al.: keeps its gradients' scale as T grows), and
``feature_norm="l2"`` compares each map after L2-normalising it per sample (the squared
distance of unit vectors, in [0, 4], summed over a sample and averaged over the batch), so the
feature term no longer scales with the 728-channel maps' magnitude.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
#: ``none`` is the teacher's pretraining: hard loss only, no teacher needed.
KNOWLEDGE_TYPES = (
    "none",
    *FEATURE_KNOWLEDGE,
    *(name + _LOGITS_SUFFIX for name in FEATURE_KNOWLEDGE),
)


@dataclass(frozen=True)
class LossTerms:
    """The total and each unweighted term, for the optimiser and for logging."""

    total: torch.Tensor
    feature: torch.Tensor
    soft: torch.Tensor
    hard: torch.Tensor

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
    ) -> None:
        super().__init__()
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
        self.lambda1, self.lambda2, self.lambda3 = lambda1, lambda2, lambda3
        self.temperature = temperature
        self.knowledge = knowledge
        self.uses_logits = knowledge.endswith(_LOGITS_SUFFIX)
        self.feature_maps = FEATURE_KNOWLEDGE.get(knowledge.removesuffix(_LOGITS_SUFFIX))
        self.soft_factor = temperature**2 if soft_scale == "t2" else 1.0
        self.map_distance = normalised_map_distance if feature_norm == "l2" else _mse

    @classmethod
    def hard_only(cls) -> DistillationLoss:
        """Cross-entropy alone, for pretraining the teacher on raw frames."""
        return cls(lambda1=0.0, lambda2=0.0, lambda3=1.0, knowledge="none")

    @property
    def needs_teacher(self) -> bool:
        return self.knowledge != "none"

    def forward(
        self, student: SFFBOutput, teacher: SFFBOutput | None, labels: torch.Tensor
    ) -> LossTerms:
        hard = F.cross_entropy(_wide(student.logits), labels)
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
        total = self.lambda1 * feature + self.lambda2 * soft + self.lambda3 * hard
        return LossTerms(total=total, feature=feature, soft=soft, hard=hard)
