"""Training checkpoints: one ``state.pt`` file, loaded with ``weights_only=True``.

It holds the model, the optimiser, the epoch, the per-epoch metric history, the best validation
AUC so far, the job configuration (as JSON) with the input normalisation it resolved to, and
(from training) the mode and the shards' preparation settings, so a checkpoint alone rebuilds
its model and cuts new inputs as its training data was cut (``rayjobs/detect.py``). Beside
it, ``metrics.json`` holds the epoch's metrics, so the best checkpoint of a run can be found in
its folder without loading any weights (a Tune trial stopped by its scheduler leaves only that).
Checkpoints are read from any location the storage layer knows (a path, ``s3://...``).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from data_prep import storage
from rayjobs.lib.config import ARCHITECTURE_KEYS, JobConfig
from rayjobs.lib.configtree import from_dict, to_dict
from sffb.model import SFFB, SFFBConfig

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"


def save_state(directory: Path, **state: Any) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``directory/state.pt``."""
    if isinstance(state.get("config"), JobConfig):
        # The input normalisation as resolved now (timm's pretrained config may change later).
        state.setdefault("input_normalisation", json.dumps(state["config"].model.normalisation()))
        state["config"] = json.dumps(to_dict(state["config"]))
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    if state.get("history"):
        (Path(directory) / METRICS_FILE).write_text(json.dumps(state["history"][-1]))
    return path


def best_stored_checkpoint(run_dir: str, metric: str) -> str | None:
    """The ``epoch_*`` folder of a run with the highest ``metric`` (the later one on a tie)."""
    scored = []
    for folder in storage.list_dirs(run_dir, "epoch_*"):
        files = {storage.name(f) for f in storage.list_files(folder)}
        if {STATE_FILE, METRICS_FILE} <= files:
            metrics = json.loads(storage.read_text(storage.join(folder, METRICS_FILE)))
            scored.append((metrics[metric], storage.name(folder)))
    return storage.join(run_dir, max(scored)[1]) if scored else None


def has_checkpoint(directory: str | Path) -> bool:
    """A complete checkpoint is there (``state.pt`` is written, or published, last)."""
    return storage.is_file(storage.join(directory, STATE_FILE))


def load_state(directory: str | Path) -> dict[str, Any]:
    """The checkpoint in ``directory`` (a path or a URI), on the CPU."""
    path = storage.join(directory, STATE_FILE)
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint file not found") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        state["config"] = from_dict(JobConfig, json.loads(state["config"]))
    except Exception as error:  # a truncated file, another format, a foreign torch file
        raise ValueError(
            f"{path}: not an SFFB checkpoint ({type(error).__name__}: {error})"
        ) from None
    return state


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> SFFB:
    """The checkpoint's SFFB in eval mode (weights from the file, not from ImageNet)."""
    return model_from_state(load_state(directory), device)


def model_from_state(state: dict[str, Any], device: torch.device | str = "cpu") -> SFFB:
    """The SFFB of a state ``load_state`` returned, in eval mode, normalising its inputs as
    recorded at training time (when the checkpoint records it)."""
    config = replace(state["config"].model, pretrained_path=None)
    if state.get("input_normalisation"):
        mean, std = json.loads(state["input_normalisation"])
        config = replace(config, input_mean=tuple(mean), input_std=tuple(std))
    model = SFFB(config)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def architecture_mismatch(teacher: SFFBConfig, student: SFFBConfig) -> list[str]:
    """The architecture keys on which two models differ, each with both values."""
    return [
        f"model.{key}: teacher {getattr(teacher, key)!r}, student {getattr(student, key)!r}"
        for key in ARCHITECTURE_KEYS
        if getattr(teacher, key) != getattr(student, key)
    ]


def check_teacher_init(job: JobConfig, mode: str, teacher_checkpoint: str | None) -> None:
    """Refuse ``model.init: teacher`` where it cannot work, naming why (before any worker)."""
    if job.model.init != "teacher":
        return
    if mode != "student":
        raise ValueError("model.init teacher: only a student starts from its teacher's weights")
    teacher = load_state(teacher_checkpoint)["config"].model
    differences = architecture_mismatch(teacher, job.model)
    if differences:
        raise ValueError(
            f"{teacher_checkpoint}: model.init teacher needs the student's architecture to be "
            "the teacher's; " + "; ".join(differences)
        )


def initial_model(job: JobConfig, mode: str, teacher_checkpoint: str | None) -> SFFB:
    """The model before its first step: as ``model.init`` says (random or ImageNet weights,
    or, for a student with ``init: teacher``, exactly the teacher's weights)."""
    if job.starts_from_teacher(mode):
        model = SFFB(replace(job.model, pretrained_path=None))
        model.load_state_dict(load_state(teacher_checkpoint)["model"])
        return model
    return SFFB(job.model)
