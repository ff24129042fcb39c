"""Compare MLflow runs: ``python -m rayjobs.compare [--experiment NAME | --sweep NAME]``.

Prints one table: the parameters that differ between the runs and each run's final metrics,
sorted by any metric. Draws two plots: the sort metric against every swept parameter, and each
run's validation AUC per epoch. For a sweep, the plots and the table (CSV) become artifacts of
the sweep's parent run, so the MLflow UI shows them beside the trials; for a whole experiment
they are written to a local folder.

With no arguments: the most recent sweep of the default experiment, else all its runs.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT

from data_prep.defaults import local_workdir
from rayjobs.lib.config import TrackingConfig
from rayjobs.lib.tracking import tracking_uri

#: Final metrics shown by default (those a run has); ``--metrics all`` shows every one.
DEFAULT_METRICS = (
    "best_val_frame_auc",  # the published (best) checkpoint's; the val_* ones are the last epoch's
    "best_epoch",
    "val_frame_auc",
    "val_video_auc",
    "val_frame_acc",
    "val_frame_balanced_acc",
    "val_frame_eer",
    "train_total",
    "epoch",
)
#: Test metrics (from evaluation) shown by default when the runs have them, for every level.
DEFAULT_TEST_METRICS = re.compile(r"test_[^_]+_(frame_auc|frame_acc|video_auc)$")
CI_SUFFIXES = ("_ci_low", "_ci_high")  # a metric's bootstrap interval (rayjobs/evaluate.py)
#: Parameters that differ between runs by construction, never a swept choice.
UNSWEPT_PREFIXES = ("tracking.", "space")
CURVE_METRIC = "val_frame_auc"


class CompareError(ValueError):
    """Nothing to compare, or a name that is not in the store: one line for the user."""


@dataclass(frozen=True)
class Selection:
    """The runs to compare and where the plots go (the sweep's parent run, if any)."""

    title: str
    runs: list[Run]
    parent: Run | None


def _search_all(client: MlflowClient, experiment_id: str, query: str = "", order=None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], query, order_by=order, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def select_runs(
    client: MlflowClient, experiment: str, sweep: str | None, whole_experiment: bool
) -> Selection:
    """The named sweep's trials, the whole experiment, or by default its latest sweep."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise CompareError(f"no experiment {experiment!r} in the store; it has {names}")
    eid = found.experiment_id
    if whole_experiment:
        return Selection(f"experiment {experiment}", _search_all(client, eid), None)
    sweeps = _search_all(client, eid, "tags.`sffb.mode` = 'sweep'", ["attributes.start_time DESC"])
    if sweep:
        sweeps = [run for run in sweeps if run.info.run_name == sweep]
        if not sweeps:
            raise CompareError(f"no sweep named {sweep!r} in experiment {experiment!r}")
    if not sweeps:  # no sweep yet: compare whatever the experiment holds
        return Selection(f"experiment {experiment}", _search_all(client, eid), None)
    parent = sweeps[0]
    children = _search_all(client, eid, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return Selection(f"sweep {parent.info.run_name}", children, parent)


def swept_params(runs: Sequence[Run]) -> list[str]:
    """Parameters whose value differs between the runs that log them (bookkeeping excluded).

    A run without the parameter (a sweep's parent) does not make it differ.
    """
    keys = sorted({k for run in runs for k in run.data.params})
    return [
        key
        for key in keys
        if not key.startswith(UNSWEPT_PREFIXES)
        and len({run.data.params[key] for run in runs if key in run.data.params}) > 1
    ]


def _provenance(run: Run) -> dict[str, str]:
    """Which code and data a run used: MLflow's git-commit tag, the training dataset's digest."""
    training = [
        i.dataset.digest
        for i in (run.inputs.dataset_inputs if run.inputs else [])
        if any(t.key == MLFLOW_DATASET_CONTEXT and t.value == "training" for t in i.tags)
    ]
    return {
        "commit": run.data.tags.get(MLFLOW_GIT_COMMIT, "")[:10],
        "data": training[0][:10] if training else "",
    }


def run_table(runs: Sequence[Run], params: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per run: name, how it ended, the given params and final metric values.

    ``commit`` and ``data`` columns appear when the runs differ in code or training data: a
    difference a comparison must not hide.
    """
    rows = []
    for run in runs:
        row = {
            "run": run.info.run_name,
            "status": run.data.tags.get("sffb.stop_reason", run.info.status.lower()),
            **_provenance(run),
        }
        row.update({k: run.data.params.get(k) for k in params})
        row.update({k: run.data.metrics.get(k, math.nan) for k in metrics})
        rows.append(row)
    differing = [k for k in ("commit", "data") if len({r[k] for r in rows if r[k]}) > 1]
    table = pd.DataFrame(rows, columns=["run", "status", *differing, *params, *metrics])
    for key in params:  # MLflow stores params as text: numbers become numbers again
        numbers = pd.to_numeric(table[key], errors="coerce")
        if numbers.notna().sum() == table[key].notna().sum():
            table[key] = numbers
    return table


def metric_columns(runs: Sequence[Run], requested: str, sort: str) -> list[str]:
    available = sorted({k for run in runs for k in run.data.metrics})
    if sort not in available:
        raise CompareError(f"cannot sort by {sort!r}: the runs log {available}")
    if requested == "all":
        chosen = available
    elif requested:
        chosen = [m.strip() for m in requested.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in available]
        if unknown:
            raise CompareError(f"unknown metric(s) {unknown}: the runs log {available}")
    else:
        chosen = [m for m in DEFAULT_METRICS if m in available]
        chosen += [m for m in available if DEFAULT_TEST_METRICS.match(m)]
    return [sort, *[m for m in chosen if m != sort and not m.endswith(CI_SUFFIXES)]]


def with_intervals(table: pd.DataFrame, runs: Sequence[Run], metrics: Sequence[str]):
    """After each metric that has a bootstrap interval, a ``<metric> 95% CI`` column.

    ``table`` holds one row per run, in the order of ``runs`` (not yet sorted).
    Intervals resample test videos (evaluation); a run without one gets an empty cell.
    """
    logged = [run.data.metrics for run in runs]  # in the table's row order
    for metric in metrics:
        low, high = (metric + suffix for suffix in CI_SUFFIXES)
        if not any(low in values for values in logged):
            continue
        cells = [
            f"[{values[low]:.4g}, {values[high]:.4g}]" if low in values and high in values else ""
            for values in logged
        ]
        table.insert(table.columns.get_loc(metric) + 1, f"{metric} 95% CI", cells)
    return table


def sorted_table(table: pd.DataFrame, sort: str, ascending: bool) -> pd.DataFrame:
    """Sorted by ``sort`` (runs without it last), ties broken by run name."""
    ordered = table.sort_values(["run"]).sort_values(
        sort, ascending=ascending, na_position="last", kind="stable"
    )
    return ordered.reset_index(drop=True)


def plot_metric_vs_params(table: pd.DataFrame, params: Sequence[str], metric: str, path: Path):
    """One panel per swept parameter: the metric of every run against its value."""
    panels = max(len(params), 1)
    figure = Figure(figsize=(4 * panels, 3.4))
    axes = figure.subplots(1, panels, squeeze=False)
    for axis, param in zip(axes[0], params or [None], strict=True):
        if param is None:
            axis.text(0.5, 0.5, "no parameter differs between the runs", ha="center")
            axis.set_axis_off()
            continue
        values = table[param]
        if pd.api.types.is_numeric_dtype(values):
            axis.scatter(values, table[metric])
            present = values.dropna()
            if (present > 0).all() and present.max() >= 100 * present.min():
                axis.set_xscale("log")
        else:  # categories (fusion, knowledge, backbone) at evenly spaced positions
            labels = sorted(values.dropna().astype(str).unique())
            shown = values.notna()
            positions = [labels.index(str(v)) for v in values[shown]]
            axis.scatter(positions, table[metric][shown])
            axis.set_xticks(range(len(labels)), labels, rotation=30)
        axis.set_xlabel(param)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_curves(client: MlflowClient, runs: Sequence[Run], metric: str, path: Path) -> None:
    """Each run's ``metric`` per epoch: where ASHA stopped a trial its line ends early."""
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for run in runs:
        history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
        if history:
            steps = [m.step + 1 for m in history]
            axis.plot(steps, [m.value for m in history], marker="o", label=run.info.run_name)
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel(metric)
    axis.grid(alpha=0.3)
    if len(runs) <= 12:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_outputs(
    client: MlflowClient, selection: Selection, table: pd.DataFrame, params, metric, out: Path
) -> str:
    """Table CSV and plots: artifacts of the parent run, else files under ``out``.

    Returns where they went. Files are complete before they appear (temporary folder first).
    """
    with tempfile.TemporaryDirectory() as directory:
        staging = Path(directory)
        table.to_csv(staging / "runs.csv", index=False)
        plot_metric_vs_params(table, params, metric, staging / f"{metric}_vs_params.png")
        plot_curves(client, selection.runs, CURVE_METRIC, staging / f"{CURVE_METRIC}_curves.png")
        if selection.parent is not None:
            client.log_artifacts(selection.parent.info.run_id, str(staging), "compare")
            return f"artifacts 'compare/' of run {selection.parent.info.run_id}"
        out.mkdir(parents=True, exist_ok=True)
        for file in staging.iterdir():
            shutil.copyfile(file, out / f".{file.name}.tmp")
            os.replace(out / f".{file.name}.tmp", out / file.name)
        return str(out)


def compare(
    uri: str = "",
    experiment: str = "",
    sweep: str | None = None,
    whole_experiment: bool = False,
    sort: str = "val_frame_auc",
    ascending: bool = False,
    metrics: str = "",
    plots: bool = True,
    out: Path | None = None,
) -> pd.DataFrame:
    """Print the comparison table (and write the plots); return the table."""
    client = MlflowClient(tracking_uri(uri))
    experiment = experiment or TrackingConfig().experiment
    selection = select_runs(client, experiment, sweep, whole_experiment)
    if not selection.runs:
        raise CompareError(f"{selection.title} has no runs yet")
    params = swept_params(selection.runs)
    columns = metric_columns(selection.runs, metrics, sort)
    table = with_intervals(run_table(selection.runs, params, columns), selection.runs, columns)
    table = sorted_table(table, sort, ascending)
    if "epoch" in table and sort != "epoch":  # the last epoch's index, shown as a count
        table = table.rename(columns={"epoch": "epochs"})
        table["epochs"] = (table["epochs"] + 1).astype("Int64")
    order = "ascending" if ascending else "descending"
    print(f"{selection.title}: {len(table)} runs, by {sort} ({order})")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if plots:
        out = out or local_workdir() / "compare" / experiment
        print("plots and table:", write_outputs(client, selection, table, params, sort, out))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sweep", help="a sweep's name (default: the most recent sweep)")
    which.add_argument(
        "--experiment", dest="whole", metavar="NAME", help="every run of this experiment"
    )
    parser.add_argument("--in-experiment", default="", help="experiment holding --sweep")
    parser.add_argument("--sort", default="val_frame_auc", help="metric to sort by")
    parser.add_argument("--ascending", action="store_true", help="smallest first (e.g. EER)")
    parser.add_argument("--metrics", default="", help="comma-separated metrics, or 'all'")
    parser.add_argument("--uri", default="", help="MLflow tracking URI (default: the local store)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", type=Path, help="plot folder when comparing an experiment")
    args = parser.parse_args(argv)
    try:
        compare(
            uri=args.uri,
            experiment=args.whole or args.in_experiment,
            sweep=args.sweep,
            whole_experiment=args.whole is not None,
            sort=args.sort,
            ascending=args.ascending,
            metrics=args.metrics,
            plots=not args.no_plots,
            out=args.out,
        )
    except CompareError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
