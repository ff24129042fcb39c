"""The jobs on a real multi-node Ray cluster, on one machine.

Three ``ray start`` nodes: a head with 0 CPUs (so every task lands on a worker node), a node
``shared`` and a node ``private-mounts`` that runs in its own mount namespace with an empty tmpfs
over ``home``: the driver's local outputs folder does not exist there, as on a second machine.

- With everything in ``home`` (local paths, SQLite MLflow), ``data_prep prepare`` and the
  training preflight must fail in seconds, naming that node and the path.
- With shards, runs and checkpoints on an S3 endpoint (moto on 127.0.0.1) and tracking on
  ``mlflow server`` (artifacts on the same endpoint), distillation with one DDP worker per node,
  evaluation and a sweep complete, and everything lands on the servers.

Every job runs as the command a user types, with ``RAY_ADDRESS`` pointing at the cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml
from mlflow.tracking import MlflowClient

from rayjobs.lib.config import load_job_config
from rayjobs.lib.run_names import default_run_name
from rayjobs.lib.trained_model import resolve_model
from tests.helpers import TEST_FRAMES
from tests.ray_nodes import LocalCluster, can_hide_folders
from tests.servers import S3_KEYS, mlflow_server, s3_endpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not can_hide_folders(), reason="needs private mount namespaces (unshare)"),
]

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sffb"
PRIVATE = "private-mounts"
EXPERIMENT = "cluster-test"
TINY = [
    "model.backbone=test_resnet",
    "model.image_size=64",
    "data.methods=[]",
    "data.batch_size=8",
    "optim.lr=1e-3",
    "optim.epochs=1",
    "optim.teacher_epochs=null",  # the teacher too: one epoch, at a constant rate
    "optim.teacher_schedule=null",
    "scaling.num_workers=2",
    "scaling.placement_strategy=SPREAD",  # one DDP worker per node
    # Blocks handed out by locality, as they finish: the path the rest of the suite (on the
    # deterministic default) does not take, and the faster one on a cluster.
    "data.deterministic=false",
    f"tracking.experiment={EXPERIMENT}",
    "tracking.system_metrics_interval_s=2",
]
S3_SHARDS = f"s3://{BUCKET}/shards"
# The runs the distillation job below makes: their default names (configuration hash included).
_DISTILL_JOB = load_job_config("cpu-demo", overrides=[*TINY, f"data.shards={S3_SHARDS}"])
TEACHER = default_run_name(_DISTILL_JOB, "teacher")
STUDENT = default_run_name(_DISTILL_JOB, "student")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-logs")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The driver's local outputs folder; hidden (an empty tmpfs) on the private node."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def s3(logs):
    with s3_endpoint(logs / "moto.log", buckets=(BUCKET,)) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def tracking(s3, logs, tmp_path_factory) -> str:
    """``mlflow server`` with a database backend and its artifacts on the S3 endpoint."""
    database = tmp_path_factory.mktemp("tracking") / "mlflow.db"
    with mlflow_server(
        f"sqlite:///{database}", logs / "mlflow.log", f"s3://{BUCKET}/mlartifacts", s3.env()
    ) as url:
        yield url


@pytest.fixture(scope="module")
def cluster(s3, home, logs):
    nodes = {"shared": (4, ()), PRIVATE: (4, (home,))}
    started = LocalCluster(logs, s3.env())
    try:
        yield started.start(nodes)
    finally:
        started.stop()


def run_job(cluster, args: list[str], logs: Path, name: str, **env) -> subprocess.CompletedProcess:
    """A job as a user runs it on the cluster; its output is kept in ``logs/<name>.log``."""
    environment = {k: v for k, v in cluster.env.items() if k != "MLFLOW_TRACKING_URI"}
    # Every worker's own line: Ray's log deduplication would merge lines that differ in a node id.
    environment.update({"RAY_ADDRESS": cluster.address, "RAY_DEDUP_LOGS": "0", **env})
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    (logs / f"{name}.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    return result


def _prepare_args(root: Path, output: str) -> list[str]:
    return [
        "-m", "data_prep", "prepare", "--dataset", "ffpp", "--root", str(root),
        "--output", output, "--frames-per-video", str(TEST_FRAMES), "--crop-size", "64",
        "--shard-target-mb", "1",
    ]  # fmt: skip


def test_prepare_fails_naming_the_node_that_cannot_read_the_videos(
    cluster, home, logs, synthetic_root
):
    videos = home / "videos"
    shutil.copytree(synthetic_root, videos)
    output = home / "shards-unreadable"
    result = run_job(cluster, _prepare_args(videos, str(output)), logs, "prepare-hidden")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "joined the Ray cluster" in result.stdout
    message = result.stderr
    assert PRIVATE in message and str(videos) in message, message[-3000:]
    assert "shared" not in message.split("error:")[-1]  # the node that sees them is not blamed
    manifest = output / "manifest.json"
    assert not manifest.exists() or not json.loads(manifest.read_text())["complete"]
    assert not list(output.glob("*/part-*.parquet"))


@pytest.fixture(scope="module")
def s3_shards(cluster, s3, logs, synthetic_root) -> str:
    result = run_job(cluster, _prepare_args(synthetic_root, S3_SHARDS), logs, "prepare-s3")
    assert result.returncode == 0, result.stderr[-3000:]
    return S3_SHARDS


def test_prepare_writes_shards_and_manifest_to_the_bucket(s3_shards, s3):
    keys = s3.keys(BUCKET, "shards/")
    assert "shards/manifest.json" in keys
    body = s3.client().get_object(Bucket=BUCKET, Key="shards/manifest.json")["Body"]
    manifest = json.loads(body.read())
    assert manifest["complete"]
    assert set(manifest["rows"]) == {"train", "val", "test"}
    assert {f"shards/{s['path']}" for s in manifest["shards"]} == {
        k for k in keys if k.endswith(".parquet")
    }
    assert not [k for k in keys if k.endswith(".tmp")]


def _s3_filesystem(s3) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        endpoint_override=s3.url,
        access_key=S3_KEYS["AWS_ACCESS_KEY_ID"],
        secret_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        region=S3_KEYS["AWS_DEFAULT_REGION"],
    )


def test_preflight_fails_in_seconds_naming_the_node_and_paths(cluster, home, logs, s3, s3_shards):
    shards = home / "shards"
    pafs.copy_files(f"{BUCKET}/shards", str(shards), _s3_filesystem(s3), pafs.LocalFileSystem())
    start = time.monotonic()
    result = run_job(
        cluster,
        ["rayjobs/distill.py", *(f"--set={o}" for o in TINY), f"--set=data.shards={shards}"],
        logs,
        "preflight-hidden",
        SFFB_HOME=str(home),  # runs and the SQLite store in home, too
    )
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    report = result.stderr
    problems = [line for line in report.splitlines() if line.startswith("  node ")]
    assert problems and all(PRIVATE in line for line in problems), report[-3000:]
    assert any(str(shards / "train") in line for line in problems)
    assert any(str(home / "runs") in line for line in problems)  # storage not shared
    assert any("mlflow.db" in line and "mlflow server" in line for line in problems)
    assert not list((home / "runs").rglob("epoch_*"))  # no trainer ever started
    assert elapsed < 120, f"the preflight took {elapsed:.0f} s, job start-up included"


@pytest.fixture(scope="module")
def distilled(cluster, logs, s3_shards, tracking) -> subprocess.CompletedProcess:
    args = ["rayjobs/distill.py", "--skip-test", *(f"--set={o}" for o in TINY)]
    args += [f"--set=data.shards={s3_shards}", f"--set=tracking.storage_path=s3://{BUCKET}/runs"]
    return run_job(cluster, args, logs, "distill-s3", MLFLOW_TRACKING_URI=tracking)


def _runs(tracking: str) -> dict:
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def test_distillation_runs_one_ddp_worker_per_node(distilled):
    assert distilled.returncode == 0, distilled.stderr[-4000:]
    output = distilled.stdout + distilled.stderr
    nodes = set(re.findall(r"worker \d/2 on node (\w+)", output))
    assert len(nodes) == 2, output[-3000:]
    assert "/#/experiments/" in distilled.stdout and "?workflowType=machine_learning" in output


def test_checkpoints_and_artifacts_land_on_the_servers(distilled, s3, tracking):
    assert distilled.returncode == 0, distilled.stderr[-4000:]
    keys = s3.keys(BUCKET)
    for run in (TEACHER, STUDENT):
        assert f"runs/{run}/best/state.pt" in keys
        assert any(k.startswith(f"runs/{run}/epoch_0000/") for k in keys)
    runs = _runs(tracking)
    client = MlflowClient(tracking)
    for name in (TEACHER, STUDENT):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["sffb.best_checkpoint"] == f"s3://{BUCKET}/runs/{name}/best"
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
        assert "model/MLmodel" in artifacts  # the best model, an MLflow model
        stored = f"{run.info.run_id}/artifacts/model/artifacts/checkpoint/state.pt"
        assert any(k.startswith("mlartifacts/") and k.endswith(stored) for k in keys)
    assert runs[STUDENT].data.tags["mlflow.parentRunId"] == runs[TEACHER].info.run_id
    # The shards in the bucket are the runs' dataset inputs, sourced by their URI.
    sources = {json.loads(i.dataset.source)["uri"] for i in runs[STUDENT].inputs.dataset_inputs}
    assert {f"s3://{BUCKET}/shards/train", f"s3://{BUCKET}/shards/val"} <= sources
    # Rank 0, on whichever node, sampled its machine into the server.
    assert "system/cpu_utilization_percentage" in runs[STUDENT].data.metrics
    assert not (ROOT / "s3:").exists()  # nothing written to a local folder named after the URI


def test_evaluate_reads_the_checkpoint_back_from_the_bucket(cluster, distilled, logs, tracking):
    assert distilled.returncode == 0
    checkpoint = f"s3://{BUCKET}/runs/{STUDENT}/best"
    args = ["rayjobs/evaluate.py", "--checkpoint", checkpoint, "--shards", f"s3://{BUCKET}/shards"]
    args += ["--levels", "c40", "--experiment", EXPERIMENT]
    args += ["--baseline", f"teacher=s3://{BUCKET}/runs/{TEACHER}/best"]
    result = run_job(cluster, args, logs, "evaluate-s3", MLFLOW_TRACKING_URI=tracking)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| all | c40 |" in result.stdout
    run = _runs(tracking)[f"evaluate-{STUDENT}"]
    assert run.info.status == "FINISHED"
    assert {"test_c40_frame_auc", "test_c40_video_auc"} <= set(run.data.metrics)
    assert "baseline_teacher_test_c40_frame_auc" in run.data.metrics  # read from the bucket too
    assert "| teacher | all | c40 |" in result.stdout


def test_sweep_on_the_cluster_logs_parent_and_children_to_the_server(
    cluster, distilled, logs, tracking, s3, tmp_path
):
    assert distilled.returncode == 0
    fixed = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)}
    fixed.update({
        "data.shards": f"s3://{BUCKET}/shards",
        "tracking.storage_path": f"s3://{BUCKET}/runs",
    })  # fmt: skip
    space = {
        "preset": "cpu-demo",
        "fixed": fixed,
        # One trial: parent, child, the trial's two workers on two nodes, the sweep's files in
        # the bucket; a second trial would add minutes and test nothing more on a cluster.
        "search": {"loss.lambda2": {"grid": [10.0]}},
        "tune": {"max_concurrent_trials": 1, "scheduler": "none"},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    args = ["rayjobs/tune.py", "--space", str(path), "--name", "sweep-cluster"]
    result = run_job(cluster, args, logs, "sweep-s3", MLFLOW_TRACKING_URI=tracking)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "pretraining the" not in result.stdout  # the distillation's teacher is reused
    runs = _runs(tracking)
    parent = runs["sweep-cluster"]
    children = [
        r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(children) == 1
    assert {r.info.status for r in children} == {"FINISHED"}
    assert parent.data.tags["sffb.best_trial"]
    keys = s3.keys(BUCKET, "runs/sweeps/")
    assert "runs/sweeps/sweep-cluster-best.json" in keys
    assert "runs/sweeps/sweep-cluster-space.yaml" in keys
    nodes = set(re.findall(r"worker \d/2 on node (\w+)", result.stdout + result.stderr))
    assert len(nodes) == 2
    assert os.environ.get("RAY_ADDRESS") != cluster.address  # the suite's own Ray is untouched


def test_detect_scores_files_in_the_bucket_on_the_cluster(
    cluster, distilled, logs, tracking, s3, synthetic_root
):
    """Inputs, model, results and Grad-CAM pictures all in the bucket; the default model is
    the newest distilled student on the tracking server; a junk upload is recorded."""
    assert distilled.returncode == 0
    client = s3.client()
    clip = next((synthetic_root / "original_sequences" / "youtube" / "c40" / "videos").glob("*"))
    client.put_object(Bucket=BUCKET, Key="uploads/a/clip.mp4", Body=clip.read_bytes())
    client.put_object(Bucket=BUCKET, Key="uploads/junk.mp4", Body=b"not a video")
    args = ["rayjobs/detect.py", f"s3://{BUCKET}/uploads", "--experiment", EXPERIMENT]
    args += ["--output", f"s3://{BUCKET}/detections/scores.jsonl", "--cam", f"s3://{BUCKET}/cams"]
    result = run_job(cluster, args, logs, "detect-s3", MLFLOW_TRACKING_URI=tracking)
    assert result.returncode == 0, result.stderr[-3000:]
    newest = resolve_model(None, tracking, EXPERIMENT)  # the default: the newest student
    assert newest.startswith(f"s3://{BUCKET}/runs/") and f"model {newest} " in result.stdout
    body = client.get_object(Bucket=BUCKET, Key="detections/scores.jsonl")["Body"].read()
    records = {r["path"]: r for r in map(json.loads, body.decode().splitlines())}
    assert set(records) == {f"s3://{BUCKET}/uploads/a/clip.mp4", f"s3://{BUCKET}/uploads/junk.mp4"}
    scored = records[f"s3://{BUCKET}/uploads/a/clip.mp4"]
    assert scored["error"] is None and scored["frames_scored"] == TEST_FRAMES
    assert "not a readable video" in records[f"s3://{BUCKET}/uploads/junk.mp4"]["error"]
    cams = [k for k in s3.keys(BUCKET, "cams/") if k.endswith(".png")]
    assert len(cams) == TEST_FRAMES
