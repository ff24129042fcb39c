"""P(fake) of a batch of crops: the one forward pass evaluation and detection both score with."""

from __future__ import annotations

import numpy as np
import torch

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
