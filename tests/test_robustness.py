"""The degradations of the robustness curves. The curves end to end (real H.264 re-encodes of
the synthetic test videos, a trained teacher, Ray, MLflow) are tested in tests/test_training.py,
where a trained teacher exists."""

from __future__ import annotations

import numpy as np

from data_prep.faces import CropBox
from rayjobs.robustness import Degradation, degrade_frame


def test_spatial_degradations_keep_the_face_box():
    """Downscaling scales the box with the frame; the others leave frame size and box alone."""
    ys, xs = np.mgrid[0:144, 0:192]
    smooth = 128 + 60 * np.sin(xs / 9.0) * np.cos(ys / 7.0)  # a picture, not white noise
    frame = np.repeat(smooth[..., None], 3, axis=2).astype(np.uint8)
    box = CropBox(40, 20, 100)
    small, scaled = degrade_frame(frame, box, Degradation("d", "downscale", 0.5), seed=0)
    assert small.shape == (72, 96, 3) and scaled == CropBox(20, 10, 50)
    for kind, value in (("blur", 2.0), ("noise", 10.0), ("jpeg", 50)):
        degraded, same = degrade_frame(frame, box, Degradation(kind, kind, value), seed=0)
        assert degraded.shape == frame.shape and degraded.dtype == np.uint8 and same == box
        assert 0 < np.abs(degraded.astype(int) - frame).mean() < 20  # changed, still the picture
