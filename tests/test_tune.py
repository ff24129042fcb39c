"""A tiny sweep on real Ray Tune: one MLflow parent run, a child run per trial, the best saved."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from rayjobs.tune import sweep


def test_tiny_grid_sweep_tracks_parent_and_children(prepared, tmp_path, ray_session):
    shards, _ = prepared
    space = {
        "preset": "cpu-demo",
        "fixed": {
            "data.shards": str(shards),
            "data.methods": [],
            "model.backbone": "test_resnet",
            "model.image_size": 64,
            "optim.epochs": 1,
            "tracking.storage_path": str(tmp_path / "runs"),
            "tracking.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.experiment": "sweep-test",
        },
        "search": {"loss.lambda2": {"grid": [10.0, 100.0]}},
        "tune": {"num_samples": 1, "max_concurrent_trials": 1, "scheduler": "none"},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    summary = sweep(path, "tiny")

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep-test")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tiny")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(float(c.data.params["loss.lambda2"]) for c in children) == [10.0, 100.0]
    assert all(c.data.tags["sffb.stop_reason"] == "completed" for c in children)
    assert all("val_frame_auc" in c.data.metrics for c in children)
    assert parent.data.tags["sffb.best_trial"] == summary["best_trial"]
    saved = json.loads((tmp_path / "runs" / "sweeps" / "tiny-best.json").read_text())
    assert saved["best_config"]["loss.lambda2"] in (10.0, 100.0)
    assert Path(saved["best_checkpoint"], "state.pt").is_file()
