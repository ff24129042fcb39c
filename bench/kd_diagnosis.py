"""Why distillation does or does not pay off: the loss terms, their gradients, the teacher.

On a batch of training pairs from prepared shards, with a trained teacher:

- the teacher's confidence on raw and on compressed frames (mean P(true class), the share of
  frames above 0.99, the entropy of its soft targets at each temperature): soft targets of a
  confident teacher at T = 1 carry little beyond the label;
- the scale of the knowledge maps (RMS of the teacher's and the student's 728-channel maps),
  which the feature MSE inherits;
- for each student (a fresh one as KD starts it, the teacher's copy, trained checkpoints) and
  each loss setting (the paper's, T^2 at T = 4, L2-normalised maps, running balance): every
  term's value, its weighted value, and the gradient norm of the weighted term on the student's
  trunk (both streams) and head (fusion + classifier): which term steers the student;
- the per-epoch train/val history stored in each trained checkpoint.

    python bench/kd_diagnosis.py --teacher RUNS/teacher-.../best --shards SHARDS \\
        --student kd=RUNS/student-.../best --student alone=RUNS/alone/best --level c23

Runs on one process, no Ray; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from data_prep import storage
from data_prep.image_columns import decode_column, image_column
from rayjobs.lib.checkpoints import load_state, model_from_state
from rayjobs.lib.data import shard_files, shard_format
from sffb.losses import TERMS, DistillationLoss
from sffb.model import SFFB, SFFBOutput

#: Loss settings compared: the paper's, and balancing options of distillation_options.yaml.
SETTINGS: dict[str, dict] = {
    "paper (T=1)": {},
    "T^2 scaling, T=4": {"soft_scale": "t2", "temperature": 4.0},
    "L2-normalised maps": {"feature_norm": "l2"},
    "running balance, lambda 1/1/1": {
        "balance": "running", "lambda1": 1.0, "lambda2": 1.0, "lambda3": 1.0
    },
}  # fmt: skip


@dataclass(frozen=True)
class Batch:
    raw: torch.Tensor
    compressed: torch.Tensor
    labels: torch.Tensor


def load_batch(shards: str, split: str, level: str, rows: int, methods, size: int) -> Batch:
    """``rows`` pairs, half real and half fake where possible, decoded as training decodes."""
    files = shard_files(shards, split)  # paths or URIs
    fs = storage.filesystem(files[0])[0]
    paths = [storage.filesystem(f)[1] for f in files]
    image_format = shard_format(shards, split)
    raw, compressed = image_column("raw", image_format), image_column(level, image_format)
    columns = ["label", "method", raw, compressed]
    table = pq.read_table(paths, columns=columns, filesystem=fs)
    labels = table["label"].to_numpy()
    method = np.asarray(table["method"].to_pylist())
    keep = (labels == 0) | (np.isin(method, list(methods)) if methods else True)
    rng = np.random.default_rng(0)
    picked = []
    for label in (0, 1):
        candidates = np.flatnonzero(keep & (labels == label))
        picked.extend(rng.permutation(candidates)[: rows // 2])
    picked = np.sort(np.asarray(picked))

    def images(column: str) -> torch.Tensor:
        return torch.from_numpy(decode_column(table[column].take(picked), size))

    return Batch(
        images(raw),
        images(compressed),
        torch.from_numpy(labels[picked]).long(),
    )


def teacher_confidence(teacher: SFFB, images: torch.Tensor, labels: torch.Tensor) -> dict:
    with torch.no_grad():
        logits = teacher(images).logits.double()
    probs = logits.softmax(1)
    true = probs.gather(1, labels[:, None]).squeeze(1)
    report = {
        "accuracy": float((probs.argmax(1) == labels).double().mean()),
        "mean_p_true": float(true.mean()),
        "share_p_true_above_0.99": float((true > 0.99).double().mean()),
        "mean_abs_logit_margin": float((logits[:, 1] - logits[:, 0]).abs().mean()),
    }
    for t in (1.0, 2.0, 4.0):
        soft = (logits / t).softmax(1)
        entropy = -(soft * soft.clamp_min(1e-300).log2()).sum(1)
        report[f"soft_target_entropy_bits_T{t:g}"] = float(entropy.mean())
    return report


def rms(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().pow(2).mean().sqrt())


def map_scales(out: SFFBOutput) -> dict[str, float]:
    return {"spatial_map_rms": rms(out.spatial_map), "freq_map_rms": rms(out.freq_map)}


def _grad_norm(term: torch.Tensor, params: list[torch.Tensor]) -> float:
    if not term.requires_grad:
        return 0.0
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))


def term_report(student: SFFB, teacher_out: SFFBOutput, batch: Batch, options: dict) -> dict:
    """Each term's value, weighted value and weighted gradient norms (trunk, head)."""
    loss = DistillationLoss(**options)
    student.train()
    out = student(batch.compressed)
    terms = loss(out, teacher_out, batch.labels)
    trunk = [*student.spatial_stream.parameters(), *student.freq_stream.parameters()]
    head = [*student.fusion.parameters(), *student.head.parameters()]
    report = {}
    for name in TERMS:
        weighted = terms.weighted[name]
        report[name] = {
            "value": float(getattr(terms, name).detach()),
            "weighted": float(weighted.detach()),
            "grad_trunk": _grad_norm(weighted, trunk),
            "grad_head": _grad_norm(weighted, head),
        }
    report["student_maps"] = map_scales(out)
    return report


def histories(states: dict[str, dict]) -> dict[str, list[dict]]:
    """The per-epoch losses and validation AUCs each checkpoint's state holds."""
    keys = ("epoch", "train_total", "train_feature", "train_soft", "train_hard",
            "val_frame_auc", "val_video_auc", "lr", "kd_weight")  # fmt: skip
    return {
        name: [{k: h[k] for k in keys if k in h} for h in state["history"]]
        for name, state in states.items()
    }


def diagnose(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    teacher_state = load_state(args.teacher)
    teacher = model_from_state(teacher_state).requires_grad_(False)
    job = teacher_state["config"]
    batch = load_batch(args.shards, args.split, args.level, args.rows, job.data.methods,
                       teacher.config.image_size)  # fmt: skip
    with torch.no_grad():
        teacher_out = teacher(batch.raw)
    students = {"fresh (random init)": SFFB(teacher.config), "teacher copy": copy.deepcopy(teacher)}
    trained = {
        name: load_state(path) for name, path in (spec.split("=", 1) for spec in args.student)
    }
    students.update({name: model_from_state(state) for name, state in trained.items()})
    for student in students.values():
        student.requires_grad_(True)
    return {
        "rows": len(batch.labels),
        "level": args.level,
        "teacher_on_raw": teacher_confidence(teacher, batch.raw, batch.labels),
        f"teacher_on_{args.level}": teacher_confidence(teacher, batch.compressed, batch.labels),
        "teacher_maps": map_scales(teacher_out),
        "terms": {
            student_name: {
                setting: term_report(student, teacher_out, batch, options)
                for setting, options in SETTINGS.items()
            }
            for student_name, student in students.items()
        },
        "histories": histories(trained),
    }


def _row(cells) -> str:
    return "| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells) + " |"


def print_report(figures: dict) -> None:
    level = figures["level"]
    print(f"## Teacher confidence ({figures['rows']} training frames)\n")
    confidence = ("accuracy", "mean_p_true", "share_p_true_above_0.99", "mean_abs_logit_margin",
                  *(f"soft_target_entropy_bits_T{t}" for t in (1, 2, 4)))  # fmt: skip
    print(_row(("input", *confidence)))
    print(_row(("---", *("---:" for _ in confidence))))
    for name in ("teacher_on_raw", f"teacher_on_{level}"):
        print(_row((name.removeprefix("teacher_on_"), *(figures[name][k] for k in confidence))))
    maps = figures["teacher_maps"]
    print(f"\nteacher maps RMS: spatial {maps['spatial_map_rms']:.3f}, "
          f"frequency {maps['freq_map_rms']:.3f}\n")  # fmt: skip
    print("## Loss terms on one step: value, weighted, |grad| of the weighted term\n")
    columns = ("value", "weighted", "grad_trunk", "grad_head")
    print(_row(("student", "setting", "term", *columns)))
    print(_row(("---", "---", "---", *("---:" for _ in columns))))
    for student, settings in figures["terms"].items():
        for setting, report in settings.items():
            for term in TERMS:
                print(_row((student, setting, term, *(report[term][k] for k in columns))))
    for name, history in figures["histories"].items():
        print(f"\n## {name}: per-epoch history\n")
        keys = list(history[0]) if history else []
        print(_row(keys))
        print(_row("---:" for _ in keys))
        for row in history:
            print(_row(float(row[k]) for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="the teacher's checkpoint folder")
    parser.add_argument("--shards", required=True, help="prepared shards (path or URI)")
    parser.add_argument("--student", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a trained student to diagnose too (repeatable)")  # fmt: skip
    parser.add_argument("--level", default="c23", help="the student's input level")
    parser.add_argument("--split", default="train")
    parser.add_argument("--rows", type=int, default=32, help="frames in the batch (half fake)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    figures = diagnose(args)
    print_report(figures)
    if args.json:
        staged = args.json.with_suffix(".tmp")
        staged.write_text(json.dumps(figures, indent=1))
        staged.replace(args.json)


if __name__ == "__main__":
    main()
