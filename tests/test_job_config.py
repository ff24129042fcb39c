"""Job configuration: presets, YAML, --set overrides, and clear errors for bad values."""

from __future__ import annotations

import pytest

from rayjobs.lib.config import JobConfig, load_job_config
from rayjobs.lib.configtree import ConfigError, flatten, from_dict, parse_override, to_dict


def test_presets():
    paper = load_job_config("paper")
    assert (paper.model.image_size, paper.data.batch_size, paper.optim.lr) == (256, 32, 2e-4)
    assert (paper.loss.lambda1, paper.loss.lambda2, paper.loss.lambda3) == (2.0, 100.0, 1.0)
    assert paper.model.backbone == "legacy_xception" and paper.scaling.use_gpu == "yes"
    demo = load_job_config("cpu-demo")
    assert demo.model.backbone == "legacy_xception"  # same architecture, smaller crops
    assert demo.model.image_size == 96 and demo.scaling.cpus_per_worker < 1


def test_yaml_then_overrides(tmp_path):
    user = tmp_path / "job.yaml"
    user.write_text(
        "loss:\n  lambda2: 10\nmodel:\n  fusion: chunked\n  fusion_options:\n    grid: [3, 3]\n"
    )
    job = load_job_config(
        "cpu-demo", user, ["loss.lambda2=50", "data.methods=[Deepfakes, FaceSwap]"]
    )
    assert job.loss.lambda2 == 50.0 and isinstance(job.loss.lambda2, float)
    assert job.model.fusion == "chunked" and job.model.fusion_options.grid == (3, 3)
    assert job.data.methods == ("Deepfakes", "FaceSwap")
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}


def test_round_trip_and_flat_params():
    job = load_job_config("paper")
    assert from_dict(JobConfig, to_dict(job)) == job
    flat = flatten(to_dict(job))
    assert flat["loss.lambda2"] == 100.0 and flat["model.fusion_options.grid"] == [2, 2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.lambda9=1", "unknown option loss.lambda9"),
        ("optim.epochs=many", "optim.epochs: expected int"),
        ("model.fusion_options.grid=[1, 2, 3]", "model.fusion_options.grid: expected 2 values"),
        ("loss.knowledge=attention", "loss: unknown knowledge 'attention'"),
        ("loss.soft_scale=hinton", "loss: unknown soft_scale 'hinton'"),
        ("loss.feature_norm=l1", "loss: unknown feature_norm 'l1'"),
        ("loss.balance=adaptive", "loss: unknown balance 'adaptive'"),
        ("loss.balance_momentum=1.0", r"loss: balance momentum must be in \[0, 1\)"),
        ("loss.kd_warmup_epochs=-1", "loss: kd_warmup_epochs must be >= 0"),
        ("optim.schedule=onecycle", "optim.schedule: unknown 'onecycle'"),
        ("optim.warmup_epochs=2", r"optim.warmup_epochs 2 must be in \[0, optim.epochs\)"),
        ("model.init=imagenet", "model.init: unknown 'imagenet'"),
        ("data.batch_size=7", "does not split over 2 workers"),
        ("nonsense", "expected key.path=value"),
    ],
)
def test_bad_values_name_their_key(override, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        load_job_config("cpu-demo", overrides=[override])


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"unknown preset 'fast'.*cpu-demo, paper"):
        load_job_config("fast")


def test_sync_batchnorm_only_for_multi_gpu_ddp():
    from dataclasses import replace

    import torch

    from rayjobs.lib.train_loop import with_sync_batchnorm
    from sffb import SFFB, SFFBConfig

    job = load_job_config("cpu-demo")
    network = SFFB(SFFBConfig(backbone="test_resnet", image_size=32))
    plain_keys = set(network.state_dict())
    cuda = torch.device("cuda")  # the conversion needs no GPU; only the forward pass would
    assert with_sync_batchnorm(network, job, 2, torch.device("cpu")) is network
    assert with_sync_batchnorm(network, job, 1, cuda) is network
    off = replace(job, scaling=replace(job.scaling, sync_batchnorm=False))
    assert with_sync_batchnorm(network, off, 2, cuda) is network
    synced = with_sync_batchnorm(network, job, 2, cuda)
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert set(synced.state_dict()) == plain_keys  # checkpoints load into a plain SFFB


def test_sffb_alone_needs_no_teacher_level():
    job = load_job_config("cpu-demo")
    assert job.uses_teacher("student") and not job.uses_teacher("teacher")
    assert (job.input_level("student"), job.input_level("teacher")) == ("c40", "raw")
    assert job.training_levels("student") == ("raw", "c40")
    assert job.training_levels("teacher") == ("raw",)
    alone = job.sffb_alone()
    assert not alone.uses_teacher("student")
    assert alone.training_levels("student") == ("c40",)


def test_a_student_started_from_its_teacher_is_fine_tuned_at_its_own_rate():
    job = load_job_config("cpu-demo")  # model.init: teacher
    assert job.learning_rate("student") == job.optim.teacher_start_lr == 1e-4
    assert job.learning_rate("teacher") == job.optim.lr == 1e-3
    assert job.sffb_alone().learning_rate("student") == 1e-3  # random start: trained from scratch
    unset = load_job_config("cpu-demo", overrides=["optim.teacher_start_lr=null"])
    assert unset.learning_rate("student") == 1e-3
    assert load_job_config("paper").learning_rate("student") == 2e-4
    with pytest.raises(ValueError, match="teacher_start_lr must be >= 0"):
        load_job_config("cpu-demo", overrides=["optim.teacher_start_lr=-1e-4"])
