"""Training checkpoints: one ``state.pt`` file, loaded with ``weights_only=True``.

It holds the model, the optimiser, the epoch, the per-epoch metric history, the best validation
AUC so far and the job configuration (as JSON), so a checkpoint alone rebuilds its model. Beside
it, ``metrics.json`` holds the epoch's metrics, so the best checkpoint of a run can be found in
its folder without loading any weights (a Tune trial stopped by its scheduler leaves only that).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rayjobs.config import JobConfig
from rayjobs.configtree import from_dict, to_dict
from sffb.model import SFFB

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"


def save_state(directory: Path, **state: Any) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``directory/state.pt``."""
    if isinstance(state.get("config"), JobConfig):
        state["config"] = json.dumps(to_dict(state["config"]))
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    if state.get("history"):
        (Path(directory) / METRICS_FILE).write_text(json.dumps(state["history"][-1]))
    return path


def best_stored_checkpoint(run_dir: Path, metric: str) -> Path | None:
    """The ``epoch_*`` folder of a run with the highest ``metric`` (the later one on a tie)."""
    scored = []
    for folder in sorted(Path(run_dir).glob("epoch_*")):
        if (folder / STATE_FILE).is_file() and (folder / METRICS_FILE).is_file():
            scored.append((json.loads((folder / METRICS_FILE).read_text())[metric], folder.name))
    return Path(run_dir) / max(scored)[1] if scored else None


def load_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["config"] = from_dict(JobConfig, json.loads(state["config"]))
    return state


def load_model(directory: Path, device: torch.device | str = "cpu") -> SFFB:
    """The checkpoint's SFFB in eval mode (weights from the file, not from ImageNet)."""
    state = load_state(directory)
    config = state["config"]
    model = SFFB(replace(config.model, pretrained_path=None))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
