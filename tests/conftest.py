"""Shared fixtures: one local Ray per test session, and a small synthetic FF++ dataset."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from data_prep.synthetic import generate
from tests.helpers import STUDENT_NAME, TEST_SYNTHETIC, small_prepare_config, tiny_job

# Ray Train, set for the suite's short runs on one machine (every job a test starts inherits
# it): the controller polls its workers every 0.5 s instead of 2 s (a finished run is noticed
# sooner), and no spot-preemption watcher actor is started with each run (one process fewer).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

_dashboard: dict[str, str] = {}  # the session cluster's dashboard address, set by ray_session


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray cluster shared by the whole session (starting one costs seconds).

    Four logical CPUs on a two-core machine, so tasks and actors never wait on each other; the
    dashboard is on, for the ``ray job submit`` test.
    """
    import ray

    if not ray.is_initialized():
        context = ray.init(num_cpus=4, include_dashboard=True, log_to_driver=False)
        _dashboard["url"] = context.dashboard_url
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def dashboard_url(ray_session) -> str:
    """The session cluster's dashboard, where the job CLI submits."""
    return f"http://{_dashboard['url']}"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synthetic") / "ffpp", TEST_SYNTHETIC)


@pytest.fixture(scope="session")
def prepared(ray_session, synthetic_root, tmp_path_factory) -> tuple[Path, dict]:
    """The synthetic dataset prepared once: (output folder, manifest)."""
    from data_prep.prepare import prepare

    output = tmp_path_factory.mktemp("shards") / "reference"
    return output, prepare(small_prepare_config(synthetic_root, output), progress=False)


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Path:
    """The store of the tiny training runs (``tests.helpers.tiny_job``): runs and MLflow."""
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="session")
def tiny_teacher(prepared, tiny_home, ray_session) -> tuple:
    """A tiny teacher, pretrained as ``distill.py --set tracking.run_name=my-student``
    pretrains it on a fresh store (``ensure_teacher``): (the teacher's job, its outcome).
    Trained once per session: the training tests and the sweep test start from it."""
    from rayjobs.distill import ensure_teacher
    from rayjobs.lib.launch import TrainOutcome, default_run_name

    shards, _ = prepared
    student = tiny_job(shards, tiny_home, epochs=2, run_name=STUDENT_NAME)
    checkpoint, links = ensure_teacher(student, None, student.tracking.tracking_uri)
    name = default_run_name(student, "teacher")
    job = replace(student, tracking=replace(student.tracking, run_name=name))
    return job, TrainOutcome(name, links["sffb.teacher_run_id"], checkpoint, metrics={})
