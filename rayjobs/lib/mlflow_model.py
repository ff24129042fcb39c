"""Every trained detector as an MLflow model: logged with its run, registered, servable.

The model is a pyfunc (``rayjobs/lib/mlflow_detector.py``) around the best checkpoint. Input: a
batch of uint8 RGB face crops ``(N, 3, S, S)`` at the model's input side, cut as its training
crops were (see ``rayjobs/detect.py``); output: P(fake) per crop, uncalibrated (calibration
comes later, with evaluation). It is logged as the run's ``model`` artifact and registered as
``sffb-teacher`` or ``sffb-student``, so ``mlflow models serve -m models:/sffb-student@champion``
answers scoring requests; a sweep gives its best trial's version the alias ``champion``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from data_prep import storage
from rayjobs.lib.checkpoints import STATE_FILE
from rayjobs.lib.tracking import without_insert_races

MODEL_ARTIFACT = "model"
CHAMPION = "champion"
REGISTERED_NAMES = {"teacher": "sffb-teacher", "student": "sffb-student"}
#: What the served model needs installed; the project's own code travels with it.
REQUIREMENTS = ["torch", "torchvision", "timm", "numpy", "pyarrow", "mlflow", "pyyaml"]
CODE = [Path(__file__).resolve().parents[2] / name for name in ("sffb", "rayjobs", "data_prep")]
DETECTOR_CODE = Path(__file__).with_name("mlflow_detector.py")  # the pyfunc, SFFBDetector


def signature(image_size: int) -> ModelSignature:
    crops = TensorSpec(np.dtype(np.uint8), (-1, 3, image_size, image_size))  # RGB face crops
    scores = TensorSpec(np.dtype(np.float32), (-1,))  # P(fake)
    return ModelSignature(inputs=Schema([crops]), outputs=Schema([scores]))


def log_detector(uri: str, run_id: str, checkpoint: str, image_size: int, mode: str) -> str:
    """Log ``checkpoint`` as the run's MLflow model and register it; returns its version."""
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as directory:
        weights = Path(directory) / "checkpoint"
        weights.mkdir()
        (weights / STATE_FILE).write_bytes(storage.read_bytes(storage.join(checkpoint, STATE_FILE)))
        saved = Path(directory) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(
            saved,
            python_model=str(DETECTOR_CODE),  # models-from-code: no pickled object
            artifacts={"checkpoint": str(weights)},
            signature=signature(image_size),
            input_example=np.zeros((1, 3, image_size, image_size), np.uint8),
            pip_requirements=REQUIREMENTS,
            code_paths=[str(path) for path in CODE],
        )
        for cache in saved.rglob("__pycache__"):
            shutil.rmtree(cache)
        client.log_artifacts(run_id, str(saved), artifact_path=MODEL_ARTIFACT)
    name = REGISTERED_NAMES[mode]
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"runs:/{run_id}/{MODEL_ARTIFACT}"
    version = without_insert_races(lambda: client.create_model_version(name, source, run_id=run_id))
    return str(version.version)


def crown_champion(uri: str, run_id: str) -> str | None:
    """Give the run's registered version the alias ``champion``; returns the version."""
    client = MlflowClient(uri)
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        client.set_registered_model_alias(version.name, CHAMPION, version.version)
        return str(version.version)
    return None


def run_of_registered(uri: str, model: str) -> str:
    """The run behind ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    client = MlflowClient(uri)
    reference = model.removeprefix("models:/").strip("/")
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, number = reference.rsplit("/", 1)
            version = client.get_model_version(name, number)
    except (MlflowException, ValueError) as error:
        raise ValueError(f"{model}: no such registered model version at {uri} ({error})") from None
    return version.run_id
