"""SFFB end to end: shapes, unshared streams, input handling, and gradients."""

import pytest
import torch

from sffb import SFFB, SFFBConfig, SFFBOutput
from sffb.fusion import FUSIONS

TINY = "test_resnet"  # timm's 0.4 M-parameter ResNet: fast where the backbone is not the point


@pytest.fixture(scope="module")
def xception_sffb():
    torch.manual_seed(0)
    return SFFB().eval()


def test_xception_output_shapes_at_256(xception_sffb):
    with torch.no_grad():
        out = xception_sffb(torch.rand(2, 3, 256, 256))
    assert isinstance(out, SFFBOutput)
    assert out.logits.shape == (2, 2)
    assert out.spatial_map.shape == out.freq_map.shape == (2, 728, 16, 16)
    assert out.fused_map.shape == (2, 728, 16, 16)


def test_streams_do_not_share_weights(xception_sffb):
    spatial = {p.data_ptr() for p in xception_sffb.spatial_stream.parameters()}
    freq = {p.data_ptr() for p in xception_sffb.freq_stream.parameters()}
    assert spatial.isdisjoint(freq)
    assert xception_sffb.spatial_stream.conv1.in_channels == 3
    assert xception_sffb.freq_stream.conv1.in_channels == 9


def test_maps_come_from_the_normalised_image_and_its_bands(xception_sffb):
    images = torch.rand(1, 3, 256, 256)
    model = xception_sffb
    with torch.no_grad():
        out = model(images)
        normalised = (images - 0.5) / 0.5  # legacy_xception's pretrained normalisation
        assert torch.allclose(out.spatial_map, model.spatial_stream(normalised), atol=1e-5)
        assert torch.allclose(out.freq_map, model.freq_stream(model.bands(normalised)), atol=1e-5)
        fused = model.fusion(out.spatial_map, out.freq_map)
        assert torch.allclose(out.fused_map, fused, atol=1e-5)
        assert torch.allclose(out.logits, model.head(fused), atol=1e-5)


def test_uint8_input_equals_unit_float_input():
    model = SFFB(SFFBConfig(backbone=TINY, image_size=64)).eval()
    pixels = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(model(pixels).logits, model(pixels.float() / 255).logits, atol=1e-6)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_trains_end_to_end(fusion):
    torch.manual_seed(0)
    model = SFFB(SFFBConfig(backbone=TINY, fusion=fusion, image_size=64)).train()
    out = model(torch.rand(4, 3, 64, 64))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0, 1])).backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert without_grad == []


@pytest.mark.parametrize(("backbone", "channels"), [("resnet50", 1024), ("resnet34", 256)])
def test_resnet_backbones_give_stride_16_maps(backbone, channels):
    model = SFFB(SFFBConfig(backbone=backbone, image_size=128)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    assert out.spatial_map.shape == out.freq_map.shape == (1, channels, 8, 8)
    assert out.logits.shape == (1, 2)


def test_fake_probability_is_softmax_channel_one():
    logits = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, -1.0]])
    expected = torch.tensor(
        [0.5, 1 / (1 + torch.exp(torch.tensor(-2.0))), 1 / (1 + torch.exp(torch.tensor(4.0)))]
    )
    assert torch.allclose(SFFB.fake_probability(logits), expected)


def test_dropout_sits_before_the_classifier():
    model = SFFB(SFFBConfig(backbone=TINY, image_size=32, drop_rate=0.3))
    names = [name for name, _ in model.head.named_children()]
    assert names[-2:] == ["drop", "fc"]


def test_inputs_are_normalised_as_the_backbones_pretrained_weights_expect():
    """legacy_xception's weights (Cadene's) were trained on (x - 0.5) / 0.5, ResNets' on
    ImageNet statistics: timm's pretrained configs say so; an explicit value wins."""
    assert SFFBConfig(backbone="legacy_xception").normalisation() == ((0.5,) * 3, (0.5,) * 3)
    resnet = SFFBConfig(backbone="resnet50").normalisation()
    assert resnet == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    model = SFFB(SFFBConfig(backbone="test_resnet", image_size=64, input_mean=(0.1, 0.2, 0.3)))
    assert model.input_mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert model.input_std.flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])  # test_resnet's
