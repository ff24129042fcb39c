"""Relaunch a finished run from what MLflow recorded, and show whether it repeats.

    python -m rayjobs.rerun <MLflow run id> [--force] [--tracking-uri URI]

The run's logged configuration (its ``config.yaml`` artifact) is trained again under a new name
(``<name>-rerun-<k>``) in the same experiment, after checking that what it was trained from is
still what this machine has: the git commit of the code (with no uncommitted edits to tracked
files), the SHA-256 of the shards' manifest, the versions of the packages that shape the numbers
(``data_prep.versions``; install them with ``pip install -c deploy/constraints.txt``) and, for a
distilled student, the teacher checkpoint it read. A difference is refused, naming each, unless
``--force``. The old and new per-epoch metrics are then printed side by side: with
``data.deterministic`` (the default) on the same hardware they agree exactly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from data_prep import storage
from data_prep.versions import changed_since, recorded_versions
from rayjobs.lib.checkpoints import has_checkpoint
from rayjobs.lib.config import JobConfig
from rayjobs.lib.configtree import from_dict, load_yaml
from rayjobs.lib.launch import USER_ERRORS, TrainOutcome, run_training
from rayjobs.lib.tracking import (
    file_sha256,
    find_run,
    git_commit,
    tracking_uri,
    uncommitted_changes,
)

#: Per-epoch metrics compared between the original and the rerun.
COMPARED = ("train_total", "val_frame_auc", "val_frame_acc", "val_video_auc")


class RerunError(ValueError):
    """The run cannot be rerun as recorded: one line for the user."""


@dataclass(frozen=True)
class RecordedRun:
    """What a finished run was trained from, as MLflow recorded it."""

    run_id: str
    name: str
    mode: str
    job: JobConfig
    commit: str
    manifest_sha256: str
    teacher_checkpoint: str | None
    versions: dict[str, str]  # package -> version; empty for runs recorded before the tag


def recorded_run(uri: str, run_id: str) -> RecordedRun:
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RerunError(f"no run {run_id!r} in the tracking store {uri}") from None
    if run.info.status != "FINISHED":
        raise RerunError(f"run {run_id} is {run.info.status}: only a finished run can be rerun")
    with tempfile.TemporaryDirectory() as directory:
        try:
            path = client.download_artifacts(run_id, "config.yaml", directory)
        except (MlflowException, OSError):
            raise RerunError(
                f"run {run_id} has no config.yaml artifact: not a training run"
            ) from None
        job = from_dict(JobConfig, load_yaml(Path(path)))
    tags = run.data.tags
    return RecordedRun(
        run_id=run_id,
        name=run.info.run_name,
        mode=run.data.params.get("mode", tags.get("sffb.mode", "student")),
        job=job,
        commit=tags.get(MLFLOW_GIT_COMMIT, "unknown"),
        manifest_sha256=tags.get("sffb.manifest_sha256", "none"),
        teacher_checkpoint=tags.get("sffb.teacher_checkpoint"),
        versions=recorded_versions(tags),
    )


def differences(recorded: RecordedRun) -> list[str]:
    """What is no longer as it was when the run trained, one line each."""
    found = []
    commit = git_commit()
    if recorded.commit != commit:
        found.append(f"git commit: the run trained at {recorded.commit}, this code is {commit}")
    changed = uncommitted_changes()
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        found.append(f"working tree: uncommitted changes to {shown} (commit them, or --force)")
    manifest = storage.join(recorded.job.data.shards, "manifest.json")
    now = file_sha256(manifest)
    if now != recorded.manifest_sha256:
        was = recorded.manifest_sha256[:12]
        found.append(f"shards: {manifest} has SHA-256 {now[:12]}, the run read {was}")
    changed_versions = changed_since(recorded.versions)
    if changed_versions:
        shown = ", ".join(changed_versions)
        found.append(f"packages: {shown} (install the versions the run recorded)")
    teacher = recorded.teacher_checkpoint
    if recorded.job.needs_teacher_checkpoint(recorded.mode) and not (
        teacher and has_checkpoint(teacher)
    ):
        found.append(f"teacher: checkpoint {teacher} is gone")
    return found


def rerun_name(uri: str, recorded: RecordedRun) -> str:
    """``<name>-rerun-<k>`` with the first ``k`` not taken in the experiment."""
    k = 1
    while find_run(uri, recorded.job.tracking.experiment, f"{recorded.name}-rerun-{k}"):
        k += 1
    return f"{recorded.name}-rerun-{k}"


def rerun(uri: str, run_id: str, force: bool = False) -> tuple[RecordedRun, TrainOutcome]:
    """Train the recorded run again under a new name; refuses a changed commit, data or
    package versions."""
    recorded = recorded_run(uri, run_id)
    found = differences(recorded)
    if found and not force:
        raise RerunError(
            f"run {run_id} ({recorded.name}) cannot be repeated as recorded: "
            + "; ".join(found)
            + " (--force reruns it anyway)"
        )
    for line in found:
        print(f"warning: {line}")
    tracking = replace(
        recorded.job.tracking, run_name=rerun_name(uri, recorded), resume="never", tracking_uri=uri
    )
    job = replace(recorded.job, tracking=tracking)
    teacher = recorded.teacher_checkpoint if job.needs_teacher_checkpoint(recorded.mode) else None
    tags = {"sffb.rerun_of": run_id}
    if teacher:
        tags["sffb.teacher_checkpoint"] = teacher
    return recorded, run_training(job, recorded.mode, teacher, extra_tags=tags)


def epoch_metrics(uri: str, run_id: str) -> dict[str, list[float]]:
    client = MlflowClient(uri)
    return {
        name: [
            m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
        ]
        for name in COMPARED
    }


def comparison_table(uri: str, old_id: str, new_id: str) -> str:
    """Per epoch and metric: the original, the rerun and their difference."""
    old, new = epoch_metrics(uri, old_id), epoch_metrics(uri, new_id)
    lines = ["| metric | epoch | original | rerun | difference |", "|---|---:|---:|---:|---:|"]
    for name in COMPARED:
        for epoch, (a, b) in enumerate(zip(old[name], new[name], strict=False)):
            lines.append(f"| {name} | {epoch} | {a:.6f} | {b:.6f} | {b - a:+.2e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="the MLflow run id of a finished training run")
    parser.add_argument(
        "--force", action="store_true", help="rerun despite changed code, data or packages"
    )
    parser.add_argument("--tracking-uri", default="", help="default: as every job finds it")
    args = parser.parse_args(argv)
    uri = tracking_uri(args.tracking_uri)
    try:
        recorded, outcome = rerun(uri, args.run_id, args.force)
    except (RerunError, *USER_ERRORS) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"rerun of {recorded.name} ({recorded.run_id}): {outcome.run_name}")
    print(comparison_table(uri, recorded.run_id, outcome.mlflow_run_id))


if __name__ == "__main__":
    main(sys.argv[1:])
