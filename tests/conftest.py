"""Shared fixtures: one local Ray per test session, and a small synthetic FF++ dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_prep.synthetic import generate
from tests.helpers import TEST_SYNTHETIC, small_prepare_config

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
