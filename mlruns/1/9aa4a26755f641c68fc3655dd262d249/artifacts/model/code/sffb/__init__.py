"""SFFB: spatial-frequency fusion deepfake detector with multi-knowledge distillation.

Pure PyTorch (no Ray): the model, its frequency input, the distillation loss and the metrics,
usable from a notebook, a test, or the Ray jobs in ``rayjobs/``.
"""

from sffb.dct import FrequencyBands
from sffb.losses import DistillationLoss, LossTerms
from sffb.metrics import DetectionMetrics, DetectionReport, evaluate_detection
from sffb.model import SFFB, SFFBConfig, SFFBOutput

__all__ = [
    "SFFB",
    "DetectionMetrics",
    "DetectionReport",
    "DistillationLoss",
    "FrequencyBands",
    "LossTerms",
    "SFFBConfig",
    "SFFBOutput",
    "evaluate_detection",
]
