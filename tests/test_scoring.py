"""A crop's score does not depend on the batch it reaches the model in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayjobs.lib.scoring import SCORE_BATCH, fake_scores
from sffb.model import SFFB, SFFBConfig


@pytest.fixture(scope="module")
def model_and_crops() -> tuple[SFFB, np.ndarray]:
    torch.manual_seed(0)
    model = SFFB(SFFBConfig(backbone="test_resnet", image_size=64)).eval()
    crops = np.random.default_rng(0).integers(0, 256, (SCORE_BATCH + 5, 3, 64, 64), np.uint8)
    return model, crops


@pytest.mark.parametrize("chunk", [1, 7, 33, SCORE_BATCH + 5])
def test_scores_are_the_same_bits_whatever_the_batch(model_and_crops, chunk):
    """Ray Data hands the scorers batches of any size (block ends, the last batch); every
    forward pass still holds SCORE_BATCH crops, so the scores are identical, not just close."""
    model, crops = model_and_crops
    cpu = torch.device("cpu")
    whole = fake_scores(model, crops, cpu, SCORE_BATCH)
    pieces = [fake_scores(model, crops[i : i + chunk], cpu, SCORE_BATCH)
              for i in range(0, len(crops), chunk)]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # Padding changes nothing for the crops it pads: a full pass is the plain forward pass.
    np.testing.assert_array_equal(whole[:SCORE_BATCH], fake_scores(model, crops[:SCORE_BATCH], cpu))
    assert whole.dtype == np.float32 and whole.shape == (len(crops),)


def test_no_crops_give_no_scores(model_and_crops):
    model, crops = model_and_crops
    assert fake_scores(model, crops[:0], torch.device("cpu"), SCORE_BATCH).shape == (0,)
