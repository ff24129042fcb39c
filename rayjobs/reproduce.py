"""The paper's Table 1 as one resumable command: per method, a raw teacher and, at each
compression level, SFFB alone and SFFB + KD, all evaluated on test beside the paper's numbers;
``--tables 3 4 5`` adds the fusion, knowledge and backbone ablations.

    python rayjobs/reproduce.py                          # small: the embedded default, cpu-demo
    python rayjobs/reproduce.py --preset paper --set data.shards=/data/shards/ffpp \
        --set model.pretrained_path=/weights/xception.pth --methods Deepfakes Face2Face \
        FaceSwap NeuralTextures --levels c23 c40 --tables 1 3 4 5

Every cell is an ordinary run under its default name (the teacher's shared by both levels of a
method and by every ablation row), so a relaunch reuses each finished cell and its logged
evaluation and trains only what is missing; each cell is a child of one MLflow parent run
(``reproduce-<hash>``) that holds the tables (``reproduce/table<N>.md``) and one metric per
cell. Independent trainings run at once when the cluster has room (``--concurrent``). Below
Table 1, the KD student minus the teacher on compressed frames and minus SFFB alone, paired
over the same test videos, says cell by cell whether distillation paid off. The paper's numbers
are data: ``rayjobs/paper_results.yaml``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import yaml
from mlflow.tracking import MlflowClient

from data_prep.cluster import ensure_ray
from rayjobs.evaluate import DIFFERENCE_LEGEND, TableRow, evaluate, format_difference
from rayjobs.lib.config import JobConfig, add_config_arguments, config_from_args
from rayjobs.lib.configtree import flatten, from_dict, merge, parse_override, to_dict
from rayjobs.lib.launch import (
    USER_ERRORS,
    best_checkpoint_path,
    default_run_name,
    pretrain_teacher,
    resolve_data,
    run_training,
    storage_path,
    use_gpu,
)
from rayjobs.lib.run_names import run_identity
from rayjobs.lib.tracking import (
    find_or_create_run,
    find_run,
    log_metrics,
    set_tags,
    tracking_uri,
)
from rayjobs.lib.training_graph import Training, TrainingFailed, room_for, train_all
from sffb.metrics import Interval

PAPER_RESULTS = Path(__file__).with_name("paper_results.yaml")
TEACHER, ALONE, KD = "SFFB teacher", "SFFB alone", "SFFB + KD"
#: Ours only: the raw teacher applied to the student's compressed frames, no retraining.
TEACHER_ON_COMPRESSED = "teacher, no retraining"
ROW_ORDER = ("Xception", "ADD (KD baseline)", ALONE, KD, TEACHER_ON_COMPRESSED)
#: evaluate.py's model names -> this table's
EVALUATED = {"student": KD, "sffb-alone": ALONE, "teacher": TEACHER_ON_COMPRESSED}
#: This table's model names -> the parent run's metric names (``table1_<slug>_<level>_<method>``)
SLUGS = {TEACHER: "teacher", ALONE: "sffb_alone", KD: "sffb_kd",
         TEACHER_ON_COMPRESSED: "teacher_no_retraining"}  # fmt: skip


def paper_table1() -> dict[str, dict[str, dict[str, float]]]:
    """model -> level -> method -> frame ACC %, as the paper reports it."""
    return yaml.safe_load(PAPER_RESULTS.read_text())["table1"]


@dataclass(frozen=True)
class Ablation:
    """One of the paper's ablation tables: a student trained per value of one key."""

    number: int
    title: str
    method: str
    level: str
    student: str  # "alone" (SFFB alone) or "kd" (SFFB + KD)
    key: str  # a configuration key, e.g. model.fusion
    rows: dict[str, float | None]  # value -> the paper's frame ACC % (None: not restated)


def paper_ablations() -> dict[int, Ablation]:
    tables = yaml.safe_load(PAPER_RESULTS.read_text())["ablations"]
    return {int(n): Ablation(number=int(n), **spec) for n, spec in tables.items()}


def ablation_jobs(job: JobConfig, ablation: Ablation) -> dict[str, JobConfig]:
    """value -> the student job of that row (method, level, the key set; no KD for ``alone``)."""
    data = replace(job.data, methods=(ablation.method,), student_level=ablation.level)
    base = to_dict(replace(job, data=data))
    if ablation.student == "alone":
        base = to_dict(from_dict(JobConfig, base).sffb_alone())
    return {
        value: from_dict(JobConfig, merge(base, parse_override(f"{ablation.key}={value}")))
        for value in ablation.rows
    }


@dataclass(frozen=True)
class Cell:
    """One measured number of the table: a model's test frame ACC for a method and level."""

    model: str
    level: str
    method: str
    acc: float  # %
    low: float  # % (95 % bootstrap interval over videos)
    high: float
    videos: int
    run_id: str


def _cell(model: str, row: TableRow, run_id: str) -> Cell:
    interval = row.report.intervals.get("frame_acc")
    low, high = (interval.low, interval.high) if interval else (float("nan"),) * 2
    return Cell(
        model, row.level, row.method, 100 * row.report.frame.acc, 100 * low, 100 * high,
        row.report.video.count, run_id,
    )  # fmt: skip


def logged_cell(
    uri: str, model: str, level: str, method: str, run_id: str, prefix: str
) -> Cell | None:
    """The cell an earlier evaluation logged on ``run_id`` (metrics ``<prefix>frame_acc`` ...),
    or None: a relaunch reuses it instead of scoring again."""
    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    names = ("frame_acc", "frame_acc_ci_low", "frame_acc_ci_high", "video_count")
    if not all(prefix + name in metrics for name in names):
        return None
    acc, low, high, videos = (metrics[prefix + name] for name in names)
    return Cell(model, level, method, 100 * acc, 100 * low, 100 * high, int(videos), run_id)


def trained(job: JobConfig, mode: str, teacher: str | None = None) -> tuple[str, str]:
    """(MLflow run id, best checkpoint) of the job's default-named run, trained only if it has
    not finished before."""
    uri = tracking_uri(job.tracking.tracking_uri)
    name = default_run_name(job, mode)
    best = best_checkpoint_path(storage_path(job), name)
    run_id = find_run(uri, job.tracking.experiment, name)
    if run_id and MlflowClient(uri).get_run(run_id).info.status == "FINISHED":
        print(f"reusing {mode} run {name} (finished)")
        return run_id, best
    outcome = pretrain_teacher(job, name) if mode == "teacher" else run_training(job, mode, teacher)
    return outcome.mlflow_run_id, outcome.best_checkpoint


def _method_job(job: JobConfig, method: str, level: str | None = None) -> JobConfig:
    data = replace(job.data, methods=(method,))
    return replace(job, data=replace(data, student_level=level) if level else data)


def table1_trainings(job: JobConfig, methods, levels) -> list[Training]:
    """Per method a raw teacher; per level SFFB alone and SFFB + KD (after the teacher)."""
    trainings = []
    for method in methods:
        teacher = Training(_method_job(job, method), "teacher")
        trainings.append(teacher)
        for level in levels:
            student = _method_job(job, method, level)
            trainings.append(Training(student.sffb_alone(), "student"))
            trainings.append(Training(student, "student", teacher))
    return trainings


def ablation_trainings(job: JobConfig, ablation: Ablation) -> list[Training]:
    """One student per row; a KD row after its own teacher (the rows share one unless the key
    changes the architecture, e.g. the backbone)."""
    kd = ablation.student == "kd"
    return [
        Training(row, "student", Training(row, "teacher") if kd else None)
        for row in ablation_jobs(job, ablation).values()
    ]


def method_cells(
    job: JobConfig, method: str, levels: tuple[str, ...], runs: dict[str, tuple[str, str]]
) -> list[Cell]:
    """Evaluate (or reuse the logged evaluation of) one method's trained column: teacher on
    raw, then per level SFFB alone, SFFB + KD and the teacher on that level's frames."""
    uri = tracking_uri(job.tracking.tracking_uri)
    shards = job.data.shards
    teacher_run, teacher = runs[default_run_name(_method_job(job, method), "teacher")]
    cell = logged_cell(uri, TEACHER, "raw", method, teacher_run, "test_raw_")
    if cell is None:
        rows = evaluate(teacher, shards, ("raw",), (method,), teacher_run, uri, model="teacher")
        cell = next(_cell(TEACHER, r, teacher_run) for r in rows if r.method == method)
    cells = [cell]
    for level in levels:
        student = _method_job(job, method, level)
        alone_run, alone = runs[default_run_name(student.sffb_alone(), "student")]
        kd_run, kd = runs[default_run_name(student, "student")]
        links = {"sffb.teacher_checkpoint": teacher, "sffb.teacher_run_id": teacher_run}
        set_tags(uri, kd_run, links)
        # evaluate.py's names and metric prefixes on the KD run (baselines scored beside it)
        prefixes = {
            "student": f"test_{level}_",
            "sffb-alone": f"baseline_sffb-alone_test_{level}_",
            "teacher": f"baseline_teacher_test_{level}_",
        }
        logged = [
            logged_cell(uri, EVALUATED[name], level, method, kd_run, prefix)
            for name, prefix in prefixes.items()
        ]
        if None in logged:
            baselines = {"teacher": teacher, "sffb-alone": alone}
            rows = evaluate(kd, shards, (level,), (method,), kd_run, uri, baselines, "student")
            by_name = {r.model: r for r in rows if r.method == method}
            logged = [_cell(EVALUATED[name], by_name[name], kd_run) for name in prefixes]
        run_of = {"student": kd_run, "sffb-alone": alone_run, "teacher": teacher_run}
        cells += [replace(c, run_id=run_of[n]) for c, n in zip(logged, prefixes, strict=True)]
    return cells


def _ours(cell: Cell | None) -> str:
    if cell is None:
        return "—"
    return f"{cell.acc:.2f} [{cell.low:.1f}, {cell.high:.1f}]"


def table1_markdown(cells: list[Cell], methods: tuple[str, ...], levels: tuple[str, ...]) -> str:
    """Long layout (paper, this run with its interval, difference, test videos per cell), then
    the paper's Table 1 layout with "this run / paper" in each cell."""
    paper = paper_table1()
    found = {(c.model, c.level, c.method): c for c in cells}
    keys = [(m, lv) for lv in levels for m in ROW_ORDER] + [(TEACHER, "raw")]
    lines = [
        "| model | level | method | test videos | paper ACC | this run ACC [95 % CI] "
        "| difference |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for model, level in keys:
        for method in methods:
            theirs = paper.get(model, {}).get(level, {}).get(method)
            cell = found.get((model, level, method))
            if cell is None and theirs is None:
                continue
            videos = str(cell.videos) if cell else "—"
            shown = f"{theirs:.2f}" if theirs is not None else "—"
            gap = f"{cell.acc - theirs:+.2f}" if cell and theirs is not None else "—"
            lines.append(
                f"| {model} | {level} | {method} | {videos} | {shown} | {_ours(cell)} | {gap} |"
            )
    lines += ["", "Frame ACC %, this run / paper (— where one side has no number):", ""]
    lines += [
        "| model | level | " + " | ".join(methods) + " |",
        "|---|---|" + "---:|" * len(methods),
    ]
    for model, level in keys:
        parts = []
        for method in methods:
            cell = found.get((model, level, method))
            theirs = paper.get(model, {}).get(level, {}).get(method)
            ours = f"{cell.acc:.2f}" if cell else "—"
            parts.append(f"{ours} / {theirs:.2f}" if theirs is not None else f"{ours} / —")
        lines.append(f"| {model} | {level} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


#: The KD run's baselines (evaluate.py's names) in the gains table, and this table's names.
GAIN_BASELINES = {"teacher": TEACHER_ON_COMPRESSED, "sffb-alone": ALONE}


def kd_gains_markdown(uri: str, cells: list[Cell]) -> str:
    """SFFB + KD minus each baseline per level and method, in frame ACC and AUC points with
    their paired 95 % intervals, from the differences the KD run's evaluation logged."""
    lines = [
        f"{KD} minus each baseline, on the same test frames ({DIFFERENCE_LEGEND}):",
        "",
        "| level | method | minus | frame ACC | frame AUC |",
        "|---|---|---|---:|---:|",
    ]
    client = MlflowClient(uri)
    for cell in (c for c in cells if c.model == KD):
        metrics = client.get_run(cell.run_id).data.metrics
        for baseline, shown in GAIN_BASELINES.items():
            values = []
            for name in ("frame_acc", "frame_auc"):
                key = f"baseline_{baseline}_test_{cell.level}_{name}_delta"
                values.append(_gain(metrics, key))
            lines.append(f"| {cell.level} | {cell.method} | {shown} | {' | '.join(values)} |")
    return "\n".join(lines)


def _gain(metrics: dict[str, float], key: str) -> str:
    """The logged difference as evaluation prints it, or — if not logged (an evaluation from
    before paired differences existed)."""
    if key not in metrics:
        return "—"
    interval = Interval(metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"])
    return format_difference(metrics[key], interval)


def ablation_cells(
    job: JobConfig, ablation: Ablation, runs: dict[str, tuple[str, str]]
) -> list[Cell]:
    """Evaluate (or reuse the logged evaluation of) every trained row of an ablation table."""
    uri = tracking_uri(job.tracking.tracking_uri)
    cells = []
    for value, row_job in ablation_jobs(job, ablation).items():
        run_id, checkpoint = runs[default_run_name(row_job, "student")]
        prefix, level, method = f"test_{ablation.level}_", ablation.level, ablation.method
        cell = logged_cell(uri, value, level, method, run_id, prefix)
        if cell is None:
            rows = evaluate(checkpoint, job.data.shards, (level,), (method,), run_id, uri)
            cell = next(_cell(value, r, run_id) for r in rows if r.method == method)
        cells.append(cell)
    return cells


def ablation_markdown(ablation: Ablation, cells: list[Cell]) -> str:
    found = {c.model: c for c in cells}
    lines = [
        f"Table {ablation.number}: {ablation.title} (frame ACC %, rows: {ablation.key})",
        "",
        "| value | test videos | paper ACC | this run ACC [95 % CI] | difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for value, theirs in ablation.rows.items():
        cell = found.get(value)
        videos = str(cell.videos) if cell else "—"
        shown = f"{theirs:.2f}" if theirs is not None else "—"
        gap = f"{cell.acc - theirs:+.2f}" if cell and theirs is not None else "—"
        lines.append(f"| {value} | {videos} | {shown} | {_ours(cell)} | {gap} |")
    return "\n".join(lines)


def parent_run(job: JobConfig, methods, levels, tables=(1,)) -> str:
    """The reproduction's MLflow parent run, one per configuration, methods and levels."""
    identity = {
        "job": run_identity(job, "student"), "methods": methods, "levels": levels,
        "tables": list(tables),
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    params = {**flatten(to_dict(job)), "reproduce.methods": methods, "reproduce.levels": levels}
    uri = tracking_uri(job.tracking.tracking_uri)
    run_id, _ = find_or_create_run(
        uri, job.tracking.experiment, f"reproduce-{digest}", params, {"sffb.mode": "reproduce"}
    )
    return run_id


def log_table(uri: str, parent: str, number: int, cells: list[Cell], table: str) -> None:
    """Table ``number`` under the parent run: cells as children, one metric each, the table."""
    client = MlflowClient(uri)
    metrics = {}
    for cell in cells:
        set_tags(uri, cell.run_id, {"mlflow.parentRunId": parent})
        row = SLUGS.get(cell.model, cell.model.replace("+", "_"))
        metrics[f"table{number}_{row}_{cell.level}_{cell.method}_frame_acc"] = cell.acc
    log_metrics(uri, parent, metrics)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"table{number}.md"
        path.write_text(table + "\n")
        client.log_artifact(parent, str(path), artifact_path="reproduce")


def reproduce(
    job: JobConfig,
    methods: tuple[str, ...],
    levels: tuple[str, ...],
    tables=(1,),
    concurrency: int = 0,
    ablations: dict[int, Ablation] | None = None,
) -> str:
    """Every cell of ``tables`` trained or reused (``concurrency`` trainings at once; 0: as
    many as the cluster has room for), evaluated, tabulated, printed and logged; returns the
    tables' Markdown. ``ablations``: the ablation tables by number (default: the paper's)."""
    job = resolve_data(replace(job, tracking=replace(job.tracking, run_name="")))
    uri = tracking_uri(job.tracking.tracking_uri)
    parent = parent_run(job, methods, levels, tables)
    ablations = ablations or paper_ablations()
    trainings = table1_trainings(job, methods, levels) if 1 in tables else []
    for number in (n for n in tables if n != 1):
        trainings += ablation_trainings(job, ablations[number])
    ensure_ray()
    if concurrency <= 0:
        concurrency = room_for(job, ray.cluster_resources(), use_gpu(job))
    print(f"{len({t.name for t in trainings})} trainings, up to {concurrency} at once", flush=True)
    runs = train_all(trainings, trained, concurrency)
    printed = []
    if 1 in tables:
        cells = [cell for method in methods for cell in method_cells(job, method, levels, runs)]
        table = table1_markdown(cells, methods, levels) + "\n\n" + kd_gains_markdown(uri, cells)
        print("\nTable 1 (test split, frame ACC %):\n")
        print(table)
        log_table(uri, parent, 1, cells, table)
        printed.append(table)
    for number in (n for n in tables if n != 1):
        cells = ablation_cells(job, ablations[number], runs)
        table = ablation_markdown(ablations[number], cells)
        print(f"\n{table}")
        log_table(uri, parent, number, cells, table)
        printed.append(table)
    MlflowClient(uri).set_terminated(parent, "FINISHED")
    return "\n\n".join(printed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument(
        "--methods", nargs="+",
        help="manipulation methods, one column each (default: the preset's data.methods)",
    )  # fmt: skip
    parser.add_argument("--levels", nargs="+", default=["c23", "c40"], help="student levels")
    parser.add_argument(
        "--tables", nargs="+", type=int, default=[1],
        help="paper tables: 1 (methods x levels), 3 (fusion ablation), 4 (knowledge ablation), "
        "5 (backbones)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrent", type=int, default=0,
        help="trainings at once (default 0: as many as the cluster has room for, leaving half "
        "its CPUs to Ray Data; 1: one after another)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        built = {1, *paper_ablations()}
        if not set(args.tables) <= built:
            raise ValueError(f"--tables {args.tables}: the paper's tables are {sorted(built)}")
        job = config_from_args(args)
        methods = tuple(args.methods or job.data.methods)
        if 1 in args.tables and not methods:
            raise ValueError("no methods: give --methods (Table 1 has one column per method)")
        tables = tuple(dict.fromkeys(args.tables))
        reproduce(job, methods, tuple(args.levels), tables, args.concurrent)
    except (*USER_ERRORS, TrainingFailed) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
