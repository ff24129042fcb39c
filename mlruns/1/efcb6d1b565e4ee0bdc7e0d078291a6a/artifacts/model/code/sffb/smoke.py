"""A few distillation steps on random data: shows the model, its outputs and its loss terms.

Until the Ray jobs land, this is the quickest proof that the library works end to end:
``python -m sffb.smoke`` builds a frozen teacher and a student SFFB, runs KD steps on a random
batch and prints the parameter count, the output shapes, the loss terms and the step time.
"""

from __future__ import annotations

import argparse
import time

import torch

from sffb.losses import DistillationLoss
from sffb.model import SFFB, SFFBConfig


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(backbone: str, image_size: int, batch_size: int, steps: int, seed: int = 0) -> list[float]:
    """Run ``steps`` KD steps on one random batch; return the total loss of each step."""
    torch.manual_seed(seed)
    config = SFFBConfig(backbone=backbone, image_size=image_size)
    teacher, student = SFFB(config).eval().requires_grad_(False), SFFB(config).train()
    optimiser = torch.optim.Adam(student.parameters(), lr=2e-4)
    loss_fn = DistillationLoss()
    raw = torch.rand(batch_size, 3, image_size, image_size)
    compressed = (raw + 0.05 * torch.randn_like(raw)).clamp(0, 1)  # stands in for H.264 loss
    labels = torch.arange(batch_size) % 2

    print(f"SFFB-{backbone} at {image_size}x{image_size}: {parameter_count(student):,} parameters")
    totals = []
    for step in range(steps):
        started = time.perf_counter()
        with torch.no_grad():
            teacher_out = teacher(raw)
        student_out = student(compressed)
        terms = loss_fn(student_out, teacher_out, labels)
        optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        optimiser.step()
        elapsed = time.perf_counter() - started
        if step == 0:
            for name, tensor in student_out._asdict().items():
                print(f"  {name:<12} {tuple(tensor.shape)}")
        losses = "  ".join(f"{k}={v:.4f}" for k, v in terms.as_floats().items())
        print(f"step {step}: {losses}  ({elapsed:.2f} s, batch {batch_size})")
        totals.append(terms.total.item())
    return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=SFFBConfig.backbone)
    parser.add_argument("--image-size", type=int, default=SFFBConfig.image_size)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    run(args.backbone, args.image_size, args.batch_size, args.steps)


if __name__ == "__main__":
    main()
