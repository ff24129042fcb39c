"""Recipes compared over seeds: checkpoints scored on a real local Ray cluster, the comparison
logged to a real MLflow store, the averages checked against scikit-learn on scores computed
without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from data_prep.image_columns import decode_column, level_column
from rayjobs.compare_seeds import main, parse_recipes
from rayjobs.lib.checkpoints import load_model
from rayjobs.lib.scoring import SCORE_BATCH, fake_scores
from tests.helpers import random_checkpoint


def _frame_auc(checkpoint: str, shards: Path) -> float:
    rows = pq.read_table(shards / "test")
    images = decode_column(rows[level_column(rows.column_names, "c40")], 64)
    scores = fake_scores(load_model(checkpoint), images, torch.device("cpu"), SCORE_BATCH)
    return roc_auc_score(rows["label"].to_numpy(), scores)


@pytest.mark.slow
def test_recipes_are_averaged_over_seeds_and_logged(
    ray_session, prepared, tmp_path, monkeypatch, capsys
):
    shards, _ = prepared
    kd = [random_checkpoint(tmp_path / f"kd-s{s}" / "best", s) for s in (0, 1)]
    plain = [random_checkpoint(tmp_path / f"plain-s{s}" / "best", s) for s in (2, 3)]
    teacher = random_checkpoint(tmp_path / "teacher" / "best", 4)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    # kd's first seed also forms a recipe of its own: scored once, not twice.
    main(["--recipe", "kd", *kd, "--recipe", "plain", *plain, "--recipe", "teacher", teacher,
          "--recipe", "kd-first", kd[0], "--shards", str(shards), "--levels", "c40",
          "--experiment", "seeds"])  # fmt: skip

    printed = capsys.readouterr().out
    assert "scoring 5 checkpoints on the test split (6 runs)" in printed  # one pass for all
    for run in ("kd-s0", "kd-s1", "plain-s2", "plain-s3", "teacher"):
        assert f"| {run} | c40 |" in printed
    assert "| kd - plain | c40 |" in printed and "| kd - teacher | c40 |" in printed
    assert "(runs not paired)" in printed.split("| kd - teacher |")[1].splitlines()[0]
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("seeds").experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "seeds")] == [
        "seeds/comparison.md"
    ]
    # The averages are the runs' own frame AUCs (scored here without Ray) averaged per recipe.
    aucs = {location: _frame_auc(location, shards) for location in [*kd, *plain, teacher]}
    metrics = run.data.metrics
    assert metrics["recipe_kd_test_c40_frame_auc_mean"] == pytest.approx(
        np.mean([aucs[c] for c in kd]), abs=1e-9
    )
    assert metrics["recipe_plain_test_c40_frame_auc_sd"] == pytest.approx(
        np.std([aucs[c] for c in plain], ddof=1), abs=1e-9
    )
    assert metrics["recipe_kd-first_test_c40_frame_auc_mean"] == pytest.approx(
        aucs[kd[0]], abs=1e-9
    )
    expected = np.mean([aucs[c] for c in kd]) - aucs[teacher]
    assert metrics["kd_minus_teacher_test_c40_frame_auc_delta"] == pytest.approx(expected, abs=1e-9)
    low = metrics["kd_minus_plain_test_c40_frame_auc_ci_low"]
    high = metrics["kd_minus_plain_test_c40_frame_auc_ci_high"]
    assert low <= metrics["kd_minus_plain_test_c40_frame_auc_delta"] <= high
    assert f"{100 * expected:+.2f} [" in printed


def test_recipes_are_checked_before_anything_runs(tmp_path):
    parsed = parse_recipes([["kd", "/r/kd-s0/best", "/r/kd-s1/best"], ["t", "/r/t/best"]])
    assert parsed == {
        "kd": {"kd-s0": "/r/kd-s0/best", "kd-s1": "/r/kd-s1/best"},
        "t": {"t": "/r/t/best"},
    }
    for recipes, message in (
        ([["kd", "/a"]], "at least two recipes"),
        ([["kd", "/a"], ["kd", "/b"]], "'kd' is given twice"),
        ([["kd", "/a"], ["t"]], "'t' has no checkpoints"),
        ([["kd", "/a"], ["kd/2", "/b"]], "recipe name 'kd/2'"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_recipes(recipes)
