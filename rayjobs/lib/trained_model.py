"""A trained detector ready to score new files: where it is, its weights, how its training crops
were cut, and its calibration.

A model is named as a checkpoint folder (a path or a URI), an MLflow run (``runs:/<id>``: the
best checkpoint that run published), a registered model version (``models:/sffb-student@champion``
or ``models:/sffb-student/3``: its run's checkpoint), or nothing: the newest distilled student in
the default MLflow experiment (what ``python rayjobs/distill.py`` leaves).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from data_prep import storage
from data_prep.defaults import embedded_prepare_config
from data_prep.media import CropSettings
from rayjobs.lib.calibration import LevelCalibration, load_calibration
from rayjobs.lib.checkpoints import load_state
from rayjobs.lib.config import JobConfig, TrackingConfig
from rayjobs.lib.mlflow_model import run_of_registered
from rayjobs.lib.tracking import BEST_CHECKPOINT_TAG, tracking_uri


def checkpoint_of_run(run_id: str, uri: str) -> str:
    """The best checkpoint an MLflow run published."""
    try:
        run = MlflowClient(uri).get_run(run_id)
    except MlflowException as error:
        raise ValueError(f"runs:/{run_id}: no such MLflow run at {uri} ({error})") from None
    checkpoint = run.data.tags.get(BEST_CHECKPOINT_TAG)
    if not checkpoint:
        raise FileNotFoundError(f"runs:/{run_id}: the run has published no best checkpoint yet")
    return checkpoint


def newest_student(uri: str, experiment: str = TrackingConfig.experiment) -> str:
    """The best checkpoint of the newest finished distilled student in ``experiment``."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = []
    if found is not None:
        runs = client.search_runs(
            [found.experiment_id],
            filter_string="tags.`sffb.mode` = 'student' and params.`loss.knowledge` != 'none'",
            order_by=["attributes.start_time DESC"],
        )
    for run in runs:
        if BEST_CHECKPOINT_TAG in run.data.tags:
            return run.data.tags[BEST_CHECKPOINT_TAG]
    raise FileNotFoundError(
        f"no distilled student in MLflow experiment {experiment!r} at {uri}: train one with "
        "`python rayjobs/distill.py`, or name a model with --model"
    )


def resolve_model(
    model: str | None, uri: str = "", experiment: str = TrackingConfig.experiment
) -> str:
    """The checkpoint folder that ``model`` names (see the module docstring)."""
    uri = uri or tracking_uri()
    if not model:
        return storage.normalise(newest_student(uri, experiment))
    if model.startswith("runs:/"):
        return storage.normalise(checkpoint_of_run(model.removeprefix("runs:/").strip("/"), uri))
    if model.startswith("models:/"):
        return storage.normalise(checkpoint_of_run(run_of_registered(uri, model), uri))
    return storage.normalise(model)


@dataclass(frozen=True)
class TrainedModel:
    checkpoint: str
    state: dict  # as rayjobs.lib.checkpoints.load_state returns it
    crops: CropSettings  # how its training crops were cut
    level: str  # the compression level it was trained to read
    calibration: LevelCalibration | None  # fitted on validation at that level, if evaluated

    @property
    def config(self) -> JobConfig:
        return self.state["config"]

    @property
    def threshold(self) -> float:
        """The decision threshold on P(fake): the calibrated one, else 0.5."""
        return self.calibration.threshold if self.calibration else 0.5


def training_preparation(checkpoint: str, state: dict) -> dict:
    """The checkpoint's recorded preparation settings; for checkpoints written before they were
    recorded, those in the manifest of the shards it trained on."""
    if state.get("preparation"):
        return json.loads(state["preparation"])
    shards = state["config"].data.shards or embedded_prepare_config().output
    manifest = storage.join(shards, "manifest.json")
    if not storage.is_file(manifest):
        raise FileNotFoundError(
            f"{checkpoint}: the checkpoint does not record how its crops were cut, and its "
            f"shards' manifest {manifest} is not there"
        )
    return json.loads(storage.read_text(manifest))["config"]


def load_trained_model(checkpoint: str) -> TrainedModel:
    """Everything detection needs from a checkpoint folder (weights load on the CPU here)."""
    checkpoint = storage.normalise(checkpoint)
    state = load_state(checkpoint)
    crops = CropSettings.from_preparation(training_preparation(checkpoint, state))
    level = state["config"].input_level(state.get("mode", "student"))
    calibration = load_calibration(checkpoint).get(level)
    return TrainedModel(checkpoint, state, crops, level, calibration)
