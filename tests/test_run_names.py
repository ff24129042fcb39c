"""Run names carry the configuration's identity; relaunching a name resumes only that identity."""

from __future__ import annotations

import pytest

from rayjobs.lib.config import load_job_config
from rayjobs.lib.configtree import flatten, to_dict
from rayjobs.lib.run_names import (
    check_resume,
    default_run_name,
    identity_differences,
    run_identity,
    teacher_job,
)


def job(*overrides: str):
    return load_job_config("cpu-demo", overrides=["data.shards=/data/shards", *overrides])


def logged(job_config) -> dict[str, str]:
    """The params a run of ``job_config`` logged (as rayjobs.lib.launch logs them)."""
    return {k: str(v) for k, v in flatten(to_dict(job_config)).items()}


def test_names_tell_configurations_apart():
    base = default_run_name(job(), "student")
    assert base.startswith("student-legacy_xception-sk-Deepfakes-c40-")
    for change in ("loss.knowledge=none", "loss.lambda2=10", "optim.lr=5e-4", "seed=1",
                   "model.pretrained_path=/w/xception.pth", "data.shards=/other"):  # fmt: skip
        assert default_run_name(job(change), "student") != base, change
    for same in ("scaling.num_workers=1", "tracking.experiment=other", "optim.epochs=5"):
        assert default_run_name(job(same), "student") == base, same


def test_every_distillation_variant_shares_one_teacher():
    teacher = default_run_name(job(), "teacher")
    assert teacher.startswith("teacher-legacy_xception-sk-Deepfakes-raw-")
    for variant in ("loss.lambda2=1", "loss.balance=running", "loss.knowledge=none",
                    "data.student_level=c23", "model.init=teacher"):  # fmt: skip
        assert default_run_name(job(variant), "teacher") == teacher, variant
    assert default_run_name(job("optim.lr=5e-4"), "teacher") != teacher
    assert default_run_name(job("optim.teacher_start_lr=5e-4"), "teacher") == teacher


def test_the_teacher_start_rate_names_only_students_that_start_from_the_teacher():
    rate = "optim.teacher_start_lr=5e-4"
    assert default_run_name(job(rate), "student") != default_run_name(job(), "student")
    alone = job().sffb_alone()  # a random start: the rate is never used
    assert default_run_name(job(rate).sffb_alone(), "student") == default_run_name(alone, "student")


def test_the_teacher_epochs_set_only_the_teachers_length_not_its_name():
    """``pretrain_teacher.py`` and ``distill.py`` (training a missing teacher) read the same key,
    so both train and name the same teacher; the student keeps ``optim.epochs``."""
    longer = job("optim.teacher_epochs=6")
    assert teacher_job(longer).optim.epochs == 6 and longer.optim.epochs == 2
    assert teacher_job(job()).optim.epochs == 6  # cpu-demo's teacher: 6 epochs, its student 2
    unset = job("optim.teacher_epochs=null")
    assert teacher_job(unset).optim.epochs == 2  # the teacher trains optim.epochs
    assert default_run_name(longer, "teacher") == default_run_name(unset, "teacher")
    assert default_run_name(longer, "student") == default_run_name(unset, "student")
    with pytest.raises(ValueError, match="teacher_epochs must be >= 1"):
        job("optim.teacher_epochs=0")
    with pytest.raises(ValueError, match="warmup_epochs 2"):
        job("optim.epochs=5", "optim.teacher_epochs=2", "optim.warmup_epochs=2")


def test_the_teacher_schedule_sets_only_the_teachers_rate():
    """cpu-demo's teacher decays its rate (cosine) while its student keeps a constant one; the
    student's own schedule (a sweep searches it) no longer names another teacher."""
    demo = job()
    assert teacher_job(demo).optim.schedule == "cosine" and demo.optim.schedule == "constant"
    teacher = default_run_name(demo, "teacher")
    assert default_run_name(job("optim.schedule=cosine"), "teacher") == teacher
    assert default_run_name(job("optim.teacher_schedule=constant"), "teacher") != teacher
    # One schedule, one identity, whichever key set it.
    same = job("optim.teacher_schedule=null", "optim.schedule=cosine")
    assert default_run_name(same, "teacher") == teacher
    # Students that read the teacher are named after it; SFFB alone never reads it.
    other = job("optim.teacher_schedule=constant")
    assert default_run_name(other, "student") != default_run_name(demo, "student")
    assert default_run_name(other.sffb_alone(), "student") == default_run_name(
        demo.sffb_alone(), "student"
    )
    # Unset, a teacher is named as before the key existed: its identity does not hold it.
    assert "optim.teacher_schedule" not in run_identity(
        job("optim.teacher_schedule=null"), "teacher"
    )
    with pytest.raises(ValueError, match=r"optim\.teacher_schedule: unknown 'step'"):
        job("optim.teacher_schedule=step")


def test_sffb_alone_ignores_the_distillation_settings_it_never_uses():
    alone = default_run_name(job().sffb_alone(), "student")
    assert default_run_name(job("loss.lambda2=1").sffb_alone(), "student") == alone
    assert default_run_name(job("loss.lambda3=2").sffb_alone(), "student") != alone
    assert default_run_name(job("loss.balance=none").sffb_alone(), "student") != alone
    # Its start is part of it: SFFB alone from the teacher's weights is another run.
    assert default_run_name(job("loss.knowledge=none"), "student") != alone


def test_resume_refuses_another_configuration_naming_the_keys():
    kd = job()
    check_resume(kd, "student", "x", logged(kd))  # same configuration: resumes
    check_resume(kd, "student", "x", None)  # nothing to resume: a new run
    relaunch = job("loss.knowledge=none", "optim.lr=5e-4")
    with pytest.raises(ValueError, match="another configuration") as refused:
        check_resume(relaunch, "student", "x", logged(kd))
    assert "loss.knowledge: maps+logits -> none" in str(refused.value)
    assert "optim.lr: 0.001 -> 0.0005" in str(refused.value)
    # A teacher run is resumed by any student job whose teacher it is.
    check_resume(job("loss.lambda2=1"), "teacher", "t", logged(teacher_job(kd)))
    # Settings logged by none of an old run's params are not differences.
    old = {k: v for k, v in logged(kd).items() if k != "loss.balance"}
    assert identity_differences(kd, "student", old) == []


def test_resume_policies():
    never, must = job("tracking.resume=never"), job("tracking.resume=must")
    with pytest.raises(ValueError, match=r"exists and tracking\.resume is never"):
        check_resume(never, "student", "x", logged(never))
    check_resume(never, "student", "x", None)
    with pytest.raises(ValueError, match="no run 'x' to resume"):
        check_resume(must, "student", "x", None)
    check_resume(must, "student", "x", logged(must))
    with pytest.raises(ValueError, match=r"tracking\.resume: unknown 'sometimes'"):
        job("tracking.resume=sometimes")
