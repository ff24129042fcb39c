"""timm backbones split at stride 16 into a trunk (one per SFFB stream) and a head (classifier).

A split point is data: the names of the timm model's top-level children that make the trunk and
the head, in forward order. Adding a backbone is one ``register_split`` call, not an ``if`` chain.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sffb.weights import load_backbone_weights


@dataclass(frozen=True)
class SplitPoint:
    """Where a timm model is cut: its children before stride 16 and those after."""

    trunk: tuple[str, ...]
    head: tuple[str, ...]
    classifier: str = "fc"


_SPLITS: dict[str, SplitPoint] = {}


def register_split(name: str, split: SplitPoint) -> None:
    """Make the timm model ``name`` usable as an SFFB backbone."""
    _SPLITS[name] = split


def available_backbones() -> list[str]:
    return sorted(_SPLITS)


# Xception: entry flow + middle flow (conv1..block11, 728 ch at stride 16) | exit flow.
register_split(
    "legacy_xception",
    SplitPoint(
        trunk=(
            "conv1",
            "bn1",
            "act1",
            "conv2",
            "bn2",
            "act2",
            *(f"block{i}" for i in range(1, 12)),
        ),
        head=("block12", "conv3", "bn3", "act3", "conv4", "bn4", "act4", "global_pool", "fc"),
    ),
)

# ResNets (paper Table 5): stem..layer3 (stride 16) | layer4 + pooling + fc.
_RESNET = SplitPoint(
    trunk=("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3"),
    head=("layer4", "global_pool", "fc"),
)
for _name in ("resnet50", "resnet34", "resnet18", "test_resnet"):
    # test_resnet: timm's 0.4 M-parameter ResNet, for fast tests of everything but the backbone.
    register_split(_name, _RESNET)


@dataclass
class SplitBackbone:
    """The two halves of one timm model and the width of the map between them."""

    trunk: nn.Sequential
    head: nn.Sequential
    channels: int


#: ImageNet statistics: the fallback when a backbone's pretrained config names none.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the backbone's pretrained weights expect, from timm's pretrained config
    (legacy_xception: 0.5 / 0.5, as the Cadene weights were trained; ResNets: ImageNet's)."""
    import timm  # here, not at module level: see build_split_backbone

    try:
        config = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, KeyError, ValueError):
        config = None
    if config is None or config.mean is None or config.std is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(v) for v in config.mean), tuple(float(v) for v in config.std)


def build_split_backbone(
    name: str,
    in_chans: int = 3,
    num_classes: int = 2,
    drop_rate: float = 0.0,
    weights_path: str | Path | None = None,
) -> SplitBackbone:
    """Create timm model ``name`` (random init, or ImageNet weights from a local file) and split it.

    The classifier always starts fresh with ``num_classes`` outputs; a checkpoint's classifier is
    ignored. With ``in_chans != 3`` the checkpoint's first conv is adapted the way timm does.
    """
    # timm (and the torchvision it pulls in) costs ~2 s to import: imported here, so the many
    # Ray Data and actor processes that import this module's configuration but build no model
    # do not pay for it.
    import timm

    split = _SPLITS.get(name)
    if split is None:
        raise ValueError(
            f"unknown backbone {name!r}; registered: {', '.join(available_backbones())}"
        )
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    if weights_path is not None:
        load_backbone_weights(model, weights_path, classifier=split.classifier)
    children = dict(model.named_children())
    missing = [c for c in split.trunk + split.head if c not in children]
    if missing:
        raise ValueError(f"backbone {name!r} has no children {missing}; its split point is stale")
    stride16 = [info["num_chs"] for info in model.feature_info if info["reduction"] == 16]
    if not stride16:
        raise ValueError(f"backbone {name!r} reports no stride-16 feature map")
    # Keep timm's child names, so state-dict keys read like timm's (spatial_stream.block4...).
    head = [(c, children[c]) for c in split.head]
    if drop_rate:
        head.insert(len(head) - 1, ("drop", nn.Dropout(drop_rate)))
    return SplitBackbone(
        trunk=nn.Sequential(OrderedDict((c, children[c]) for c in split.trunk)),
        head=nn.Sequential(OrderedDict(head)),
        channels=stride16[-1],
    )
