"""Training checkpoints: one ``state.pt`` file, loaded with ``weights_only=True``.

It holds the model, the optimiser, the epoch, the per-epoch metric history, the best validation
AUC so far and the job configuration (as JSON), so a checkpoint alone rebuilds its model.
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


def save_state(directory: Path, **state: Any) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``directory/state.pt``."""
    if isinstance(state.get("config"), JobConfig):
        state["config"] = json.dumps(to_dict(state["config"]))
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    return path


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
