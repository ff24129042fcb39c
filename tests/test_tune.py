"""A tiny real sweep (Tune, ASHA, Optuna, MLflow), its driver killed mid-trial and relaunched.

The sweep is ``tune_spaces/distillation_options.yaml`` itself, shrunk to two tiny trials: its
options (student from the teacher, balancing, warm-ups, schedules) must all run in a trial.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from rayjobs.lib.launch import best_checkpoint_path
from rayjobs.tune import sweep

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "tune_spaces" / "distillation_options.yaml"
TRIALS = 2
EPOCHS = 2  # ASHA's one rung sits after the first epoch


def _space(tmp_path: Path, shards: Path) -> tuple[Path, dict]:
    """The shipped space with a tiny model, data and store; two trials, one at a time."""
    space = yaml.safe_load(SPACE.read_text())
    space["fixed"].update({
        "data.shards": str(shards),
        "data.methods": [],
        "model.backbone": "test_resnet",
        "model.image_size": 64,
        "optim.epochs": EPOCHS,
        "optim.teacher_epochs": EPOCHS,  # the teacher the session trained: its run name
        "optim.teacher_schedule": None,
        "tracking.storage_path": str(tmp_path / "runs"),
        "tracking.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.experiment": "sweep-test",
    })  # fmt: skip
    space["tune"].update({"num_samples": TRIALS, "max_concurrent_trials": 1})
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path, space["search"]


def _sampled_from(search: dict, params: dict[str, str]) -> bool:
    """Every searched key of a child run holds a value its distribution can produce."""
    for key, distribution in search.items():
        (kind, arg), value = next(iter(distribution.items())), yaml.safe_load(params[key])
        if kind == "choice" and value not in arg:
            return False
        if kind == "loguniform" and not arg[0] <= value <= arg[1]:
            return False
    return True


def _runs(client: MlflowClient) -> list[Run]:
    experiment = client.get_experiment_by_name("sweep-test")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _children(runs: list[Run]) -> list[Run]:
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _epochs(client: MlflowClient, run: Run) -> list:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "epoch"))


def _kill_when_second_trial_has_an_epoch(driver, client: MlflowClient, log: Path) -> float:
    """SIGKILL the sweep driver once a second trial (one at a time) has logged an epoch."""
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline:
        assert driver.poll() is None, f"driver exited early:\n{log.read_text()[-3000:]}"
        children = sorted(_children(_runs(client)), key=lambda c: c.info.start_time)
        if len(children) >= 2 and _epochs(client, children[-1]):
            killed_at = time.time()
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)
            return killed_at
        time.sleep(0.5)
    driver.kill()
    raise AssertionError(f"sweep never reached its second trial:\n{log.read_text()[-3000:]}")


def test_sweep_killed_and_relaunched_resumes_without_rerunning(
    prepared, tiny_teacher, tmp_path, ray_session, capsys
):
    shards, _ = prepared
    space, search = _space(tmp_path, shards)
    # The sweep's teacher is the session's (the same configuration, so the same name), copied
    # into the sweep's store as a user would copy a teacher trained elsewhere: not trained again.
    _, teacher = tiny_teacher
    shutil.copytree(
        teacher.best_checkpoint, best_checkpoint_path(str(tmp_path / "runs"), teacher.run_name)
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    # 1. The driver, as a user starts it, on the session's cluster; killed in trial 2.
    log = tmp_path / "driver.log"
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    command = [sys.executable, "rayjobs/tune.py", "--space", str(space), "--name", "resumed"]
    with log.open("w") as sink:
        driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=sink)
    killed_at = _kill_when_second_trial_has_an_epoch(driver, client, log)
    started = sorted(_children(_runs(client)), key=lambda c: c.info.start_time)
    ended_before = {c.info.run_name for c in started[:-1]}  # one trial at a time

    # 2. The user edits the space file meanwhile; the relaunch must keep the original space.
    edited = yaml.safe_load(space.read_text())
    edited["fixed"]["optim.epochs"] = EPOCHS + 1
    space.write_text(yaml.safe_dump(edited))

    # 3. Relaunched with the same name: Tuner.restore finishes the sweep.
    summary = sweep(space, "resumed")
    out = capsys.readouterr().out
    assert "changed since sweep resumed started" in out
    assert "pretraining" not in out and "pretraining" not in log.read_text()  # the copied one

    runs = _runs(client)
    parents = [r for r in runs if r.info.run_name == "resumed"]
    assert len(parents) == 1, "the relaunch duplicated the sweep's parent run"
    children = _children(runs)
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert len({c.info.run_name for c in children}) == len(children) == TRIALS
    assert all(_sampled_from(search, c.data.params) for c in children)

    for child in children:
        epochs = _epochs(client, child)
        assert epochs == list(range(len(epochs))), f"{child.info.run_name}: epochs {epochs}"
        assert len(epochs) <= EPOCHS  # the pinned space, not the edited file
        reason = child.data.tags["sffb.stop_reason"]
        assert reason == ("completed" if len(epochs) == EPOCHS else "stopped by ASHA"), reason
        history = client.get_metric_history(child.info.run_id, "val_frame_auc")
        assert len(history) == len(epochs)  # every epoch logged exactly once
        if child.info.run_name in ended_before:  # not rerun after the relaunch
            assert max(m.timestamp for m in history) < killed_at * 1000

        assert Path(child.data.tags["sffb.best_checkpoint"], "state.pt").is_file()
        assert child.info.status == ("FINISHED" if reason == "completed" else "KILLED")

    assert parents[0].data.tags["sffb.best_trial"] == summary["best_trial"]
    # Every trial's best model is registered; the sweep's best one is the champion.
    best = next(c for c in children if c.data.tags["sffb.trial_id"] == summary["best_trial"])
    champion = client.get_model_version_by_alias("sffb-student", "champion")
    assert champion.run_id == best.info.run_id
    version = str(champion.version)  # an int from the alias lookup, a string in tags
    assert version == summary["champion_version"] == best.data.tags["sffb.model_version"]
    saved = json.loads((tmp_path / "runs" / "sweeps" / "resumed-best.json").read_text())
    assert saved["best_config"]["model.init"] in search["model.init"]["choice"]
    assert Path(saved["best_checkpoint"], "state.pt").is_file()
