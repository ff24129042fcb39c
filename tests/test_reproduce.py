"""reproduce.py: Table 1's cells trained, evaluated and set beside the paper's numbers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rayjobs.lib.config import load_job_config
from rayjobs.reproduce import (
    ALONE,
    KD,
    TEACHER,
    TEACHER_ON_COMPRESSED,
    Cell,
    ablation_jobs,
    ablation_markdown,
    ablation_trainings,
    main,
    paper_ablations,
    paper_table1,
    reproduce,
    table1_markdown,
)
from tests.helpers import EXPERIMENT, tiny_job


def test_paper_numbers_are_spec_table1():
    paper = paper_table1()
    assert paper[ALONE]["c40"]["Deepfakes"] == 88.90
    assert paper[KD]["c23"]["NeuralTextures"] == 96.84
    assert paper[TEACHER]["raw"]["FaceSwap"] == 99.20
    methods = {"Deepfakes", "FaceSwap", "Face2Face", "NeuralTextures"}
    assert all(
        set(by_method) == methods for levels in paper.values() for by_method in levels.values()
    )


def test_table_sets_each_cell_beside_the_paper_with_the_difference():
    cells = [
        Cell(KD, "c40", "Deepfakes", 90.0, 85.0, 94.5, 16, "r1"),
        Cell(TEACHER_ON_COMPRESSED, "c40", "Deepfakes", 80.0, 70.0, 88.0, 16, "r2"),
    ]
    table = table1_markdown(cells, ("Deepfakes",), ("c40",))
    assert "| SFFB + KD | c40 | Deepfakes | 16 | 92.00 | 90.00 [85.0, 94.5] | -2.00 |" in table
    assert "| Xception | c40 | Deepfakes | — | 83.70 | — | — |" in table  # the paper's only
    assert "| teacher, no retraining | c40 | Deepfakes | 16 | — | 80.00 [70.0, 88.0] | — |" in table
    assert "| SFFB + KD | c40 | 90.00 / 92.00 |" in table


def test_ablations_train_one_student_per_value_of_their_key():
    ablations = paper_ablations()
    fusion, knowledge = ablations[3], ablations[4]
    assert fusion.rows == {"sum": 83.00, "concat": 81.65, "chunked": 71.74, "sk": 83.45}
    job = load_job_config("cpu-demo", overrides=["data.methods=[Deepfakes]", "optim.lr=5e-4"])
    jobs = ablation_jobs(job, fusion)
    assert {v: j.model.fusion for v, j in jobs.items()} == {v: v for v in fusion.rows}
    for row in jobs.values():  # SFFB alone on Face2Face c40, everything else as given
        assert (row.loss.knowledge, row.data.methods, row.data.student_level) == (
            "none",
            ("Face2Face",),
            "c40",
        )
        assert row.optim.lr == 5e-4
    kd = ablation_jobs(job, knowledge)
    assert {v: j.loss.knowledge for v, j in kd.items()} == {v: v for v in knowledge.rows}
    table = ablation_markdown(
        knowledge, [Cell("fused_map", "c40", "Face2Face", 80, 70, 90, 16, "r")]
    )
    assert "| fused_map | 16 | — | 80.00 [70.0, 90.0] | — |" in table
    assert "| maps+logits | — | 85.63 | — | — |" in table


def test_backbone_table_distils_each_row_from_a_teacher_of_its_backbone():
    backbones = paper_ablations()[5]
    job = load_job_config("cpu-demo")
    trainings = ablation_trainings(job, backbones)
    assert [t.job.model.backbone for t in trainings] == list(backbones.rows)
    for student in trainings:
        assert student.job.loss.knowledge == "maps+logits" and student.teacher is not None
        assert student.teacher.job.model.backbone == student.job.model.backbone
    assert len({t.teacher.name for t in trainings}) == len(trainings)
    # The knowledge ablation's rows share one teacher (its identity leaves out the loss).
    knowledge = ablation_trainings(job, paper_ablations()[4])
    assert len({t.teacher.name for t in knowledge}) == 1


def test_unknown_tables_and_missing_methods_are_refused(capsys):
    with pytest.raises(SystemExit, match=r"the paper's tables are \[1, 3, 4, 5\]"):
        main(["--tables", "1", "6"])
    with pytest.raises(SystemExit, match="no methods: give --methods"):
        main(["--set", "data.methods=[]", "--set", "data.shards=/nonexistent"])


def test_reproduce_trains_every_cell_once_and_logs_a_parent_run(
    prepared, tmp_path, ray_session, capsys
):
    shards, _ = prepared
    job = tiny_job(shards, tmp_path, epochs=1)
    # An ablation table beside Table 1 (its path end to end), its one row the very run of
    # Table 1's SFFB alone at c40: a run two tables share is trained once.
    fusion = replace(paper_ablations()[3], method="Deepfakes", rows={"sk": 83.45})
    tables = reproduce(job, ("Deepfakes",), ("c40",), (1, 3), ablations={3: fusion})
    table, ablation = tables.split("\n\nTable 3: ")
    out = capsys.readouterr().out
    assert "Table 1 (test split, frame ACC %)" in out and table in out and ablation in out
    # The session's cluster: 4 CPUs, half for trainings of 2 workers x 0.5 CPU: two at once.
    assert "3 trainings, up to 2 at once" in out
    sk_row = next(line for line in ablation.splitlines() if line.startswith("| sk |"))
    assert "| 83.45 |" in sk_row and "—" not in sk_row, sk_row  # measured, with difference
    rows = [(ALONE, "c40"), (KD, "c40"), (TEACHER_ON_COMPRESSED, "c40"), (TEACHER, "raw")]
    for model, level in rows:
        row = f"| {model} | {level} | Deepfakes |"
        line = next(line for line in table.splitlines() if line.startswith(row))
        assert "—" not in line.split("|")[6], line  # this run's number is there
    assert "| 88.90 |" in table  # the paper's SFFB alone, c40, Deepfakes
    # Whether KD paid off, paired on the same videos: both baselines, with intervals.
    for baseline in (TEACHER_ON_COMPRESSED, ALONE):
        start = f"| c40 | Deepfakes | {baseline} |"
        line = next(x for x in table.splitlines() if x.startswith(start))
        assert line.count("[") == 2 and "—" not in line, line

    client = MlflowClient(job.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name.startswith("reproduce-"))
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["sffb.mode"] for r in children) == ["student", "student", "teacher"]
    assert parent.info.status == "FINISHED"
    kd = next(r for r in children if r.data.params.get("loss.knowledge") == "maps+logits")
    alone = next(r for r in children if r.data.params.get("loss.knowledge") == "none")
    teacher = next(r for r in children if r.data.tags["sffb.mode"] == "teacher")
    # SFFB alone needs no teacher: it trained while the teacher did; KD waited for it.
    assert alone.info.start_time < teacher.info.end_time
    assert teacher.info.start_time < alone.info.end_time
    assert kd.info.start_time >= teacher.info.end_time
    assert parent.data.metrics["table3_sk_c40_Deepfakes_frame_acc"] == pytest.approx(
        parent.data.metrics["table1_sffb_alone_c40_Deepfakes_frame_acc"]
    )  # the same run, scored on the same rows
    assert parent.data.metrics["table1_sffb_kd_c40_Deepfakes_frame_acc"] == pytest.approx(
        100 * kd.data.metrics["test_c40_frame_acc"]
    )
    table_file = Path(
        client.download_artifacts(parent.info.run_id, "reproduce/table1.md", str(tmp_path))
    )
    assert table_file.read_text().strip() == table.strip()

    # Relaunched: every cell is reused (no run trained again, no new run), the same tables.
    again = reproduce(job, ("Deepfakes",), ("c40",), (1, 3), ablations={3: fusion})
    assert capsys.readouterr().out.count("reusing") == 3
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)
    assert again == tables
