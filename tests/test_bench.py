"""The benchmark scripts run at a tiny size, print their tables and pass their own checks.

No timing is asserted: numbers belong in BENCHMARKS.md, measured by the scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from bench.kd_diagnosis import load_batch
from rayjobs.lib.checkpoints import load_model, save_state
from rayjobs.lib.config import load_job_config
from sffb.model import SFFB

ROOT = Path(__file__).resolve().parents[1]


def test_kd_step_bench_prints_table_and_variants_match_baseline(tmp_path):
    out = tmp_path / "step.json"
    command = [
        sys.executable, "bench/step.py", "--device", "cpu", "--size", "64", "--batch", "4",
        "--backbone", "test_resnet", "--variants", "fp32", "bf16", "channels_last", "fused_adam",
        "--warmup", "1", "--iters", "1", "--json", str(out),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KD step, test_resnet at 64x64, batch 4" in result.stdout
    assert "xception" in result.stdout
    figures = json.loads(out.read_text())
    assert set(figures["samples_per_s"]) == {"fp32", "bf16", "channels_last", "fused_adam"}
    for key in ("device", "speedup_vs_fp32", "xception_efficiency", "dct_share"):
        assert key in figures
    assert [c["variant"] for c in figures["checks"]] == ["bf16", "channels_last", "fused_adam"]
    assert all(check["ok"] for check in figures["checks"])
    assert figures["rows"]["fp32"]["flops"] > 0 and figures["xception"]["flops"] > 0


def test_pipeline_bench_prints_every_figure(tmp_path):
    out = tmp_path / "pipeline.json"
    command = [
        sys.executable, "bench/pipeline.py", "--workdir", str(tmp_path / "work"),
        "--reals", "6", "--frames", "4", "--width", "192", "--height", "144",
        "--crop-size", "64", "--passes", "1", "--rows", "240",
        "--backbone", "test_resnet", "--train-size", "32", "--batch", "2",
        "--steps", "2", "--warmup", "1", "--node-cores", "4", "--json", str(out),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "floor (1 process, decode only), raw" in result.stdout
    assert "floor (1 process, decode only), png" in result.stdout
    assert "Ray Data, augment_on=device, raw" in result.stdout
    assert "Ray overhead ratio" in result.stdout
    figures = json.loads(out.read_text())
    for key in (
        "pairs_per_s_per_core",
        "floor_pairs_per_s_per_core",
        "data_wait_share",
        "ray_overhead_ratio",
    ):
        assert figures[key] >= 0, key
    assert set(figures["pairs_per_s_per_core_by_variant"]) == {"cpu", "device"}
    assert set(figures["pairs_per_s_per_core_by_format"]) == {"raw", "png"}
    storage, photos = figures["storage"], figures["photo_storage"]
    assert all(storage[f]["bytes_per_pair"] > 0 for f in ("raw", "png"))
    assert all(photos[f]["bytes_per_crop"] > 0 for f in ("raw", "png")) and photos["crops"] == 120
    assert figures["share_of_floor"] > 0 and "Operator" in figures["ray_data_stats"]
    read_share = figures["pairs_per_s_per_core"] / storage["raw"]["pairs_per_s_one_core"]
    assert figures["share_of_one_process_read"] == pytest.approx(read_share)
    assert figures["ray_samples_per_s"] > 0 and figures["bare_samples_per_s"] > 0


def test_kd_diagnosis_reports_terms_gradients_and_teacher_confidence(prepared, tmp_path):
    """On real shards, with a checkpoint as training writes it (random weights, test backbone)."""
    shards, _ = prepared
    tiny = ["model.backbone=test_resnet", "model.image_size=64", "data.methods=[]"]
    job = load_job_config("cpu-demo", overrides=tiny)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    history = [{"epoch": 0, "train_total": 0.7, "val_frame_auc": 0.5}]
    save_state(teacher, model=SFFB(job.model).state_dict(), config=job, history=history, epoch=0)
    out = tmp_path / "diagnosis.json"
    command = [
        sys.executable, "bench/kd_diagnosis.py", "--teacher", str(teacher), "--shards",
        str(shards), "--student", f"copy={teacher}", "--rows", "8", "--json", str(out),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "## Loss terms on one step" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["rows"] == 8
    paper = figures["terms"]["fresh (random init)"]["paper (T=1)"]
    assert paper["soft"]["weighted"] == pytest.approx(100 * paper["soft"]["value"], rel=1e-6)
    assert paper["feature"]["grad_head"] == 0.0  # the maps come before fusion and head
    assert paper["soft"]["grad_head"] > 0 and paper["hard"]["grad_trunk"] > 0
    balanced = figures["terms"]["copy"]["running balance, lambda 1/1/1"]
    assert [balanced[t]["weighted"] for t in ("feature", "soft", "hard")] == pytest.approx(
        [1, 1, 1]
    )
    assert figures["histories"]["copy"] == history

    # The teacher's accuracy on raw frames, recomputed independently with sklearn.
    batch = load_batch(str(shards), "train", "c23", 8, (), 64)
    with torch.no_grad():
        predicted = load_model(teacher)(batch.raw).logits.argmax(1).numpy()
    expected = accuracy_score(batch.labels.numpy(), predicted)
    assert figures["teacher_on_raw"]["accuracy"] == pytest.approx(expected)
    assert np.isfinite(figures["teacher_maps"]["spatial_map_rms"])


def test_bootstrap_bench_times_a_cell_and_a_paired_comparison():
    command = [sys.executable, "bench/bootstrap.py", "--videos", "20", "--frames", "3",
               "--resamples", "50"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (figures["frames"], figures["videos"], figures["resamples"]) == (60, 20, 50)
    assert all(figures[k] > 0 for k in ("cell_first_s", "cell_again_s", "paired_two_baselines_s"))
