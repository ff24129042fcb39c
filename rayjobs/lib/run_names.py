"""Run names that say which configuration a run trained, and resuming only that configuration.

Relaunching a run name resumes the run. That is only right when the relaunch trains the same
thing: a default name therefore ends in a short hash of the run's *identity* (every setting that
changes what it trains), and resuming a run whose logged identity differs is refused, naming the
keys. Left out of the identity: how and where a job runs (``scaling``, ``tracking``); how long
(``optim.epochs``, ``optim.teacher_epochs``: relaunching with more epochs continues a run); the
rate for a student started from its teacher (``optim.teacher_start_lr``) in every run that does
not start so, and the teacher's schedule (``optim.teacher_schedule``) in every run that does not
read the teacher; for a teacher, the student's options (the loss, the student's level), so that
every distillation variant shares one teacher; for SFFB alone (``loss.knowledge: none``), the
distillation weights and the teacher's level, which it never uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace

from rayjobs.lib.config import JobConfig
from rayjobs.lib.configtree import flatten, to_dict

#: How and where a job runs, never what it trains; and how long: relaunching a finished run
#: with more ``optim.epochs`` (a teacher: ``optim.teacher_epochs``) continues it.
NOT_IDENTITY = ("scaling.", "tracking.", "optim.epochs", "optim.teacher_epochs")
#: Loss keys that still matter without distillation: the switch, the hard term's weight and
#: its balancing (a running-magnitude divisor changes the step size).
LOSS_WITHOUT_TEACHER = ("loss.knowledge", "loss.lambda3", "loss.balance", "loss.balance_momentum")


def teacher_job(job: JobConfig) -> JobConfig:
    """The job as the teacher's run sees it: a student's ``model.init: teacher`` means nothing
    to the teacher itself, which then starts as ``auto`` does; it trains for
    ``optim.teacher_epochs`` on ``optim.teacher_schedule`` when those are set."""
    if job.model.init == "teacher":
        job = replace(job, model=replace(job.model, init="auto"))
    if job.optim.teacher_epochs is not None:
        job = replace(job, optim=replace(job.optim, epochs=job.optim.teacher_epochs))
    if job.optim.teacher_schedule is not None:
        # one identity for one schedule, however it was set
        optim = replace(job.optim, schedule=job.optim.teacher_schedule, teacher_schedule=None)
        job = replace(job, optim=optim)
    return job


def _identifies(key: str, job: JobConfig, mode: str) -> bool:
    if key.startswith(NOT_IDENTITY):
        return False
    if key == "optim.teacher_start_lr":
        return job.starts_from_teacher(mode)
    if key == "optim.teacher_schedule":  # a teacher's run carries it as optim.schedule
        return job.needs_teacher_checkpoint(mode)
    if mode == "teacher":
        return not key.startswith("loss.") and key != "data.student_level"
    if not job.uses_teacher(mode):
        if key.startswith("loss."):
            return key in LOSS_WITHOUT_TEACHER
        return key != "data.teacher_level"
    return True


def run_identity(job: JobConfig, mode: str) -> dict[str, str]:
    """The settings that decide what the run trains, flattened to MLflow's param strings."""
    if mode == "teacher":
        job = teacher_job(job)
    flat = flatten(to_dict(job))
    return {k: _as_param(v) for k, v in flat.items() if _identifies(k, job, mode)}


def _as_param(value) -> str:
    return str(value)[:6000]  # as MLflow stores a param (rayjobs.lib.tracking.find_or_create_run)


def config_hash(job: JobConfig, mode: str) -> str:
    """Eight hex digits of the run identity's SHA-256."""
    text = json.dumps(run_identity(job, mode), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_run_name(job: JobConfig, mode: str) -> str:
    """``student-legacy_xception-sk-Deepfakes-c40-1a2b3c4d``: readable parts, then the hash."""
    methods = "-".join(job.data.methods) or "all"
    level = job.input_level(mode)
    parts = (mode, job.model.backbone, job.model.fusion, methods, level, config_hash(job, mode))
    return "-".join(parts)


def identity_differences(job: JobConfig, mode: str, logged_params: Mapping[str, str]) -> list[str]:
    """``key: logged -> now`` for every identity key the existing run logged differently.

    Keys the existing run did not log (settings added since) are not counted.
    """
    wanted = run_identity(job, mode)
    return [
        f"{key}: {logged_params[key]} -> {value}"
        for key, value in sorted(wanted.items())
        if key in logged_params and logged_params[key] != value
    ]


def check_resume(
    job: JobConfig, mode: str, run_name: str, logged_params: Mapping[str, str] | None
) -> None:
    """Apply ``tracking.resume`` to the run named ``run_name`` (``None``: no such run yet).

    ``auto``: resume a run of the same identity, refuse one of another; ``never``: refuse any
    existing run; ``must``: refuse when there is nothing to resume.
    """
    policy = job.tracking.resume  # one of RESUME_MODES: JobConfig refuses any other
    if logged_params is None:
        if policy == "must":
            raise ValueError(f"tracking.resume must: there is no run {run_name!r} to resume")
        return
    if policy == "never":
        raise ValueError(
            f"run {run_name!r} exists and tracking.resume is never: choose another "
            "tracking.run_name, or resume it with tracking.resume=auto"
        )
    differences = identity_differences(job, mode, logged_params)
    if differences:
        raise ValueError(
            f"run {run_name!r} exists with another configuration, so relaunching it would not "
            f"resume this job ({'; '.join(differences)}); leave tracking.run_name empty for a "
            "name of its own, or choose another"
        )
