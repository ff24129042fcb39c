"""``model.init``: how a job starts its weights, and the student that starts as its teacher."""

from __future__ import annotations

import json

import pytest
import torch

from rayjobs.lib.checkpoints import check_teacher_init, initial_model, load_model, save_state
from rayjobs.lib.config import load_job_config

TINY = ["model.backbone=test_resnet", "model.image_size=64"]


def job(*overrides: str):
    return load_job_config("cpu-demo", overrides=[*TINY, *overrides])


@pytest.fixture()
def teacher_checkpoint(tmp_path) -> str:
    """A teacher with its own (random) weights, saved as training saves it."""
    teacher_job = job()
    torch.manual_seed(1)
    model = initial_model(teacher_job, "teacher", None)
    save_state(tmp_path, model=model.state_dict(), epoch=0, history=[], config=teacher_job)
    return str(tmp_path)


def test_teacher_init_starts_the_student_with_exactly_the_teachers_weights(teacher_checkpoint):
    student_job = job("model.init=teacher")
    check_teacher_init(student_job, "student", teacher_checkpoint)
    torch.manual_seed(2)  # another seed: a randomly initialised student would differ
    student = initial_model(student_job, "student", teacher_checkpoint).state_dict()
    teacher = torch.load(f"{teacher_checkpoint}/state.pt", weights_only=True)["model"]
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[k], teacher[k]) for k in teacher)
    random_student = initial_model(job("model.init=auto"), "student", None).state_dict()
    assert not all(torch.equal(random_student[k], teacher[k]) for k in teacher)


def test_teacher_init_with_another_architecture_is_refused_naming_the_keys(teacher_checkpoint):
    student_job = job("model.init=teacher", "model.image_size=96", "model.fusion=concat")
    with pytest.raises(ValueError) as error:
        check_teacher_init(student_job, "student", teacher_checkpoint)
    message = str(error.value)
    assert "model.image_size: teacher 64, student 96" in message
    assert "model.fusion: teacher 'sk', student 'concat'" in message
    assert teacher_checkpoint in message


def test_only_a_student_starts_from_its_teacher(teacher_checkpoint):
    with pytest.raises(ValueError, match="only a student"):
        check_teacher_init(job("model.init=teacher"), "teacher", teacher_checkpoint)


def test_a_student_from_its_teacher_needs_the_teacher_even_without_distillation():
    fine_tuned = job("model.init=teacher", "loss.knowledge=none")
    assert not fine_tuned.uses_teacher("student")
    assert fine_tuned.needs_teacher_checkpoint("student")
    assert not job("model.init=auto", "loss.knowledge=none").needs_teacher_checkpoint("student")


def test_sffb_alone_takes_nothing_from_the_teacher():
    """The cpu-demo student starts as its teacher; SFFB alone, its baseline, must not."""
    student = job()
    assert student.model.init == "teacher" and student.uses_teacher("student")
    alone = student.sffb_alone()
    assert (alone.loss.knowledge, alone.model.init) == ("none", "auto")
    assert not alone.needs_teacher_checkpoint("student")
    assert (alone.data, alone.optim, alone.model.fusion) == (
        student.data, student.optim, student.model.fusion
    )  # fmt: skip
    # An ImageNet start is the paper's SFFB alone too: kept.
    pretrained = job("model.init=pretrained", "model.pretrained_path=/w.pth").sffb_alone()
    assert pretrained.model.init == "pretrained"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.init=imagenet"], "model.init: unknown 'imagenet'"),
        (["model.init=pretrained"], "model.init pretrained needs model.pretrained_path"),
        (
            ["model.init=random", "model.pretrained_path=/w.pth"],
            "contradicts model.pretrained_path",
        ),
    ],
)
def test_inconsistent_init_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        job(*overrides)


def test_checkpoints_record_the_input_normalisation_they_trained_with(teacher_checkpoint):
    """Resolved from timm when saved and used as recorded when loaded, so a later change of
    timm's pretrained config cannot silently shift a trained model's inputs."""
    path = f"{teacher_checkpoint}/state.pt"
    state = torch.load(path, weights_only=True)
    resolved = [list(values) for values in job().model.normalisation()]
    assert json.loads(state["input_normalisation"]) == resolved
    recorded = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
    torch.save(state | {"input_normalisation": json.dumps(recorded)}, path)
    model = load_model(teacher_checkpoint)
    assert model.input_mean.flatten().tolist() == pytest.approx(recorded[0])
    assert model.input_std.flatten().tolist() == pytest.approx(recorded[1])
