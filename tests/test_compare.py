"""``python -m rayjobs.compare`` on a real MLflow SQLite store holding runs with known metrics."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib.image import imread
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from rayjobs.compare import main
from rayjobs.lib.run_inputs import log_shard_inputs
from rayjobs.lib.tracking import ensure_experiment, experiment_url
from tests.servers import mlflow_server

EXPERIMENT = "compare-test"
# trial -> (lambda2, fusion, val_frame_auc per epoch, final val_frame_eer, stop reason)
TRIALS = {
    "trial-a": (10.0, "sk", [0.60, 0.70], 0.10, "completed"),
    "trial-b": (100.0, "sum", [0.90, 0.80], 0.20, "completed"),
    "trial-c": (1.0, "concat", [0.50], 0.30, "stopped by ASHA"),
}


#: A preparation manifest as data_prep writes it (the parts dataset inputs read).
MANIFEST = {
    "config": {"levels": ["raw", "c23"], "crop_size": 64},
    "rows": {"train": {"original": {"0": 8}, "Deepfakes": {"1": 8}}, "val": {"original": {"0": 4}}},
}
# Evaluated trials: test AUC and its bootstrap interval (trial-c was never evaluated).
TEST_AUC = {"trial-a": (0.7, 0.61, 0.79), "trial-b": (0.85, 0.8, 0.9)}
COMMITS = {"trial-a": "a" * 40, "trial-b": "a" * 40, "trial-c": "c" * 40, "old-trial": "a" * 40}


def _log_trial(client, experiment_id: str, parent_id: str, name: str, spec, shards: Path) -> None:
    lambda2, fusion, aucs, eer, reason = spec
    tags = {
        "mlflow.parentRunId": parent_id,
        "sffb.stop_reason": reason,
        "mlflow.source.git.commit": COMMITS[name],
    }
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    log_shard_inputs(client.tracking_uri, run_id, str(shards), ("train", "val"))
    params = {
        "loss.lambda2": lambda2,
        "model.fusion": fusion,
        "optim.epochs": 2,
        "tracking.run_name": name,
    }
    now = int(time.time() * 1000)
    metrics = [Metric("val_frame_auc", auc, now, step) for step, auc in enumerate(aucs)]
    metrics += [Metric("val_frame_eer", eer, now, len(aucs) - 1)]
    metrics += [Metric("epoch", step, now, step) for step in range(len(aucs))]
    if name in TEST_AUC:
        keys = ("test_c23_frame_auc", "test_c23_frame_auc_ci_low", "test_c23_frame_auc_ci_high")
        metrics += [Metric(k, v, now, 0) for k, v in zip(keys, TEST_AUC[name], strict=True)]
    client.log_batch(run_id, metrics, [Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, "FINISHED")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """A store with an older sweep (one trial) and sweep ``s2`` (three trials); (uri, parent)."""
    folder = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(uri, EXPERIMENT)  # as the jobs create it
    shards = folder / "shards-v1"
    shards.mkdir()
    (shards / "manifest.json").write_text(json.dumps(MANIFEST))
    old = client.create_run(experiment_id, run_name="s1", tags={"sffb.mode": "sweep"})
    _log_trial(client, experiment_id, old.info.run_id, "old-trial", TRIALS["trial-a"], shards)
    time.sleep(0.01)  # s2 starts strictly later: it is the most recent sweep
    parent = client.create_run(experiment_id, run_name="s2", tags={"sffb.mode": "sweep"})
    for name, spec in TRIALS.items():
        _log_trial(client, experiment_id, parent.info.run_id, name, spec, shards)
    return uri, parent.info.run_id


def _order(text: str, names) -> list[str]:
    return sorted(names, key=text.index)


def test_latest_sweep_sorted_by_auc_with_swept_params(store, capsys):
    uri, _ = store
    main(["--uri", uri, "--in-experiment", EXPERIMENT])
    out = capsys.readouterr().out
    assert "sweep s2: 3 runs" in out
    assert "old-trial" not in out
    assert _order(out, TRIALS) == ["trial-b", "trial-a", "trial-c"]  # final AUC 0.8 > 0.7 > 0.5
    header = next(line for line in out.splitlines() if line.lstrip().startswith("run"))
    assert "loss.lambda2" in header and "model.fusion" in header
    assert "commit" in header  # trial-c ran other code: the table says so
    assert "data" not in header.split()  # every trial read the same shards
    assert "optim.epochs" not in header  # the same in every run: not a swept parameter
    assert "tracking.run_name" not in header
    assert "stopped by ASHA" in out
    # Evaluated runs: the test metric and its bootstrap interval, shown by default.
    assert re.search(r"test_c23_frame_auc +test_c23_frame_auc 95% CI", header)  # side by side
    assert "test_c23_frame_auc_ci_low" not in header  # folded into the interval column
    row_a = next(line for line in out.splitlines() if line.startswith("trial-a"))
    assert "[0.61, 0.79]" in row_a
    row_c = next(line for line in out.splitlines() if line.startswith("trial-c"))
    assert "[" not in row_c


def test_sort_by_another_metric_ascending(store, capsys):
    uri, _ = store
    main(["--uri", uri, "--in-experiment", EXPERIMENT, "--sort", "val_frame_eer", "--ascending"])
    out = capsys.readouterr().out
    assert _order(out, TRIALS) == ["trial-a", "trial-b", "trial-c"]


def test_plots_and_table_are_parent_run_artifacts(store, tmp_path):
    uri, parent_id = store
    main(["--uri", uri, "--sweep", "s2", "--in-experiment", EXPERIMENT])
    client = MlflowClient(uri)
    names = {Path(a.path).name for a in client.list_artifacts(parent_id, "compare")}
    assert {"runs.csv", "val_frame_auc_vs_params.png", "val_frame_auc_curves.png"} <= names
    local = Path(client.download_artifacts(parent_id, "compare", str(tmp_path)))
    for png in local.glob("*.png"):
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0  # drawn, not blank
    rows = (local / "runs.csv").read_text().splitlines()
    assert rows[0].startswith("run,status,commit,loss.lambda2,model.fusion,val_frame_auc")
    assert [row.split(",")[0] for row in rows[1:]] == ["trial-b", "trial-a", "trial-c"]


def test_whole_experiment_writes_plots_to_a_folder(store, tmp_path, capsys):
    uri, _ = store
    main(["--uri", uri, "--experiment", EXPERIMENT, "--out", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert "experiment compare-test: 6 runs" in out  # two parents, four trials
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "runs.csv",
        "val_frame_auc_curves.png",
        "val_frame_auc_vs_params.png",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sort", "val_nothing"], "cannot sort by 'val_nothing'"),
        (["--metrics", "val_frame_auc,bogus"], "unknown metric(s) ['bogus']"),
        (["--sweep", "missing"], "no sweep named 'missing'"),
    ],
)
def test_bad_request_names_the_problem(store, argv, message):
    uri, _ = store
    with pytest.raises(SystemExit) as exit_info:
        main(["--uri", uri, "--in-experiment", EXPERIMENT, "--no-plots", *argv])
    assert message in str(exit_info.value)


def test_unknown_experiment_lists_the_known_ones(store):
    uri, _ = store
    with pytest.raises(SystemExit, match=r"no experiment 'nope'.*compare-test"):
        main(["--uri", uri, "--experiment", "nope"])


@pytest.fixture()
def mlflow_ui(store, tmp_path) -> Iterator[str]:
    """``mlflow server`` on the store, on 127.0.0.1 only, as the README tells users to run it."""
    uri, _ = store
    with mlflow_server(uri, tmp_path / "mlflow-server.log") as address:
        yield address


def test_mlflow_ui_lists_the_sweep_trials_with_their_datasets(store, mlflow_ui):
    """The experiment's link, rendered by headless Chromium: the model-training runs view, the
    trials under their sweep, each with its shards in the Dataset column."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    uri, _ = store
    experiment_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.goto(experiment_url(mlflow_ui, experiment_id))
            sweep_name = page.get_by_text("s2", exact=True)
            sweep_name.wait_for(timeout=60_000)
            # Child runs are folded under their parent: unfold the sweep as a user would.
            page.get_by_role("row").filter(has=sweep_name).get_by_role("button").first.click()
            for trial in TRIALS:
                page.get_by_text(trial, exact=True).wait_for(timeout=30_000)
            rows = page.get_by_role("row").all_inner_texts()
            datasets = page.get_by_text("shards-v1/train").all_inner_texts()
        finally:
            browser.close()
    listed = {line for row in rows for line in row.splitlines()}
    assert set(TRIALS) <= listed
    assert "old-trial" not in listed  # s1's trial stays folded under s1
    # The Dataset column (the table's unpinned half): each unfolded trial's training shards.
    assert len(datasets) == len(TRIALS), (datasets, rows)
