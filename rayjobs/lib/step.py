"""One optimisation step of either job, shared by the Ray training loop and the benchmarks.

Teacher forward (no grad, when distilling), student forward, loss, backward, optimiser step;
before that, the pair is augmented on the worker's device when ``data.augment_on == "device"``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

import torch

from rayjobs.lib.augment import augment_together
from rayjobs.lib.config import JobConfig
from rayjobs.lib.reproducible import stream_seed
from sffb.losses import DistillationLoss


@cache  # asked at every step (``autocast``); the CPU does not change
def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX); others emulate it, slower.
    torch's probes are private: a torch without them counts as a CPU without bf16 (fp32)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def uses_bf16(device: torch.device, job: JobConfig) -> bool:
    """Whether training on ``device`` runs under bf16 autocast: ``scaling.bf16`` on a GPU,
    ``scaling.cpu_bf16`` on a CPU (``auto``: where the CPU computes bf16 itself)."""
    if device.type == "cuda":
        return job.scaling.bf16
    if device.type != "cpu" or job.scaling.cpu_bf16 is False:
        return False
    return job.scaling.cpu_bf16 is True or cpu_computes_bf16()


def autocast(device: torch.device, job: JobConfig):
    """bf16 autocast where ``uses_bf16``, else nothing (fp32)."""
    if uses_bf16(device, job):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def prepare_input(images: torch.Tensor, job: JobConfig) -> torch.Tensor:
    if job.scaling.channels_last:
        return images.contiguous(memory_format=torch.channels_last)
    return images


@dataclass
class TrainingStep:
    """Callable on a batch of uint8 NCHW tensors (one per level, plus ``label``) on ``device``."""

    model: torch.nn.Module  # the student (or the teacher being pretrained), maybe DDP-wrapped
    teacher: torch.nn.Module | None  # frozen; None when pretraining the teacher
    loss_fn: DistillationLoss
    optimiser: torch.optim.Optimizer
    job: JobConfig
    input_level: str  # the level the trained model sees
    levels: tuple[str, ...]  # every level in the batch (augmented with one draw)
    device: torch.device
    generator: torch.Generator | None = None  # set: augment here, on the device

    @classmethod
    def seeded_generator(
        cls, device: torch.device, seed: int, rank: int, epoch: int = 0
    ) -> torch.Generator:
        """A generator on ``device`` with its own stream per worker rank and epoch."""
        return torch.Generator(device=device).manual_seed(stream_seed(seed, epoch, rank))

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.generator is not None:
            images = [batch[level] for level in self.levels]
            augmented = augment_together(images, self.job.data.augment, self.generator)
            batch = {**batch, **dict(zip(self.levels, augmented, strict=True))}
        with autocast(self.device, self.job):
            teacher_out = None
            if self.teacher is not None:
                with torch.no_grad():
                    level = self.job.data.teacher_level
                    teacher_out = self.teacher(prepare_input(batch[level], self.job))
            student_out = self.model(prepare_input(batch[self.input_level], self.job))
            terms = self.loss_fn(student_out, teacher_out, batch["label"])
        self.optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        # The norm before clipping, logged either way (a spike is what clipping is for); off,
        # the gradients are not touched.
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
        if self.job.optim.clip_grad_norm:
            torch.nn.utils.clip_grads_with_norm_(parameters, self.job.optim.clip_grad_norm, norm)
        self.optimiser.step()
        return {**terms.as_floats(), "grad_norm": float(norm)}
