"""Fusion variants: SK fusion against a float64 reference of SPEC eq. 3-8, and the ablations."""

import pytest
import torch

from sffb.fusion import FUSIONS, ChunkedFusion, FusionOptions, SKFusion, build_fusion


def reference_sk(module: SKFusion, spatial: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """SPEC §1.3 written out step by step with the module's own weights (eval-mode BN)."""
    linear, bn = module.squeeze[0], module.squeeze[1]
    z0 = (freq + spatial).mean(dim=(2, 3))  # eq. 3-4: M_m = M_f + M_s, GAP
    z = z0 @ linear.weight.T
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    z = torch.clamp(z, min=0)
    a_f = z @ module.attend_freq.weight.T + module.attend_freq.bias
    a_s = z @ module.attend_spatial.weight.T + module.attend_spatial.bias
    a_f, a_s = (
        torch.exp(a_f) / (torch.exp(a_f) + torch.exp(a_s)),
        torch.exp(a_s) / (torch.exp(a_f) + torch.exp(a_s)),
    )
    big_a_f = a_f[:, :, None, None] * freq + freq
    big_a_s = a_s[:, :, None, None] * spatial + spatial
    conv = module.project
    stacked = torch.cat([big_a_f, big_a_s], dim=1)
    return (
        torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], stacked) + conv.bias[:, None, None]
    )


def random_bn_stats(module):
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)


def test_sk_fusion_matches_the_equations():
    torch.manual_seed(0)
    module = SKFusion(64).double().eval()
    random_bn_stats(module)
    spatial, freq = torch.randn(3, 64, 5, 5).double(), torch.randn(3, 64, 5, 5).double()
    assert torch.allclose(module(spatial, freq), reference_sk(module, spatial, freq), atol=1e-12)


def test_sk_reduced_width_follows_sknet():
    assert SKFusion(728).squeeze[0].out_features == 45  # max(728 // 16, 32)
    assert SKFusion(256).squeeze[0].out_features == 32  # the floor of 32
    assert SKFusion(728, FusionOptions(reduction=4)).squeeze[0].out_features == 182


def test_sigmoid_select_is_independent_per_branch():
    torch.manual_seed(1)
    module = SKFusion(8, FusionOptions(select="sigmoid")).eval()
    spatial, freq = torch.zeros(2, 8, 3, 3), torch.ones(2, 8, 3, 3)
    z = module.squeeze(freq.mean(dim=(2, 3)))
    a_f = module.attend_freq(z).sigmoid()[:, :, None, None]
    expected = module.project(torch.cat([a_f * freq + freq, spatial], dim=1))
    assert torch.allclose(module(spatial, freq), expected, atol=1e-6)
    with pytest.raises(ValueError, match="select"):
        SKFusion(8, FusionOptions(select="max"))


def test_sum_and_concat():
    spatial, freq = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    assert torch.equal(build_fusion("sum", 6)(spatial, freq), spatial + freq)
    concat = build_fusion("concat", 6)
    expected = torch.nn.functional.conv2d(
        torch.cat([spatial, freq], 1), concat.project.weight, concat.project.bias
    )
    assert torch.allclose(concat(spatial, freq), expected, atol=1e-6)


@pytest.mark.parametrize("grid", [(2, 2), (3, 3), (1, 4)])
def test_chunked_fuses_each_block_with_its_own_module(grid):
    torch.manual_seed(2)
    module = ChunkedFusion(16, FusionOptions(grid=grid)).eval()
    spatial, freq = torch.randn(2, 16, 16, 16), torch.randn(2, 16, 16, 16)
    out = module(spatial, freq)
    rows = torch.arange(16).tensor_split(grid[0])
    cols = torch.arange(16).tensor_split(grid[1])
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            block = module.blocks[r * grid[1] + c]
            s, f = spatial[:, :, row][:, :, :, col], freq[:, :, row][:, :, :, col]
            assert torch.allclose(out[:, :, row][:, :, :, col], block(s, f), atol=1e-6)
    assert len(module.blocks) == grid[0] * grid[1]


def test_chunked_grid_larger_than_map_is_refused():
    with pytest.raises(ValueError, match="cannot be cut into 4x4"):
        ChunkedFusion(8, FusionOptions(grid=(4, 4)))(
            torch.randn(2, 8, 2, 2), torch.randn(2, 8, 2, 2)
        )


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_every_variant_runs_and_backpropagates_at_xception_width(name):
    module = build_fusion(name, 728)
    spatial = torch.randn(2, 728, 16, 16, requires_grad=True)
    freq = torch.randn(2, 728, 16, 16, requires_grad=True)
    out = module(spatial, freq)
    assert out.shape == (2, 728, 16, 16)
    out.square().mean().backward()
    assert spatial.grad.abs().sum() > 0 and freq.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())


def test_unknown_fusion_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown fusion 'attention'.*chunked, concat, sk, sum"):
        build_fusion("attention", 8)
