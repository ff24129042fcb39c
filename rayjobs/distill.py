"""Distil a frozen raw-frame teacher into a student SFFB on compressed crops: the main job.

    python rayjobs/distill.py                       # the whole demo on the embedded default
    ray job submit --working-dir . -- python rayjobs/distill.py --preset paper --set ...

With no arguments: a local Ray cluster, the synthetic FF++ dataset and its shards (made if
absent), the teacher (pretrained if absent), the student distilled, the test split evaluated
once (beside the teacher applied to the same compressed frames and, when it has been trained,
SFFB alone: ``--sffb-alone``) and the report printed; every run lands in MLflow
(SQLite under $SFFB_HOME by default).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from data_prep import storage
from data_prep.defaults import embedded_strengths
from rayjobs.evaluate import evaluate
from rayjobs.lib.checkpoints import has_checkpoint
from rayjobs.lib.config import JobConfig, add_config_arguments, config_from_args
from rayjobs.lib.launch import (
    USER_ERRORS,
    best_checkpoint_path,
    default_run_name,
    pretrain_teacher,
    resolve_data,
    run_training,
    storage_path,
)
from rayjobs.lib.tracking import find_run, tracking_uri


def ensure_teacher(job: JobConfig, checkpoint: str | None, uri: str) -> tuple[str, dict[str, str]]:
    """The teacher's checkpoint (pretrained now if absent) and the tags that link its run."""
    teacher_name = job.tracking.teacher_run or default_run_name(job, "teacher")
    if checkpoint is None:
        checkpoint = best_checkpoint_path(storage_path(job), teacher_name)
        if not has_checkpoint(checkpoint):
            print(f"no teacher at {checkpoint}: pretraining {teacher_name}")
            pretrain_teacher(job, teacher_name)
    checkpoint = storage.normalise(checkpoint)
    links = {"sffb.teacher_checkpoint": checkpoint}
    teacher_run_id = find_run(uri, job.tracking.experiment, teacher_name)
    if teacher_run_id is not None:
        links.update({"sffb.teacher_run_id": teacher_run_id, "mlflow.parentRunId": teacher_run_id})
    return checkpoint, links


def sffb_alone_checkpoint(job: JobConfig) -> str | None:
    """The best checkpoint of SFFB alone (``JobConfig.sffb_alone``: nothing from the teacher)
    trained like this student, if one exists under its default name."""
    alone = job.sffb_alone()
    alone = replace(alone, tracking=replace(alone.tracking, run_name=""))
    checkpoint = best_checkpoint_path(storage_path(job), default_run_name(alone, "student"))
    return checkpoint if has_checkpoint(checkpoint) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument(
        "--teacher-checkpoint", help="folder (path or URI) with the teacher's state.pt"
    )
    parser.add_argument(
        "--skip-test", action="store_true", help="do not evaluate on the test split"
    )
    parser.add_argument(
        "--sffb-alone", action="store_true",
        help="train SFFB alone instead: no knowledge and no weights from the teacher (the "
        "baseline a distilled student must beat)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        job = resolve_data(config_from_args(args))
        if args.sffb_alone:
            job = job.sffb_alone()
        uri = tracking_uri(job.tracking.tracking_uri)
        teacher_checkpoint, links = None, {}
        # Not for SFFB alone: a student without KD reads the teacher only to start from it.
        if job.needs_teacher_checkpoint("student"):
            teacher_checkpoint, links = ensure_teacher(job, args.teacher_checkpoint, uri)
        student = run_training(job, "student", teacher_checkpoint, extra_tags=links)
        print(f"student run {student.run_name} (MLflow {student.mlflow_run_id})")
        print(f"best checkpoint: {student.best_checkpoint}")
        if not args.skip_test:
            # The teacher on the student's compressed frames and SFFB alone, scored beside it:
            # distillation pays off only if the student beats both.
            baselines = {"teacher": teacher_checkpoint} if teacher_checkpoint else {}
            if job.uses_teacher("student"):
                alone = sffb_alone_checkpoint(job)
                if alone is None:
                    print("no SFFB-alone run to compare with; train one by adding "
                          "--sffb-alone to this command")  # fmt: skip
                else:
                    baselines["sffb-alone"] = alone
            evaluate(
                student.best_checkpoint,
                job.data.shards,
                (job.data.student_level,),
                job.data.methods,
                run_id=student.mlflow_run_id,
                uri=uri,
                baselines=baselines,
                model="student",
                strengths=embedded_strengths(job.data.shards),
            )
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
