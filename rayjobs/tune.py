"""Ray Tune sweeps over the distillation: ``python rayjobs/tune.py --space tune_spaces/X.yaml``.

Each trial is a Tune function that builds and fits its own TorchTrainer (Ray 2.60 style, never
``Tuner(trainer)``) and passes ``TuneReportCallback``, so ASHA sees every epoch's validation AUC.
The sweep is one MLflow parent run; each trial is a child run (``mlflow.parentRunId``) holding
its sampled configuration, per-epoch metrics and why it ended (completed, or stopped by ASHA).
Teachers are pretrained once per backbone before the sweep starts. Relaunching the same sweep
name after its driver died resumes it (``Tuner.restore``): finished trials are not rerun.

With no arguments: ``tune_spaces/default.yaml`` on the embedded default at the cpu-demo preset.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from data_prep import storage
from rayjobs.lib.checkpoints import has_checkpoint
from rayjobs.lib.config import JobConfig
from rayjobs.lib.configtree import flatten, to_dict
from rayjobs.lib.launch import (
    USER_ERRORS,
    best_checkpoint_path,
    cluster_preflight,
    default_run_name,
    ensure_ray,
    pretrain_teacher,
    publish_best,
    resolve_data,
    run_training,
    storage_path,
)
from rayjobs.lib.mlflow_model import crown_champion
from rayjobs.lib.search_space import SearchSpace, load_space
from rayjobs.lib.tracking import (
    BEST_CHECKPOINT_TAG,
    entry_point,
    find_or_create_run,
    set_tags,
    tracking_uri,
)

DEFAULT_SPACE = Path(__file__).resolve().parents[1] / "tune_spaces" / "default.yaml"


def ensure_teachers(space: SearchSpace, base: JobConfig) -> dict[str, str]:
    """Pretrain (if absent) one teacher per backbone the space can sample; backbone -> path.

    One teacher per backbone, with the preset's fusion: the knowledge (the pre-fusion maps M_s,
    M_f and the logits) does not depend on the student's fusion module. None when every trial
    trains SFFB alone (``loss.knowledge: none``) from scratch (no ``model.init: teacher``).
    """
    alone = space.values("loss.knowledge") == ["none"]
    if alone and "teacher" not in space.values("model.init"):
        return {}
    teachers = {}
    for backbone in space.values("model.backbone"):
        job = replace(base, model=replace(base.model, backbone=backbone))
        name = job.tracking.teacher_run or default_run_name(job, "teacher")
        path = best_checkpoint_path(storage_path(job), name)
        if not has_checkpoint(path):
            print(f"pretraining the {backbone} teacher for the sweep")
            pretrain_teacher(job, name)
        teachers[backbone] = path
    return teachers


def run_trial(params: dict[str, Any], settings: dict[str, Any]) -> None:
    """One trial: the sampled job, distilled from its backbone's teacher, reporting to Tune."""
    space = load_space(settings["space"])
    job = space.job(params)
    trial = tune.get_context().get_trial_id()
    job = replace(
        job,
        data=replace(job.data, shards=settings["shards"]),
        tracking=replace(
            job.tracking,
            run_name=f"{settings['sweep']}-{trial}",
            storage_path=settings["storage"],
            tracking_uri=settings["uri"],
            experiment=settings["experiment"],
        ),
    )
    tags = {
        "mlflow.parentRunId": settings["parent_run_id"],
        "sffb.sweep": settings["sweep"],
        "sffb.trial_id": trial,
        MLFLOW_SOURCE_NAME: settings["entry_point"],  # this process is a Ray worker
    }
    teacher = settings["teachers"].get(job.model.backbone)
    run_training(job, "student", teacher, extra_tags=tags, callbacks=(TuneReportCallback(),))


def scheduler_for(space: SearchSpace, epochs: int):
    options = space.tune
    if options.scheduler == "none":
        return FIFOScheduler()
    # "epochs_done" (1, 2, ...), not the 0-based "epoch": a rung after the first epoch, so ASHA
    # can stop a weak trial even in a two-epoch sweep.
    return ASHAScheduler(
        time_attr="epochs_done",
        max_t=epochs,
        grace_period=min(options.grace_period, epochs),
        reduction_factor=options.reduction_factor,
    )


def search_algorithm(space: SearchSpace):
    """Optuna's TPE sampler (``tune.search_alg: optuna``), else Tune's random/grid generator."""
    if space.tune.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=0)
    return None


def pinned_space(space_path: Path, folder: str, sweep_name: str, resuming: bool) -> str:
    """The sweep's own copy of its space file (on the sweep's storage), which every trial reads.

    Written when the sweep starts; a resumed sweep keeps the space it started with, even if the
    user's file changed since (it says so).
    """
    pinned = storage.join(folder, f"{sweep_name}-space.yaml")
    text = space_path.read_text()
    if resuming and storage.is_file(pinned):
        if storage.read_text(pinned) != text:
            print(f"note: {space_path} changed since sweep {sweep_name} started; resuming with "
                  f"its original space, {pinned}")  # fmt: skip
        return pinned
    storage.write_text(pinned, text)
    return pinned


def sweep(space_path: Path, sweep_name: str = "") -> dict[str, Any]:
    """Run (or resume) the sweep; return the best trial's summary (also saved as JSON)."""
    sweep_name = sweep_name or f"sweep-{Path(space_path).stem}"
    runs = storage_path(load_space(space_path).job({}))
    sweeps = storage.join(runs, "sweeps")
    sweep_dir = storage.join(sweeps, sweep_name)
    resuming = tune.Tuner.can_restore(sweep_dir)
    space_file = pinned_space(Path(space_path), sweeps, sweep_name, resuming)
    space = load_space(space_file)
    base = resolve_data(space.job({}))
    uri = tracking_uri(base.tracking.tracking_uri)
    ensure_ray()
    teachers = ensure_teachers(space, base)
    cluster_preflight(base, "student", teachers.get(base.model.backbone))
    params = {"space": str(Path(space_path).resolve()), **flatten(to_dict(base))}
    parent_run_id, _ = find_or_create_run(
        uri, base.tracking.experiment, sweep_name, params, {"sffb.mode": "sweep"}
    )
    settings = {
        "space": str(space_file),
        "sweep": sweep_name,
        "shards": base.data.shards,
        "storage": runs,
        "uri": uri,
        "experiment": base.tracking.experiment,
        "parent_run_id": parent_run_id,
        "teachers": teachers,
        "entry_point": entry_point(),
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, settings=settings), {"cpu": space.tune.cpus_per_trial}
    )
    if resuming:
        tuner = tune.Tuner.restore(sweep_dir, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=tune.TuneConfig(
                metric=space.tune.metric,
                mode=space.tune.mode,
                num_samples=space.tune.num_samples,
                max_concurrent_trials=space.tune.max_concurrent_trials,
                scheduler=scheduler_for(space, base.optim.epochs),
                search_alg=search_algorithm(space),
            ),
            run_config=tune.RunConfig(name=sweep_name, storage_path=sweeps),
        )
    results = tuner.fit()
    return summarise(results, space, settings, base.optim.epochs)


def finish_trial(run, reason: str, settings: dict) -> None:
    """What ``run_training`` does after ``fit``, for a trial Tune stopped before it could (ASHA
    stops every trial at its last epoch, completed or not): publish its best checkpoint and
    close its MLflow run."""
    status = {"completed": "FINISHED", "stopped by ASHA": "KILLED"}.get(reason, "FAILED")
    try:
        publish_best(
            settings["storage"], run.info.run_name, settings["uri"], run.info.run_id, status
        )
    except FileNotFoundError:  # failed before its first checkpoint
        MlflowClient(settings["uri"]).set_terminated(run.info.run_id, "FAILED")


def summarise(results, space: SearchSpace, settings: dict, epochs: int) -> dict[str, Any]:
    """Tag each child run with why it ended, the parent with the best trial; save the best."""
    client = MlflowClient(settings["uri"])
    experiment = client.get_experiment_by_name(settings["experiment"])
    children = {
        r.data.tags.get("sffb.trial_id"): r
        for r in client.search_runs(
            [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{settings['parent_run_id']}'"
        )
    }
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id not in children:
            continue  # failed before its first report: no child run to tag
        last_epoch = (result.metrics or {}).get("epoch", -1)
        reason = "completed" if last_epoch >= epochs - 1 else "stopped by ASHA"
        if result.error is not None:
            reason = f"failed: {type(result.error).__name__}"
        run = children[trial_id]
        set_tags(settings["uri"], run.info.run_id, {"sffb.stop_reason": reason})
        if BEST_CHECKPOINT_TAG not in run.data.tags:
            finish_trial(run, reason, settings)
    best = results.get_best_result(space.tune.metric, space.tune.mode, scope="all")
    best_trial = (best.metrics or {}).get("trial_id", "")
    summary = {
        "sweep": settings["sweep"],
        "metric": space.tune.metric,
        "best_value": (best.metrics or {}).get(space.tune.metric),
        "best_config": best.config,
        "best_trial": best_trial,
        "best_checkpoint": storage.join(
            settings["storage"], f"{settings['sweep']}-{best_trial}", "best"
        ),
    }
    set_tags(settings["uri"], settings["parent_run_id"], {"sffb.best_trial": best_trial})
    if best_trial in children:  # its registered version becomes models:/<name>@champion
        summary["champion_version"] = crown_champion(
            settings["uri"], children[best_trial].info.run_id
        )
    client.set_terminated(settings["parent_run_id"], "FINISHED")
    out = storage.join(settings["storage"], "sweeps", f"{settings['sweep']}-best.json")
    storage.write_text(out, json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE)
    parser.add_argument("--name", default="", help="sweep name (same name = resume)")
    args = parser.parse_args(argv)
    try:
        sweep(args.space, args.name)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
