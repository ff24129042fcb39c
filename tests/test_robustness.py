"""Robustness curves on real H.264 re-encodes of the synthetic test videos, a real local Ray
cluster and a real MLflow store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from data_prep.faces import CropBox
from rayjobs.evaluate import score_test_split
from rayjobs.lib.checkpoints import save_state
from rayjobs.lib.config import load_job_config
from rayjobs.robustness import DEGRADATIONS, Degradation, degrade_frame, main
from sffb.metrics import evaluate_detection
from sffb.model import SFFB

pytestmark = pytest.mark.slow


def test_crf_ladder_reproduces_the_prepared_levels_and_the_curves_are_logged(
    ray_session, prepared, synthetic_root, tmp_path, monkeypatch, capsys
):
    """Re-encoding raw at CRF 23 and 40 is how the synthetic c23/c40 files were made, and the
    crops use preparation's boxes: those points of the curve equal evaluation at c23/c40."""
    shards, _ = prepared
    tiny = ["model.backbone=test_resnet", "model.image_size=64"]
    job = load_job_config("cpu-demo", overrides=tiny)
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    torch.manual_seed(0)
    save_state(checkpoint, model=SFFB(job.model).state_dict(), config=job, history=[], epoch=0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    main(["--checkpoint", f"random={checkpoint}", "--shards", str(shards), "--root",
          str(synthetic_root), "--experiment", "robust"])  # fmt: skip

    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("robust").experiment_id])[0]
    metrics = run.data.metrics
    assert len([k for k in metrics if k.endswith("_frame_auc")]) == len(DEGRADATIONS)
    evaluated = score_test_split(str(checkpoint), str(shards), ("c23", "c40"))
    for level in ("c23", "c40"):
        report = evaluate_detection(evaluated["label"], evaluated[f"score_{level}"],
                                    evaluated["video_key"])  # fmt: skip
        assert metrics[f"robust_random_crf{level[1:]}_frame_auc"] == pytest.approx(
            report.frame.auc, abs=1e-9)  # fmt: skip
        assert metrics[f"robust_random_crf{level[1:]}_video_auc"] == pytest.approx(
            report.video.auc, abs=1e-9)  # fmt: skip
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "robustness")}
    assert artifacts == {"robustness/curves.png", "robustness/table.md"}
    assert "| random | jpeg50 |" in capsys.readouterr().out


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
