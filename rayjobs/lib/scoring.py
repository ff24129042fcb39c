"""P(fake) of a batch of crops: the one forward pass evaluation and detection both score with,
and the Ray Data model actors of evaluation and robustness.

The actors live here, not beside their jobs: Ray Data rebuilds an actor's class by importing
its module in a fresh worker, and this module imports only torch, the model and its checkpoint
loader (~7 s on the 2-core VM with timm), where ``rayjobs.evaluate`` brings MLflow, SciPy,
Grad-CAM and the launcher as well (~15 s): time every scoring pass waits before its first batch.
"""

from __future__ import annotations

import numpy as np
import torch

from data_prep.image_columns import to_model_size
from rayjobs.lib.checkpoints import load_model
from sffb.model import SFFB

#: Rows per forward pass when a dataset is scored (evaluation, robustness, detection). Kernels
#: pick their algorithm by batch size, so the same crop scored in batches of 7 and of 64 can
#: differ in the last bit: enough to break ties between saturated scores and move an AUC.
SCORE_BATCH = 64


def model_device() -> torch.device:
    """A GPU when this process has one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def _probabilities(model: SFFB, images: np.ndarray, device: torch.device) -> np.ndarray:
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(batch).logits
    return SFFB.fake_probability(logits).cpu().numpy()


def fake_scores(
    model: SFFB, images: np.ndarray, device: torch.device, rows: int | None = None
) -> np.ndarray:
    """P(fake) of uint8 NCHW crops (bf16 autocast on a GPU, as training validates).

    ``rows``: run forward passes of exactly this many crops, the last padded with blank ones,
    so a crop's score is the same whichever crops share its batch and however many they are
    (a dataset reaches the model in batches of any size). None: one pass over ``images`` as
    given, for a single request.
    """
    if rows is None:
        return _probabilities(model, images, device)
    count = len(images)
    padded = np.zeros((-(-count // rows) * rows, *images.shape[1:]), images.dtype)
    padded[:count] = images
    passes = [_probabilities(model, padded[i : i + rows], device) for i in range(0, count, rows)]
    return np.concatenate(passes)[:count] if passes else np.zeros(0, np.float32)


def score_column(model: int, level: str) -> str:
    """``LevelScorer``'s column of the ``model``-th checkpoint's scores at ``level``."""
    return f"score_{model}_{level}"


class LevelScorer:
    """Ray Data actor: loads the checkpoints once, scores every level's images of a batch with
    each (column ``score_column(i, level)`` for the i-th checkpoint); the images are decoded
    NCHW at the models' input side (all checkpoints of one pass share it)."""

    def __init__(
        self, checkpoints: tuple[str, ...], levels: tuple[str, ...], passthrough: tuple[str, ...]
    ) -> None:
        self.device = model_device()
        self.models = [load_model(checkpoint, self.device) for checkpoint in checkpoints]
        self.levels, self.passthrough = levels, passthrough

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {key: batch[key] for key in self.passthrough}
        for i, model in enumerate(self.models):
            for level in self.levels:
                images = batch[level]
                out[score_column(i, level)] = fake_scores(model, images, self.device, SCORE_BATCH)
        return out


class CropScorer:
    """Ray Data actor: P(fake) of every HWC crop of column ``image`` under each named checkpoint
    (column ``score_<name>``), each crop resized to that model's own input side."""

    def __init__(self, checkpoints: dict[str, str], passthrough: tuple[str, ...]) -> None:
        self.device = model_device()
        self.models = {name: load_model(c, self.device) for name, c in checkpoints.items()}
        self.passthrough = passthrough

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {key: batch[key] for key in self.passthrough}
        for name, model in self.models.items():
            size = model.config.image_size
            images = np.stack([to_model_size(c, size).transpose(2, 0, 1) for c in batch["image"]])
            out[f"score_{name}"] = fake_scores(model, images, self.device, SCORE_BATCH)
        return out
