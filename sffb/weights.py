"""ImageNet weights for a backbone, from a local file only (nothing is downloaded at run time).

Accepted: a timm-layout state dict (``.pth``/``.pt``/``.bin`` via ``torch.load(weights_only=True)``,
or ``.safetensors``), optionally nested under ``state_dict``/``model`` and with DDP's ``module.``
prefix; and the Cadene/pretrainedmodels Xception layout used across the deepfake literature
(``xception-b5690688.pth``: 1x1 pointwise weights stored 2-D, no BN step counters, classifier
sometimes named ``last_linear``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

#: Keys reported in an error, so a wrong file gives a readable message, not thousands of names.
_SHOWN_KEYS = 5


class WeightsError(ValueError):
    """A weights file that is missing, unreadable, or does not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors, unwrapping the usual containers and DDP's prefix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for a bad file
        raise WeightsError(f"{path}: not a readable checkpoint ({error})") from error
    for container in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(container), dict):
            state = state[container]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def from_cadene_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert pretrainedmodels' Xception keys and shapes to timm's (a no-op on timm layout)."""
    converted = {}
    for key, value in state.items():
        if key.endswith("pointwise.weight") and value.ndim == 2:
            value = value[:, :, None, None]
        if key.startswith("last_linear."):
            key = "fc." + key.removeprefix("last_linear.")
        converted[key] = value
    return converted


def _first(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(keys[:_SHOWN_KEYS]) + more


def load_backbone_weights(model: nn.Module, path: str | Path, classifier: str = "fc") -> None:
    """Load ``path`` into timm ``model`` except its classifier, or raise naming the misfits.

    The first conv is adapted to the model's input channels with timm's ``adapt_input_conv``
    (the 9-channel frequency stream repeats the RGB filters and rescales them).
    """
    state = from_cadene_layout(read_state_dict(path))
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    first_conv = model.pretrained_cfg["first_conv"] + ".weight"
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(classifier + ".")}
    if first_conv in state and first_conv in expected:
        in_chans = expected[first_conv].shape[1]
        if state[first_conv].shape[1] != in_chans:
            from timm.models import adapt_input_conv  # lazily, as in sffb.backbone

            state[first_conv] = adapt_input_conv(in_chans, state[first_conv])

    # Old checkpoints lack BN step counters; BatchNorm fills those in itself.
    missing = sorted(k for k in expected.keys() - state.keys() if "num_batches_tracked" not in k)
    unexpected = sorted(state.keys() - expected.keys())
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected.keys() & state.keys()
        if state[k].shape != expected[k].shape
    )
    problems = [
        f"{label}: {_first(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        name = model.pretrained_cfg.get("architecture", type(model).__name__)
        raise WeightsError(f"{path}: does not fit backbone {name!r}; " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
