"""P(fake) of a batch of crops: the one forward pass evaluation and detection both score with."""

from __future__ import annotations

import numpy as np
import torch

from sffb.model import SFFB


def model_device() -> torch.device:
    """A GPU when this process has one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def fake_scores(model: SFFB, images: np.ndarray, device: torch.device) -> np.ndarray:
    """P(fake) of uint8 NCHW crops (bf16 autocast on a GPU, as training validates)."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(batch).logits
    return SFFB.fake_probability(logits).cpu().numpy()
