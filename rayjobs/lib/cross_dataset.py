"""Cross-dataset evaluation: models (rows, the data they trained on) x prepared test sets
(columns), frame and video AUC with 95 % bootstrap intervals over videos (paper Table 2's
setting: train on FF++, test on Celeb-DF).

Every cell scores one checkpoint on one dataset's test split at one level, with all its fake
methods against its reals; a dataset lacking the level is refused before scoring, naming it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from data_prep import storage
from rayjobs.lib.data import check_levels
from rayjobs.lib.tracking import log_metrics
from sffb.metrics import DetectionReport

MATRIX_RESAMPLES = 1000


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    level: str
    report: DetectionReport


def checkpoint_name(checkpoint: str) -> str:
    """A short row label: the run's folder for ``<run>/best``, else the folder's own name."""
    name = storage.name(checkpoint)
    return storage.name(storage.parent(checkpoint)) if name == "best" else name


def dataset_name(shards: str) -> str:
    return storage.name(shards)


def unique_names(locations: list[str], name_of) -> dict[str, str]:
    """Name -> location, names made unique with a counter where two locations share one."""
    named: dict[str, str] = {}
    for location in locations:
        base = name = name_of(location)
        count = 2
        while name in named:
            name, count = f"{base}-{count}", count + 1
        named[name] = location
    return named


def auc_matrix(
    checkpoints: Mapping[str, str],
    datasets: Mapping[str, str],
    level: str,
    resamples: int = MATRIX_RESAMPLES,
) -> list[Cell]:
    """Score every checkpoint on every dataset's test split at ``level``."""
    from rayjobs.evaluate import level_report, score_splits

    for shards in datasets.values():
        check_levels(shards, "test", (level,))
    by_dataset = {  # one pass per dataset scores every checkpoint
        dataset: score_splits(checkpoints, shards, (level,))["test"]
        for dataset, shards in datasets.items()
    }
    return [
        Cell(model, dataset, level, level_report(by_dataset[dataset][model], level, resamples))
        for model in checkpoints
        for dataset in datasets
    ]


def _cell_text(report: DetectionReport, scope: str) -> str:
    value = 100 * getattr(report, scope).auc
    interval = report.intervals.get(f"{scope}_auc")
    if interval is None:
        return f"{value:.2f}"
    return f"{value:.2f} [{100 * interval.low:.1f}, {100 * interval.high:.1f}]"


def matrix_markdown(cells: list[Cell]) -> str:
    """One table per level and scope: rows = models, columns = test datasets."""
    models = list(dict.fromkeys(c.model for c in cells))
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    by_key = {(c.model, c.dataset, c.level): c for c in cells}
    lines = []
    for level in dict.fromkeys(c.level for c in cells):
        for scope in ("frame", "video"):
            lines += [f"Cross-dataset {scope} AUC % at {level} (rows: model; columns: test "
                      "data; [95 % interval over videos]):", ""]  # fmt: skip
            lines.append("| model | " + " | ".join(datasets) + " |")
            lines.append("|---|" + "---:|" * len(datasets))
            for model in models:
                row = [_cell_text(by_key[model, d, level].report, scope) for d in datasets]
                lines.append(f"| {model} | " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines).rstrip()


def plot_heatmap(cells: list[Cell], level: str, path: Path) -> None:
    """Frame AUC per (model, dataset) at ``level`` as a heat map with the values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    chosen = [c for c in cells if c.level == level]
    models = list(dict.fromkeys(c.model for c in chosen))
    datasets = list(dict.fromkeys(c.dataset for c in chosen))
    values = np.array([[next(c.report.frame.auc for c in chosen if (c.model, c.dataset) == (m, d))
                        for d in datasets] for m in models])  # fmt: skip
    figure, axis = plt.subplots(figsize=(1.6 * len(datasets) + 2.5, 0.8 * len(models) + 1.5))
    image = axis.imshow(values, vmin=0.5, vmax=1.0, cmap="viridis")
    axis.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
    axis.set_yticks(range(len(models)), models)
    for i in range(len(models)):
        for j in range(len(datasets)):
            axis.text(j, i, f"{100 * values[i, j]:.1f}", ha="center", va="center", color="white")
    axis.set(xlabel="test data", ylabel="model", title=f"Frame AUC at {level}")
    figure.colorbar(image, ax=axis)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def log_matrix(uri: str, run_id: str, cells: list[Cell]) -> None:
    """Artifacts ``cross_dataset/matrix.md`` and ``heatmap_<level>.png``; metrics
    ``cross_<model>_<dataset>_<level>_frame_auc`` (and video)."""
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "matrix.md").write_text(matrix_markdown(cells) + "\n")
        names = ["matrix.md"]
        for level in dict.fromkeys(c.level for c in cells):
            plot_heatmap(cells, level, folder / f"heatmap_{level}.png")
            names.append(f"heatmap_{level}.png")
        for name in names:
            client.log_artifact(run_id, str(folder / name), artifact_path="cross_dataset")
    metrics = {}
    for cell in cells:
        prefix = f"cross_{cell.model}_{cell.dataset}_{cell.level}_"
        metrics[prefix + "frame_auc"] = cell.report.frame.auc
        metrics[prefix + "video_auc"] = cell.report.video.auc
    log_metrics(uri, run_id, metrics)
