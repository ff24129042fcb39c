"""The cross-dataset matrix: two checkpoints x two prepared datasets, on a real local Ray
cluster and a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from data_prep.image_columns import decode_column, level_column
from rayjobs.evaluate import main
from rayjobs.lib.checkpoints import load_model
from rayjobs.lib.scoring import SCORE_BATCH, fake_scores
from sffb.metrics import evaluate_detection
from tests.helpers import random_checkpoint

pytestmark = pytest.mark.slow


def _subset(reference: Path, target: Path, method: str) -> Path:
    """A second prepared dataset: the reference's test rows of the reals and one method."""
    table = pq.read_table(reference / "test")
    keep = pc.or_(pc.equal(table["label"], 0), pc.equal(table["method"], method))
    (target / "test").mkdir(parents=True)
    pq.write_table(table.filter(keep), target / "test" / "part-00000.parquet")
    return target


def test_matrix_mode_tabulates_models_by_datasets_and_logs_a_heatmap(
    ray_session, prepared, tmp_path, monkeypatch, capsys
):
    reference, _ = prepared
    other = _subset(reference, tmp_path / "deepfakes_only", "Deepfakes")
    first = random_checkpoint(tmp_path / "run-a" / "best", 0)
    second = random_checkpoint(tmp_path / "run-b" / "best", 1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    main(["--matrix", "--checkpoint", first, second, "--shards", str(reference), str(other),
          "--levels", "c40", "--experiment", "cross"])  # fmt: skip

    printed = capsys.readouterr().out
    assert "| model | reference | deepfakes_only |" in printed
    models = ("| run-a |", "| run-b |")
    printed_rows = [line for line in printed.splitlines() if line.startswith(models)]
    assert len(printed_rows) == 4  # frame and video AUC tables, two models each
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("cross").experiment_id])[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "cross_dataset")} == {
        "cross_dataset/matrix.md", "cross_dataset/heatmap_c40.png"}  # fmt: skip
    # A cell is the model scored on that dataset's whole test split (scored here without Ray).
    rows = pq.read_table(other / "test")
    images = decode_column(rows[level_column(rows.column_names, "c40")], 64)
    scores = fake_scores(load_model(second), images, torch.device("cpu"), SCORE_BATCH)
    expected = evaluate_detection(rows["label"].to_numpy(), scores, rows["video_key"].to_numpy())
    logged = run.data.metrics["cross_run-b_deepfakes_only_c40_frame_auc"]
    assert logged == pytest.approx(expected.frame.auc)
    assert f"{100 * expected.frame.auc:.2f} [" in printed_rows[1]


def test_a_dataset_without_the_level_is_refused_naming_it(ray_session, prepared, tmp_path,
                                                          monkeypatch):  # fmt: skip
    reference, _ = prepared
    checkpoint = random_checkpoint(tmp_path / "run" / "best", 0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(SystemExit, match="level 'c51' is not in the shards"):
        main(["--matrix", "--checkpoint", checkpoint, "--shards", str(reference),
              "--levels", "c51"])  # fmt: skip
