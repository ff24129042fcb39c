"""MLflow tracking: one run per job, found again by name so a resumed job writes into it.

Metrics are logged by a Ray Train ``UserCallback``, which runs in the Train controller (one
process, whatever the number of workers) and sees rank 0's report. Each report carries the whole
per-epoch history, and the callback logs only the epochs MLflow does not hold yet, so every
epoch lands exactly once even when workers are killed and restarted from a checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from numbers import Number
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME
from ray.train import UserCallback

from data_prep import storage
from data_prep.defaults import workdir

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
#: How SQL back ends name a duplicate key (SQLite, PostgreSQL, MySQL), through SQLAlchemy.
_DUPLICATE_KEY = ("IntegrityError", "UNIQUE constraint", "UniqueViolation", "Duplicate entry")
_insert_lock = threading.Lock()


def without_insert_races(write: Callable[[], T], attempts: int = 4) -> T:
    """Run an MLflow write that inserts rows keyed by their content (a dataset input, a model
    version): two runs that start or finish at once (reproduce.py's concurrent cells, a sweep's
    trials) race to insert the same key. Threads of this process take turns; a process that
    loses the race to another retries, and then finds the row in place."""
    for attempt in range(attempts - 1):
        try:
            with _insert_lock:
                return write()
        except MlflowException as error:
            if not any(key in str(error) for key in _DUPLICATE_KEY):
                raise
            time.sleep(0.5 * (attempt + 1))
    with _insert_lock:  # the last attempt: its error is the caller's
        return write()


#: MLflow 3 opens an experiment in the GenAI view (traces, agents) unless its kind says otherwise;
#: the kind is this experiment tag, with the value MLflow's UI gives classic model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
#: MLflow 3.17's UI picks GenAI or model training per browser (a sidebar switch, default GenAI)
#: and reads the experiment's kind only where that switch is off; this query selects the view.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


#: The run tag naming a run's published best checkpoint (set by launch.publish_best).
BEST_CHECKPOINT_TAG = "sffb.best_checkpoint"


def tracking_uri(configured: str = "") -> str:
    """Configured URI, else ``$MLFLOW_TRACKING_URI``, else SQLite under ``$SFFB_HOME``.

    MLflow 3's file store is in maintenance mode, hence a database even for local runs. On a
    cluster use a tracking server (``http://...``); the preflight refuses a SQLite file that
    not every node sees.
    """
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = storage.local_path(workdir())
    if home is None:
        raise ValueError(
            f"SFFB_HOME={workdir()} is not a local folder, so it cannot hold the SQLite MLflow "
            "store: start a tracking server (README, 'From one machine to a cluster') and set "
            "MLFLOW_TRACKING_URI=http://HOST:5000"
        )
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def is_server(uri: str) -> bool:
    """A tracking server decides where artifacts go (``mlflow server --artifacts-destination``)."""
    return uri.startswith(("http://", "https://", "databricks"))


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def git_commit(repo: Path = REPO) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"


def uncommitted_changes(repo: Path = REPO) -> list[str]:
    """Tracked files changed since the last commit: code a run would use that its logged git
    commit does not describe (untracked files, e.g. outputs, are not counted)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


def entry_point() -> str:
    """The script this process runs, relative to the repository (``rayjobs/distill.py``)."""
    script = Path(sys.argv[0]).resolve()
    return str(script.relative_to(REPO)) if script.is_relative_to(REPO) else sys.argv[0]


def source_tags() -> dict[str, str]:
    """MLflow's own source tags (user, entry point, type, git commit) for a new run.

    MLflow's context providers resolve them as ``mlflow.start_run`` would; the entry point is
    named relative to the repository, and the commit comes from ``git`` even where MLflow's
    provider finds none. Runs created in a Ray worker (Tune trials) get the driver's entry point
    from their caller.
    """
    tags = {**resolve_tags(), MLFLOW_SOURCE_NAME: entry_point()}
    commit = git_commit()
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def file_sha256(location: str | Path) -> str:
    """SHA-256 of a file at a path or URI; ``none`` when absent."""
    try:
        return hashlib.sha256(storage.read_bytes(location)).hexdigest()
    except FileNotFoundError:
        return "none"


def find_run(uri: str, experiment: str, run_name: str) -> str | None:
    """The id of the run named ``run_name``, or None."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    quoted = run_name.replace("'", "\\'")
    runs = client.search_runs(
        [found.experiment_id], f"attributes.run_name = '{quoted}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def find_or_create_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
) -> tuple[str, bool]:
    """The run named ``run_name`` in ``experiment`` (created with params and tags if new).

    Returns ``(run_id, created)``.
    """
    client = MlflowClient(uri)
    existing = find_run(uri, experiment, run_name)
    if existing is not None:
        client.update_run(existing, status="RUNNING")
        return existing, False
    experiment_id = ensure_experiment(uri, experiment)
    tags = {**source_tags(), **tags}
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run.info.run_id, True


def experiment_url(server: str, experiment_id: str) -> str:
    """The experiment's runs page on a tracking server, in the model-training view."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}?{MODEL_TRAINING_VIEW}"


def ensure_experiment(uri: str, name: str) -> str:
    """The experiment's id; created if absent. Either way it opens in MLflow's training view."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=artifact_location(uri, name),
                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
            )
        except MlflowException:  # created meanwhile by another process (concurrent trials)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if EXPERIMENT_KIND_TAG not in found.tags:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return found.experiment_id


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: the server's choice for a tracking server;
    beside a local database otherwise (MLflow would put them in the working directory)."""
    if is_server(uri):
        return None
    database = sqlite_file(uri)
    if database is None and storage.is_uri(workdir()):
        return storage.join(workdir(), "mlartifacts", experiment)  # shared, like the runs
    folder = database.parent if database else Path(workdir())
    return (folder / "mlartifacts" / experiment).resolve().as_uri()


class EpochLogger(UserCallback):
    """Logs each epoch of rank 0's ``history`` to the MLflow run ``run_id``, exactly once."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id
        self._logged: set[int] | None = None

    def _already_logged(self, client: MlflowClient) -> set[int]:
        if self._logged is None:
            self._logged = {int(m.step) for m in client.get_metric_history(self.run_id, "epoch")}
        return self._logged

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        client = MlflowClient(self.uri)
        logged = self._already_logged(client)
        now = int(time.time() * 1000)
        for entry in metrics[0].get("history", []):
            epoch = int(entry["epoch"])
            if epoch in logged:
                continue
            batch = [
                Metric(key, float(value), now, epoch)
                for key, value in entry.items()
                if isinstance(value, Number)
            ]
            client.log_batch(self.run_id, metrics=batch)
            logged.add(epoch)


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    MlflowClient(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_metrics(uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Metrics at step 0 in one request: an evaluation logs a few hundred, and one
    ``log_metric`` each costs a store round trip (~11 ms on SQLite, more to a server)."""
    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    MlflowClient(uri).log_batch(run_id, metrics=batch)
