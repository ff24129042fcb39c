"""The benchmark scripts run at a tiny size, print their tables and pass their own checks.

No timing is asserted: numbers belong in BENCHMARKS.md, measured by the scripts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
