"""One optimisation step: the gradient norm it reports, clipping (``optim.clip_grad_norm``) and
bf16 autocast on the CPU (``scaling.cpu_bf16``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rayjobs.lib.config import load_job_config
from rayjobs.lib.step import TrainingStep, uses_bf16
from sffb.losses import DistillationLoss
from sffb.model import SFFB


def _teacher_step(overrides: list[str], optimiser=torch.optim.SGD, lr: float = 0.0) -> TrainingStep:
    """A cpu-demo teacher step on a tiny SFFB (timm's test backbone, 64x64), seeded weights."""
    job = load_job_config(
        "cpu-demo",
        overrides=["model.backbone=test_resnet", "model.image_size=64", "data.augment_on=cpu",
                   *overrides],
    )  # fmt: skip
    torch.manual_seed(0)
    model = SFFB(job.model)
    return TrainingStep(
        model, None, DistillationLoss.hard_only(), optimiser(model.parameters(), lr=lr), job,
        "raw", ("raw",), torch.device("cpu"),
    )  # fmt: skip


def _step(clip: float) -> tuple[TrainingStep, dict[str, float]]:
    """A teacher step on one random batch, from the same weights and inputs whatever ``clip``."""
    step = _teacher_step([f"optim.clip_grad_norm={clip}"])  # lr 0: the gradients stay readable
    generator = torch.Generator().manual_seed(1)
    batch = {
        "raw": torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=generator),
        "label": torch.tensor([0, 1, 0, 1]),
    }
    return step, step(batch)


def _gradient_norm(model: torch.nn.Module) -> float:
    """The global L2 norm in float64 NumPy, apart from torch's own computation."""
    squares = [np.square(p.grad.double().numpy()).sum() for p in model.parameters()
               if p.grad is not None]  # fmt: skip
    return float(np.sqrt(np.sum(squares)))


def test_the_reported_norm_is_the_gradients_and_clipping_bounds_it():
    free, free_terms = _step(0.0)
    assert free_terms["grad_norm"] == pytest.approx(_gradient_norm(free.model), rel=1e-5)
    limit = free_terms["grad_norm"] / 4
    clipped, clipped_terms = _step(limit)
    assert clipped_terms["grad_norm"] == pytest.approx(free_terms["grad_norm"], rel=1e-6)
    assert _gradient_norm(clipped.model) == pytest.approx(limit, rel=1e-4)
    # Clipped, the gradient keeps its direction.
    for a, b in zip(free.model.parameters(), clipped.model.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad / 4, rtol=1e-4, atol=1e-9)


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match=r"optim\.clip_grad_norm must be >= 0, got -1\.0"):
        load_job_config("cpu-demo", overrides=["optim.clip_grad_norm=-1.0"])


def _convolution_dtypes(cpu_bf16: str) -> tuple[set[torch.dtype], TrainingStep]:
    """The dtypes the convolutions of one teacher step compute in, with ``scaling.cpu_bf16``."""
    step = _teacher_step([f"scaling.cpu_bf16={cpu_bf16}"], torch.optim.Adam, lr=1e-3)
    seen: set[torch.dtype] = set()
    for module in step.model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _module, _inputs, out: seen.add(out.dtype))
    batch = {"raw": torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "label": torch.tensor([0, 1])}
    assert np.isfinite(step(batch)["total"])
    return seen, step


def test_cpu_bf16_computes_in_bf16_and_keeps_fp32_weights():
    computed, step = _convolution_dtypes("true")
    assert computed == {torch.bfloat16}
    assert {p.dtype for p in step.model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in step.model.parameters() if p.grad is not None} == {torch.float32}
    assert _convolution_dtypes("false")[0] == {torch.float32}


def test_cpu_bf16_auto_follows_the_cpus_own_bf16_units():
    """``auto``: bf16 exactly where the kernel reports AVX-512 BF16 or AMX (read apart from
    torch, in /proc/cpuinfo); a GPU follows ``scaling.bf16`` whatever the CPU setting."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.MULTILINE).group(1).split())
    auto = load_job_config("cpu-demo", overrides=["scaling.cpu_bf16=auto"])
    assert uses_bf16(torch.device("cpu"), auto) == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert uses_bf16(torch.device("cuda"), auto)
    no_gpu_bf16 = load_job_config("cpu-demo", overrides=["scaling.bf16=false"])
    assert not uses_bf16(torch.device("cuda"), no_gpu_bf16)


def test_an_unknown_cpu_bf16_setting_is_refused():
    with pytest.raises(ValueError, match=r"cpu_bf16: expected true, false or auto, got 'always'"):
        load_job_config("cpu-demo", overrides=["scaling.cpu_bf16=always"])
