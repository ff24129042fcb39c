"""Runs that start at once log the same dataset inputs and register versions of one model:
MLflow inserts those rows keyed by content, and concurrent writers must not collide."""

from __future__ import annotations

import threading

from mlflow.tracking import MlflowClient

from rayjobs.lib.run_inputs import log_shard_inputs
from rayjobs.lib.tracking import without_insert_races

RUNS = 8


def test_runs_starting_together_all_get_their_dataset_inputs(prepared, tmp_path):
    shards, _ = prepared
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("together")
    runs = [client.create_run(experiment).info.run_id for _ in range(RUNS)]
    client.create_registered_model("sffb-student")
    start, errors, versions = threading.Barrier(RUNS), [], []

    def begin(run_id: str) -> None:
        start.wait()  # every thread writes at the same moment, as concurrent cells do
        try:
            log_shard_inputs(uri, run_id, str(shards), ("train", "val"))
            source = f"runs:/{run_id}/model"
            register = lambda: client.create_model_version("sffb-student", source, run_id=run_id)  # noqa: E731
            versions.append(int(without_insert_races(register).version))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=begin, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == list(range(1, RUNS + 1))
    for run_id in runs:
        names = {i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs}
        assert names == {"reference/train", "reference/val"}
