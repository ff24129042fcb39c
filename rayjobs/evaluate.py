"""Evaluate a checkpoint on the test split: the paper's Table-1 layout, logged to MLflow.

``python rayjobs/evaluate.py --checkpoint RUNS/<run>/best --levels c23 c40`` scores every test
row at each level with Ray Data batch inference (a pool of model actors, GPUs when present),
then computes, per manipulation method (its fakes against every real) and for all methods
together, frame ACC/AUC, video ACC/AUC, EER and AP. The table is printed and logged to MLflow as
CSV and Markdown, with a ROC plot.

Baselines (``--baseline teacher=RUNS/<teacher>/best``, repeatable) are scored on the same rows
and levels and get their own rows: a distilled student is only worth having if it beats the
teacher applied to compressed frames and SFFB trained alone on them.

``--strengths manipulations.json`` (synthetic data; the embedded dataset's by default) adds AUC
per fake-strength bin (``rayjobs/lib/strengths.py``).

``--shards A B ...`` evaluates on the first and adds the cross-dataset AUC matrix over all;
``--matrix --checkpoint C1 C2 ... --shards A B ...`` gives only the matrix, models x datasets
(``rayjobs/lib/cross_dataset.py``).
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from data_prep import storage
from data_prep.defaults import embedded_prepare_config, embedded_strengths
from rayjobs.lib.calibration import LevelCalibration, calibrate, save_calibration
from rayjobs.lib.cam_examples import log_cam_examples
from rayjobs.lib.checkpoints import STATE_FILE, load_state
from rayjobs.lib.config import DataConfig
from rayjobs.lib.cross_dataset import (
    auc_matrix,
    checkpoint_name,
    dataset_name,
    log_matrix,
    matrix_markdown,
    unique_names,
)
from rayjobs.lib.data import KEY_COLUMNS, check_methods, paired_dataset, shard_files
from rayjobs.lib.launch import USER_ERRORS, ensure_ray
from rayjobs.lib.preflight import Needs, check_every_node
from rayjobs.lib.run_inputs import log_shard_inputs
from rayjobs.lib.scorer_pool import scorer_pool
from rayjobs.lib.scoring import SCORE_BATCH, LevelScorer, score_column
from rayjobs.lib.strengths import StrengthRow, load_strengths, strength_markdown, strength_table
from rayjobs.lib.tracking import find_or_create_run, log_metrics, tracking_uri
from sffb.calibration import expected_calibration_error, reliability
from sffb.metrics import (
    INTERVAL_METRICS,
    DetectionReport,
    Interval,
    PairedDifference,
    evaluate_detection,
    paired_bootstraps,
    roc_curve,
)

ALL = "all"
SPLIT = "split"  # the column that tells the splits of one scoring pass apart
#: Checkpoints one scoring actor holds at most (~0.2 GB each for SFFB-Xception); more are
#: scored in further passes.
MODELS_PER_PASS = 8


#: Bootstrap resamples for the 95 % intervals of every table cell (sffb.metrics.video_bootstrap).
BOOTSTRAP_RESAMPLES = 1000
MODEL = "model"  # the label of the evaluated checkpoint's rows when no other is given


@dataclass(frozen=True)
class TableRow:
    method: str
    level: str
    report: DetectionReport
    model: str = MODEL  # the evaluated checkpoint, or a baseline's name ("teacher", ...)

    def as_dict(self) -> dict:
        flat = {"model": self.model, "method": self.method, "level": self.level}
        return flat | self.report.as_dict()


def score_test_split(
    checkpoint: str,
    shards: str,
    levels: tuple[str, ...],
    methods: tuple[str, ...] = (),
    split: str = "test",
) -> dict[str, np.ndarray]:
    """Scores of every row of ``split`` at every level (columns ``score_<level>``).

    ``checkpoint`` and ``shards`` are paths or URIs; every node must see both (checked first).
    """
    return score_splits({MODEL: checkpoint}, shards, levels, methods, (split,))[split][MODEL]


def score_splits(
    checkpoints: Mapping[str, str],
    shards: str,
    levels: tuple[str, ...],
    methods: tuple[str, ...] = (),
    splits: tuple[str, ...] = ("test",),
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """split -> model name -> ``score_test_split``'s columns, for every named checkpoint.

    One Ray Data pass per input size scores every split with every checkpoint of that size: the
    splits are read together and each actor loads all the checkpoints, so a model and its
    baselines on test and validation cost one start of the read and of the actors, not four
    (the main job's evaluation: 134 s -> 70 s on the 2-core VM). Scores are those of a pass per
    model and split: ``fake_scores`` gives a crop the same score whatever shares its batch.
    """
    shards = storage.normalise(shards)
    located = {name: storage.normalise(c) for name, c in checkpoints.items()}
    ensure_ray()
    for split in splits:
        check_methods(shards, split, methods)
    readable = [shard_files(shards, split)[0] for split in splits]
    readable += [storage.join(checkpoint, STATE_FILE) for checkpoint in located.values()]
    check_every_node(Needs(tuple(readable)))
    by_size: dict[int, list[tuple[str, str]]] = {}
    for name, checkpoint in located.items():
        size = load_state(checkpoint)["config"].model.image_size
        by_size.setdefault(size, []).append((name, checkpoint))
    scored: dict[str, dict[str, dict[str, np.ndarray]]] = {split: {} for split in splits}
    for size, named in by_size.items():
        for start in range(0, len(named), MODELS_PER_PASS):
            group = dict(named[start : start + MODELS_PER_PASS])
            passed = _score_pass(group, shards, levels, methods, splits, size)
            for split, by_model in passed.items():
                scored[split].update(by_model)
    return {split: {name: scored[split][name] for name in located} for split in splits}


def _score_pass(
    checkpoints: dict[str, str],
    shards: str,
    levels: tuple[str, ...],
    methods: tuple[str, ...],
    splits: tuple[str, ...],
    image_size: int,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """One Ray Data pass: every split's rows, decoded at ``image_size``, scored by every
    checkpoint (all of that input size)."""
    data = DataConfig(shards=shards, methods=methods)
    parts = [
        paired_dataset(data, split, levels, image_size, augment=False).add_column(
            SPLIT, _constant(split), batch_format="pyarrow"
        )
        for split in splits
    ]
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    # Blocks of one scoring batch: a split read as one block would reach a single actor.
    dataset = dataset.repartition(target_num_rows_per_block=SCORE_BATCH)
    names = list(checkpoints)
    scored = dataset.map_batches(
        LevelScorer,
        fn_constructor_args=(tuple(checkpoints.values()), levels, ("label", SPLIT, *KEY_COLUMNS)),
        batch_size=SCORE_BATCH,
        batch_format="numpy",
        **scorer_pool(),
    )
    rows = scored.to_pandas()
    # One order for every model (actors finish batches in any order): scores of the same split
    # by two models line up row for row, which their paired comparison needs.
    rows = rows.sort_values(["video_key", "frame_index"], kind="stable", ignore_index=True)
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for split in splits:
        part = rows[rows[SPLIT] == split]
        shared = {column: part[column].to_numpy() for column in ("label", *KEY_COLUMNS)}
        out[split] = {
            name: shared
            | {f"score_{level}": part[score_column(i, level)].to_numpy() for level in levels}
            for i, name in enumerate(names)
        }
    return out


def _constant(value: str):
    """``add_column``'s function: a column holding ``value`` on every row of the batch."""

    def column(batch: pa.Table) -> pa.Array:
        return pa.array([value] * batch.num_rows, pa.string())

    return column


def level_report(
    scores: dict[str, np.ndarray], level: str, resamples: int = BOOTSTRAP_RESAMPLES
) -> DetectionReport:
    """Every row of ``score_test_split``'s columns at ``level``: frame and video metrics, with
    intervals over videos when ``resamples`` > 0."""
    return evaluate_detection(
        scores["label"].astype(int),
        scores[f"score_{level}"].astype(float),
        scores["video_key"],
        resamples=resamples,
    )


def method_masks(scores: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The rows of each fake method (its fakes + every real), then of all methods together."""
    labels, methods = scores["label"].astype(int), scores["method"].astype(str)
    fake_methods = sorted(set(methods[labels == 1]))
    masks = [(method, (labels == 0) | (methods == method)) for method in fake_methods]
    return [*masks, (ALL, np.ones_like(labels, bool))]


def build_table(
    scores: dict[str, np.ndarray],
    levels: tuple[str, ...],
    model: str = MODEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[TableRow]:
    """Per fake method and for all methods, at each level, with bootstrap intervals over
    videos (``resamples`` of them; 0 = none)."""
    labels = scores["label"].astype(int)
    table = []
    for method, keep in method_masks(scores):
        for level in levels:
            report = evaluate_detection(
                labels[keep],
                scores[f"score_{level}"][keep],
                scores["video_key"][keep],
                resamples=resamples,
            )
            table.append(TableRow(method, level, report, model))
    return table


@dataclass(frozen=True)
class ComparisonRow:
    """The evaluated model minus one baseline on the same test frames, at one level."""

    baseline: str
    method: str
    level: str
    difference: PairedDifference


def check_same_rows(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], name: str) -> None:
    """Paired differences need both models' scores of the very same frames, in one order."""
    for key in ("video_key", "frame_index"):
        if ours[key].shape != theirs[key].shape or not np.array_equal(ours[key], theirs[key]):
            raise ValueError(
                f"baseline {name!r} was scored on other test rows than the model "
                f"({theirs[key].size} against {ours[key].size}): cannot pair them"
            )


def build_comparisons(
    scored: Mapping[str, dict[str, np.ndarray]],
    levels: tuple[str, ...],
    model: str = MODEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[ComparisonRow]:
    """``model`` minus each baseline, per method and level, with paired bootstrap intervals:
    the question a baseline row asks (did distillation help?) on the same resampled videos.
    Rows by baseline, then method, then level."""
    ours = scored[model]
    baselines = {name: theirs for name, theirs in scored.items() if name != model}
    for name, theirs in baselines.items():
        check_same_rows(ours, theirs, name)
    labels = ours["label"].astype(int)
    found = {}
    for method, keep in method_masks(ours):
        for level in levels:
            column = f"score_{level}"
            differences = paired_bootstraps(
                labels[keep],
                ours[column][keep].astype(float),
                {name: theirs[column][keep].astype(float) for name, theirs in baselines.items()},
                ours["video_key"][keep],
                resamples=resamples,
            )
            for name, difference in differences.items():
                found[name, method, level] = ComparisonRow(name, method, level, difference)
    return [found[key] for key in sorted(found, key=lambda k: list(baselines).index(k[0]))]


#: How every table of differences explains its cells (``format_difference``).
DIFFERENCE_LEGEND = (
    "percentage points; 95 % paired bootstrap interval over videos; * = the interval excludes 0"
)


def format_difference(delta: float, interval: Interval) -> str:
    """``+1.56 [-3.1, +6.2]`` in points, ``*`` when the interval excludes 0."""
    mark = "*" if interval.excludes(0.0) else ""
    return f"{100 * delta:+.2f} [{100 * interval.low:+.1f}, {100 * interval.high:+.1f}]{mark}"


def comparison_markdown(rows: list[ComparisonRow], model: str = MODEL) -> str:
    """The model minus each baseline, per method and level, each metric with its interval."""
    lines = [
        f"{model} minus each baseline, on the same test frames ({DIFFERENCE_LEGEND}):",
        "",
        "| baseline | method | level | frame ACC | frame AUC | video ACC | video AUC |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        difference = row.difference
        cells = " | ".join(
            format_difference(difference.delta[name], difference.intervals[name])
            for name in INTERVAL_METRICS
        )
        lines.append(f"| {row.baseline} | {row.method} | {row.level} | {cells} |")
    return "\n".join(lines)


def comparison_metrics(rows: list[ComparisonRow]) -> dict[str, float]:
    """``baseline_<name>_test_<level>_frame_auc_delta`` (and ``_ci_low``/``_ci_high``) for the
    all-methods rows: the model minus that baseline."""
    metrics = {}
    for row in rows:
        if row.method != ALL:
            continue
        for name in INTERVAL_METRICS:
            key = f"baseline_{row.baseline}_test_{row.level}_{name}_delta"
            interval = row.difference.intervals[name]
            metrics[key] = row.difference.delta[name]
            metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = interval.low, interval.high
    return metrics


def to_markdown(table: list[TableRow]) -> str:
    """The full table (95 % bootstrap intervals over videos in brackets), then Table 1's layout."""
    header = (
        "| model | method | level | videos | frame ACC | frame AUC | video ACC | video AUC "
        "| frame bal. ACC | EER | AP |"
    )
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table:
        f, v = row.report.frame, row.report.video
        cells = " | ".join(row.report.percent(name) for name in INTERVAL_METRICS)
        lines.append(
            f"| {row.model} | {row.method} | {row.level} | {v.count} | {cells} | "
            f"{100 * f.balanced_acc:.2f} | {100 * f.eer:.2f} | {100 * f.ap:.2f} |"
        )
    if any(row.report.intervals for row in table):
        lines += ["", "[low, high]: 95 % bootstrap interval, resampling test videos."]
    lines += [
        "bal. ACC: the mean of the real and the fake recall (not inflated by the larger class)."
    ]
    keys = list(dict.fromkeys((r.model, r.level) for r in table))
    methods = list(dict.fromkeys(r.method for r in table))
    acc = {(r.model, r.level, r.method): r.report.frame.acc for r in table}
    lines += ["", "Frame ACC % (paper Table 1 layout):", ""]
    lines.append("| model | level | " + " | ".join(methods) + " |")
    lines.append("|---|---|" + "---:|" * len(methods))
    for model, level in keys:
        cells = " | ".join(f"{100 * acc[model, level, m]:.2f}" for m in methods)
        lines.append(f"| {model} | {level} | {cells} |")
    return "\n".join(lines)


def to_csv(table: list[TableRow]) -> str:
    rows = [row.as_dict() for row in table]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def plot_roc(scored: dict[str, dict[str, np.ndarray]], levels: tuple[str, ...], path: Path) -> None:
    """One curve per model and level (all methods); baselines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    for index, (model, scores) in enumerate(scored.items()):
        labels = scores["label"].astype(int)
        for level in levels:
            fpr, tpr = roc_curve(labels, scores[f"score_{level}"].astype(float))
            style = "-" if index == 0 else "--"
            axis.plot(fpr, tpr, style, label=f"{model}, {level} (all methods)")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="Test ROC, frames")
    axis.legend(loc="lower right")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def metric_prefix(row: TableRow, model: str) -> str:
    """``test_c23_`` for the evaluated model, ``baseline_teacher_test_c23_`` for a baseline."""
    own = f"test_{row.level}_"
    return own if row.model == model else f"baseline_{row.model}_{own}"


def log_table(uri: str, run_id: str, table, comparisons, scored, levels) -> None:
    """Tables and ROC as artifacts ``evaluation/``; the all-methods rows (and the model's
    differences from each baseline) as metrics."""
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        text = to_markdown(table)
        if comparisons:
            text += "\n\n" + comparison_markdown(comparisons, next(iter(scored)))
        (folder / "test_table.md").write_text(text + "\n")
        (folder / "test_table.csv").write_text(to_csv(table))
        plot_roc(scored, levels, folder / "test_roc.png")
        for name in ("test_table.md", "test_table.csv", "test_roc.png"):
            client.log_artifact(run_id, str(folder / name), artifact_path="evaluation")
    model = next(iter(scored))
    metrics = {}
    for row in table:
        if row.method == ALL:
            metrics |= row.report.as_dict(metric_prefix(row, model))
    log_metrics(uri, run_id, metrics | comparison_metrics(comparisons))


def evaluate(
    checkpoint: str,
    shards: str,
    levels: tuple[str, ...],
    methods: tuple[str, ...] = (),
    run_id: str | None = None,
    uri: str = "",
    baselines: Mapping[str, str] | None = None,
    model: str = MODEL,
    strengths: str | None = None,
) -> list[TableRow]:
    """Score, tabulate, print and (when ``run_id`` is given) log to MLflow.

    ``baselines`` (name -> checkpoint) are scored on the same rows and levels; their rows come
    after the model's, and their metrics are logged as ``baseline_<name>_test_<level>_...``.
    ``strengths`` (a synthetic dataset's ``manipulations.json``) adds AUC by fake strength.
    """
    checkpoints = {model: checkpoint, **(baselines or {})}
    if len(checkpoints) != 1 + len(baselines or {}):
        raise ValueError(f"a baseline is named {model!r}, the evaluated model's name")
    recorded = load_strengths(strengths) if strengths else None  # a bad file fails before scoring
    by_split = score_splits(checkpoints, shards, levels, methods, ("test", "val"))
    scored, calibration, fitted = by_split["test"], [], {}
    for name, validation in by_split["val"].items():
        rows, fitted[name] = calibration_rows(name, validation, scored[name], levels)
        calibration += rows
    table = [row for name, scores in scored.items() for row in build_table(scores, levels, name)]
    comparisons = build_comparisons(scored, levels, model)
    print(to_markdown(table))
    print()
    if comparisons:
        print(comparison_markdown(comparisons, model))
        print()
    print(calibration_markdown(calibration))
    by_strength = []
    if recorded is not None:
        by_strength = strength_table(
            scored, recorded, str(strengths), levels, resamples=BOOTSTRAP_RESAMPLES
        )
        print()
        print(strength_markdown(by_strength))
    save_calibration(checkpoint, fitted[model])  # detection and scoring read it from there
    if run_id is not None:
        log_table(tracking_uri(uri), run_id, table, comparisons, scored, levels)
        log_calibration(tracking_uri(uri), run_id, calibration, scored, fitted, levels, model)
        log_strengths(tracking_uri(uri), run_id, by_strength)
        log_shard_inputs(tracking_uri(uri), run_id, shards, ("test",), methods)
        log_cam_examples(tracking_uri(uri), run_id, checkpoint, shards, levels[0], methods)
    return table


def log_strengths(uri: str, run_id: str, rows: list[StrengthRow]) -> None:
    """The AUC-by-strength table as ``evaluation/by_strength.md``; nothing when not computed."""
    if not rows:
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "by_strength.md"
        path.write_text(strength_markdown(rows) + "\n")
        MlflowClient(uri).log_artifact(run_id, str(path), artifact_path="evaluation")


def log_calibration(uri, run_id, rows, scored, fitted, levels, model) -> None:
    """The calibration table and reliability diagram as artifacts; the model's figures as
    ``test_<level>_ece``-style metrics (baselines prefixed as in the main table)."""
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "calibration.md").write_text(calibration_markdown(rows) + "\n")
        plot_reliability(scored, fitted, levels, folder / "reliability.png")
        for name in ("calibration.md", "reliability.png"):
            client.log_artifact(run_id, str(folder / name), artifact_path="evaluation")
    metrics = {}
    for row in rows:
        prefix = (
            f"test_{row.level}_"
            if row.model == model
            else f"baseline_{row.model}_test_{row.level}_"
        )
        values = {
            "ece": row.ece,
            "ece_calibrated": row.ece_calibrated,
            "temperature": row.calibration.temperature,
            "val_threshold": row.calibration.threshold,
            "frame_acc_val_threshold": row.acc_at_threshold,
        }
        metrics |= {prefix + key: value for key, value in values.items()}
    log_metrics(uri, run_id, metrics)


@dataclass(frozen=True)
class CalibrationRow:
    """One model at one level: the temperature and threshold fitted on validation, and what
    they do to the test scores (all frames of the evaluated methods)."""

    model: str
    level: str
    calibration: LevelCalibration
    ece: float  # test ECE of the raw P(fake)
    ece_calibrated: float  # after dividing the logits by the temperature
    acc_at_half: float  # test frame ACC at 0.5
    acc_at_threshold: float  # test frame ACC at the validation threshold (calibrated scores)


def calibration_rows(
    model: str, val: dict[str, np.ndarray], test: dict[str, np.ndarray], levels: tuple[str, ...]
) -> tuple[list[CalibrationRow], dict[str, LevelCalibration]]:
    """Fit per level on validation, apply to test; the fitted values by level."""
    rows, fitted = [], {}
    for level in levels:
        column = f"score_{level}"
        fitted[level] = calibrate(val["label"].astype(int), val[column].astype(float))
        labels, scores = test["label"].astype(int), test[column].astype(float)
        calibrated = fitted[level].apply(scores)
        rows.append(
            CalibrationRow(
                model,
                level,
                fitted[level],
                ece=expected_calibration_error(labels, scores),
                ece_calibrated=expected_calibration_error(labels, calibrated),
                acc_at_half=float(np.mean((scores > 0.5) == labels)),
                acc_at_threshold=float(np.mean((calibrated > fitted[level].threshold) == labels)),
            )
        )
    return rows, fitted


def calibration_markdown(rows: list[CalibrationRow]) -> str:
    lines = [
        "Calibration (temperature T and threshold fitted on validation; test frames):",
        "",
        "| model | level | T | ECE | ECE after T | frame ACC at 0.5 | threshold "
        "| frame ACC at it |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r.calibration
        lines.append(
            f"| {r.model} | {r.level} | {c.temperature:.3g} | {100 * r.ece:.2f} | "
            f"{100 * r.ece_calibrated:.2f} | {100 * r.acc_at_half:.2f} | {c.threshold:.3f} | "
            f"{100 * r.acc_at_threshold:.2f} |"
        )
    return "\n".join(lines)


def plot_reliability(
    test: dict[str, dict[str, np.ndarray]],
    fitted: dict[str, dict[str, LevelCalibration]],
    levels: tuple[str, ...],
    path: Path,
) -> None:
    """Reliability diagram per model and level, before (dashed) and after temperature scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for model, scores in test.items():
        labels = scores["label"].astype(int)
        for level in levels:
            raw = scores[f"score_{level}"].astype(float)
            for values, style, note in (
                (raw, "--", "raw"),
                (fitted[model][level].apply(raw), "-", "after T"),
            ):
                bins = reliability(labels, values)
                filled = bins.counts > 0
                axis.plot(bins.mean_score[filled], bins.fake_rate[filled], style, marker="o",
                          label=f"{model}, {level}, {note}")  # fmt: skip
    axis.set(xlabel="mean P(fake) in bin", ylabel="share of fakes", title="Reliability, test")
    axis.legend(loc="upper left", fontsize=7)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def parse_baselines(pairs: list[str]) -> dict[str, str]:
    """``["teacher=RUNS/t/best", ...]`` -> ``{"teacher": "RUNS/t/best"}``."""
    baselines = {}
    for pair in pairs:
        name, sep, location = pair.partition("=")
        if not sep or not name or not location:
            raise ValueError(f"--baseline {pair!r}: expected NAME=CHECKPOINT")
        baselines[name] = location
    return baselines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", required=True, nargs="+",
        help="folder (path or URI) holding state.pt; several with --matrix",
    )  # fmt: skip
    parser.add_argument(
        "--shards", nargs="+",
        help="prepared shards, paths or URIs (default: embedded); several add the "
        "cross-dataset matrix",
    )  # fmt: skip
    parser.add_argument(
        "--matrix", action="store_true",
        help="only the checkpoints x datasets AUC matrix (paper Table 2)",
    )  # fmt: skip
    parser.add_argument("--levels", nargs="+", default=["c23", "c40"])
    parser.add_argument("--methods", nargs="+", default=[], help="fake methods (default: all)")
    parser.add_argument("--experiment", default="sffb")
    parser.add_argument(
        "--baseline", action="append", default=[], metavar="NAME=CHECKPOINT",
        help="also score this checkpoint on the same rows, e.g. teacher=RUNS/<teacher>/best",
    )  # fmt: skip
    parser.add_argument(
        "--strengths", metavar="MANIPULATIONS_JSON",
        help="a synthetic dataset's manipulations.json: AUC by fake strength (default: the "
        "embedded dataset's, when evaluating its shards)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if len(args.checkpoint) > 1 and not args.matrix:
        parser.error("several --checkpoint values need --matrix")
    if args.strengths and args.matrix:
        parser.error("--strengths breaks down one model's evaluation; --matrix gives only AUCs")
    shards = [storage.normalise(s) for s in args.shards or [embedded_prepare_config().output]]
    checkpoints = [storage.normalise(c) for c in args.checkpoint]
    uri = tracking_uri()
    if args.matrix:
        name = "cross-dataset-" + "-".join(checkpoint_name(c) for c in checkpoints)[:200]
    else:
        name = f"evaluate-{checkpoint_name(checkpoints[0])}"
    params = {"checkpoint": " ".join(checkpoints), "levels": ",".join(args.levels),
              "shards": " ".join(shards)}  # fmt: skip
    run_id, _ = find_or_create_run(uri, args.experiment, name, params, {"sffb.mode": "evaluate"})
    try:
        levels, methods = tuple(args.levels), tuple(args.methods)
        if not args.matrix:
            baselines = parse_baselines(args.baseline)
            strengths = args.strengths or embedded_strengths(shards[0])
            evaluate(checkpoints[0], shards[0], levels, methods, run_id, uri, baselines,
                     strengths=strengths)  # fmt: skip
        if args.matrix or len(shards) > 1:
            models = unique_names(checkpoints, checkpoint_name)
            datasets = unique_names(shards, dataset_name)
            cells = [cell for level in levels for cell in auc_matrix(models, datasets, level)]
            print(matrix_markdown(cells))
            log_matrix(uri, run_id, cells)
    except USER_ERRORS as error:
        MlflowClient(uri).set_terminated(run_id, "FAILED")
        raise SystemExit(f"error: {error}") from None
    MlflowClient(uri).set_terminated(run_id, "FINISHED")


if __name__ == "__main__":
    main()
