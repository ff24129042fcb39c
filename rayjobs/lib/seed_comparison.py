"""Training recipes compared over repeated seeds: each run's test metrics, each recipe's mean
and spread, and the first recipe minus every other averaged over seeds, with two-level
bootstrap intervals (test videos, then runs; ``sffb.metrics.seed_averaged_bootstrap``).

A recipe is a name and the checkpoints of its runs (one per seed); a recipe of one run is a
fixed model such as the teacher. All runs are scored on the same test rows, so every
difference is paired by video.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from rayjobs.evaluate import check_same_rows, format_difference, level_report
from rayjobs.lib.tracking import log_metrics
from sffb.metrics import (
    INTERVAL_METRICS,
    DetectionReport,
    PairedDifference,
    paired_bootstrap,
    seed_averaged_bootstrap,
)

SEED_RESAMPLES = 1000
SEED_LEGEND = (
    "percentage points; 95 % bootstrap interval over test videos and runs; "
    "* = the interval excludes 0"
)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RunResult:
    recipe: str
    run: str
    level: str
    report: DetectionReport


@dataclass(frozen=True)
class RecipeDifference:
    """``recipe`` minus ``baseline`` at ``level``: seed-averaged, and per seed when both
    recipes have as many runs (paired by position: the i-th run of each)."""

    recipe: str
    baseline: str
    level: str
    averaged: PairedDifference
    per_seed: tuple[PairedDifference, ...]


@dataclass(frozen=True)
class Spread:
    """One recipe's frame AUCs over its runs at one level."""

    values: np.ndarray

    @property
    def sd(self) -> float:
        """The sample standard deviation (ddof 1); NaN for a single run."""
        return float(np.std(self.values, ddof=1)) if self.values.size > 1 else float("nan")


def check_recipe_name(name: str) -> str:
    """Recipe names become MLflow metric keys: letters, digits, ``_ . -`` only."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"recipe name {name!r}: use letters, digits, '_', '.' or '-'")
    return name


def run_results(
    scored: Mapping[str, Mapping[str, dict[str, np.ndarray]]],
    levels: tuple[str, ...],
    resamples: int = SEED_RESAMPLES,
) -> list[RunResult]:
    """Every run's report (with intervals over videos) at every level; ``scored`` is
    recipe -> run -> ``score_test_split``'s columns."""
    results = []
    for recipe, runs in scored.items():
        for run, columns in runs.items():
            for level in levels:
                report = level_report(columns, level, resamples)
                results.append(RunResult(recipe, run, level, report))
    return results


def recipe_differences(
    scored: Mapping[str, Mapping[str, dict[str, np.ndarray]]],
    levels: tuple[str, ...],
    resamples: int = SEED_RESAMPLES,
) -> list[RecipeDifference]:
    """The first recipe minus each other one, at each level."""
    names = list(scored)
    first_runs = list(scored[names[0]].values())
    reference = first_runs[0]
    for recipe, runs in scored.items():
        for run, columns in runs.items():
            check_same_rows(reference, columns, f"{recipe}/{run}")
    labels, keys = reference["label"].astype(int), reference["video_key"]
    differences = []
    for baseline in names[1:]:
        other_runs = list(scored[baseline].values())
        for level in levels:
            column = f"score_{level}"
            ours = [run[column].astype(float) for run in first_runs]
            theirs = [run[column].astype(float) for run in other_runs]
            averaged = seed_averaged_bootstrap(labels, ours, theirs, keys, resamples=resamples)
            per_seed = ()
            if len(ours) == len(theirs) > 1:
                per_seed = tuple(
                    paired_bootstrap(labels, a, b, keys, resamples=resamples)
                    for a, b in zip(ours, theirs, strict=True)
                )
            differences.append(RecipeDifference(names[0], baseline, level, averaged, per_seed))
    return differences


def _points(value: float) -> str:
    return f"{100 * value:.2f}"


def runs_markdown(results: list[RunResult]) -> str:
    """One row per run and level, then each recipe's mean and spread over its runs."""
    lines = [
        "| recipe | run | level | frame AUC | frame ACC | video AUC | frames | videos |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.recipe} | {r.run} | {r.level} | {r.report.percent('frame_auc')} "
            f"| {_points(r.report.frame.acc)}"
            f" | {_points(r.report.video.auc)} | {r.report.frame.count} | {r.report.video.count} |"
        )
    lines += ["", "| recipe | level | runs | frame AUC mean | sd | min | max |",
              "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for (recipe, level), spread in recipe_spreads(results).items():
        values = spread.values
        lines.append(
            f"| {recipe} | {level} | {values.size} | {_points(values.mean())} "
            f"| {_points(spread.sd)} | {_points(values.min())} | {_points(values.max())} |"
        )
    return "\n".join(lines)


def recipe_spreads(results: list[RunResult]) -> dict[tuple[str, str], Spread]:
    """(recipe, level) -> its runs' frame AUCs."""
    spreads: dict[tuple[str, str], list[float]] = {}
    for r in results:
        spreads.setdefault((r.recipe, r.level), []).append(r.report.frame.auc)
    return {key: Spread(np.asarray(values)) for key, values in spreads.items()}


def differences_markdown(differences: list[RecipeDifference]) -> str:
    lines = [
        f"Seed-averaged differences ({SEED_LEGEND}):",
        "",
        "| difference | level | frame AUC | frame ACC | video AUC | video ACC "
        "| per seed, frame AUC |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for d in differences:
        cells = [format_difference(d.averaged.delta[m], d.averaged.intervals[m])
                 for m in ("frame_auc", "frame_acc", "video_auc", "video_acc")]  # fmt: skip
        seeds = ", ".join(
            format_difference(p.delta["frame_auc"], p.intervals["frame_auc"]) for p in d.per_seed
        )
        lines.append(f"| {d.recipe} - {d.baseline} | {d.level} | " + " | ".join(cells)
                     + f" | {seeds or '(runs not paired)'} |")  # fmt: skip
    return "\n".join(lines)


def comparison_metrics(
    results: list[RunResult], differences: list[RecipeDifference]
) -> dict[str, float]:
    """MLflow metrics: ``recipe_<name>_test_<level>_frame_auc_mean`` / ``_sd`` and
    ``<recipe>_minus_<baseline>_test_<level>_<metric>_delta`` / ``_ci_low`` / ``_ci_high``."""
    metrics = {}
    for (recipe, level), spread in recipe_spreads(results).items():
        prefix = f"recipe_{recipe}_test_{level}_frame_auc"
        metrics[f"{prefix}_mean"] = float(spread.values.mean())
        if spread.values.size > 1:
            metrics[f"{prefix}_sd"] = spread.sd
    for d in differences:
        for metric in INTERVAL_METRICS:
            key = f"{d.recipe}_minus_{d.baseline}_test_{d.level}_{metric}"
            metrics[f"{key}_delta"] = d.averaged.delta[metric]
            metrics[f"{key}_ci_low"] = d.averaged.intervals[metric].low
            metrics[f"{key}_ci_high"] = d.averaged.intervals[metric].high
    return metrics


def log_comparison(
    uri: str, run_id: str, results: list[RunResult], differences: list[RecipeDifference]
) -> None:
    """The metrics above and ``seeds/comparison.md`` (both tables) on the MLflow run."""
    client = MlflowClient(uri)
    log_metrics(uri, run_id, comparison_metrics(results, differences))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "comparison.md"
        path.write_text(runs_markdown(results) + "\n\n" + differences_markdown(differences) + "\n")
        client.log_artifact(run_id, str(path), artifact_path="seeds")
