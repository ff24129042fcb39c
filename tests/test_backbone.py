"""timm backbones split at stride 16, and ImageNet weights from a local file."""

import pytest
import timm
import torch

from sffb.backbone import available_backbones, build_split_backbone
from sffb.model import SFFB, SFFBConfig
from sffb.weights import WeightsError


@pytest.fixture(scope="module")
def xception_checkpoint(tmp_path_factory):
    """An ImageNet-shaped (1000-class) legacy_xception state dict with random weights."""
    torch.manual_seed(0)
    state = timm.create_model("legacy_xception", num_classes=1000).state_dict()
    path = tmp_path_factory.mktemp("weights") / "xception_timm.pth"
    torch.save(state, path)
    return path, state


def cadene_layout(state):
    """pretrainedmodels' xception-b5690688.pth layout: 2-D pointwise, no BN counters."""
    cadene = {}
    for key, value in state.items():
        if "num_batches_tracked" in key:
            continue
        if key.endswith("pointwise.weight"):
            value = value[:, :, 0, 0]
        cadene[key.replace("fc.", "last_linear.") if key.startswith("fc.") else key] = value
    return cadene


@pytest.mark.parametrize(
    ("name", "channels"), [("legacy_xception", 728), ("resnet50", 1024), ("resnet34", 256)]
)
def test_trunk_ends_at_stride_16_and_head_classifies(name, channels):
    split = build_split_backbone(name, in_chans=3, num_classes=2)
    assert split.channels == channels
    with torch.no_grad():
        features = split.trunk.eval()(torch.rand(1, 3, 256, 256))
        logits = split.head.eval()(features)
    assert features.shape == (1, channels, 16, 16)
    assert logits.shape == (1, 2)


def test_unknown_backbone_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg16'.*legacy_xception"):
        build_split_backbone("vgg16")
    assert {"legacy_xception", "resnet50", "resnet34", "test_resnet"} <= set(available_backbones())


@pytest.mark.parametrize("layout", ["timm", "cadene"])
def test_weights_round_trip_into_both_streams(xception_checkpoint, tmp_path, layout):
    path, state = xception_checkpoint
    if layout == "cadene":
        path = tmp_path / "xception-b5690688.pth"
        torch.save(cadene_layout(state), path)
    model = SFFB(SFFBConfig(pretrained_path=str(path)))
    loaded = model.state_dict()
    for name in ("block4.rep.1.pointwise.weight", "bn1.running_var", "conv2.weight"):
        assert torch.equal(loaded[f"spatial_stream.{name}"], state[name])
        assert torch.equal(loaded[f"freq_stream.{name}"], state[name])
    assert torch.equal(loaded["head.block12.skip.weight"], state["block12.skip.weight"])
    assert torch.equal(loaded["spatial_stream.conv1.weight"], state["conv1.weight"])
    # 9-channel first conv: the RGB filters tiled three times, scaled by 3/9 (timm's rule).
    expected = state["conv1.weight"].repeat(1, 3, 1, 1) * (3 / 9)
    assert torch.allclose(loaded["freq_stream.conv1.weight"], expected)
    # The classifier is fresh and two-way, never the checkpoint's 1000 ImageNet classes.
    assert loaded["head.fc.weight"].shape == (2, 2048)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError, match=f"{missing}: weights file not found"):
        build_split_backbone("legacy_xception", weights_path=missing)


def test_unreadable_file_is_named(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match=f"{garbage}: not a readable checkpoint"):
        build_split_backbone("legacy_xception", weights_path=garbage)


def test_wrong_architecture_names_file_and_first_keys(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), path)
    with pytest.raises(WeightsError) as error:
        build_split_backbone("legacy_xception", weights_path=path)
    message = str(error.value)
    assert str(path) in message and "legacy_xception" in message
    assert "missing keys: block1.rep.0.conv1.weight" in message
    assert "unexpected keys: layer1.0.bn1.bias" in message
    assert "more)" in message  # long key lists are cut, not dumped


def test_shape_mismatch_names_the_key(xception_checkpoint, tmp_path):
    _, state = xception_checkpoint
    broken = dict(state, **{"block5.rep.1.pointwise.weight": torch.zeros(700, 728, 1, 1)})
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": broken}, path)
    with pytest.raises(WeightsError, match=r"shape mismatch: block5.rep.1.pointwise.weight \(700"):
        build_split_backbone("legacy_xception", weights_path=path)
