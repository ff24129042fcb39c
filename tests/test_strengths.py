"""AUC by manipulation strength, against scikit-learn on each bin's frames picked by hand."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from data_prep.defaults import embedded_prepare_config, embedded_strengths, synthetic_root
from data_prep.synthetic import STRENGTHS
from rayjobs.evaluate import main as evaluate_main
from rayjobs.lib.strengths import (
    bin_edges,
    load_strengths,
    row_strengths,
    strength_markdown,
    strength_rows,
    strength_table,
)

FRAMES = 4


def scored_split(seed: int = 0):
    """12 real and 12 fake videos of two methods; a fake's score rises with its strength."""
    rng = np.random.default_rng(seed)
    keys, methods, labels, strengths = [], [], [], {}
    for index in range(12):
        keys.append(f"ffpp/original/{index:03d}")
        methods.append("original")
        labels.append(0)
    for index in range(12):
        method = ("Deepfakes", "FaceSwap")[index % 2]
        video = f"{index:03d}_{index + 1:03d}"
        keys.append(f"ffpp/{method}/{video}")
        methods.append(method)
        labels.append(1)
        strengths.setdefault(method, {})[video] = 0.2 + 0.8 * index / 11
    scores = {
        "video_key": np.repeat(keys, FRAMES),
        "method": np.repeat(methods, FRAMES),
        "label": np.repeat(labels, FRAMES),
    }
    recorded = {(m, v): s for m, videos in strengths.items() for v, s in videos.items()}
    lift = np.array(
        [recorded.get((m, k.rsplit("/", 1)[-1]), 0.0) for m, k in zip(methods, keys, strict=True)]
    )
    noise = rng.normal(0, 0.25, scores["label"].size)
    scores["score_c40"] = np.clip(0.4 + np.repeat(0.5 * lift, FRAMES) + noise, 0, 1)
    return scores, strengths


def test_each_bin_is_its_fakes_against_every_real_as_sklearn_scores_them(tmp_path):
    scores, strengths = scored_split()
    path = tmp_path / STRENGTHS
    path.write_text(json.dumps(strengths))
    per_row = row_strengths(scores, load_strengths(path), str(path))
    assert np.isnan(per_row[scores["label"] == 0]).all()
    edges = bin_edges(per_row, 4)
    assert edges[0] == pytest.approx(0.2) and edges[-1] == pytest.approx(1.0)
    rows = strength_rows({"model": scores}, per_row, ("c40",), edges)
    assert [row.fake_videos for row in rows] == [3, 3, 3, 3]  # the strongest fake in the last
    for row in rows:
        chosen = (scores["label"] == 0) | ((per_row >= row.low - 1e-12) & (per_row <= row.high))
        if row is not rows[-1]:
            chosen &= ~(per_row >= row.high)
        expected = roc_auc_score(scores["label"][chosen], scores["score_c40"][chosen])
        assert row.report.frame.auc == pytest.approx(expected)
    # Scores rise with strength, so the strongest bin is the easiest.
    assert rows[-1].report.frame.auc > rows[0].report.frame.auc
    assert strength_table({"model": scores}, load_strengths(path), str(path), ("c40",)) == rows


def test_intervals_and_the_table_name_every_bin(tmp_path):
    scores, strengths = scored_split(seed=1)
    path = tmp_path / STRENGTHS
    path.write_text(json.dumps(strengths))
    scored = {"student": scores, "teacher": scores}
    rows = strength_table(scored, load_strengths(path), str(path), ("c40",), 2, 200)
    assert len(rows) == 4 and {row.model for row in rows} == {"student", "teacher"}
    for row in rows:
        interval = row.report.intervals["frame_auc"]
        assert interval.low <= row.report.frame.auc <= interval.high
    text = strength_markdown(rows)
    assert "| student | c40 | 0.20-0.60 | 6 |" in text
    assert "| teacher | c40 | 0.60-1.00 | 6 |" in text


def test_a_fake_without_a_recorded_strength_names_the_file_and_the_video(tmp_path):
    scores, strengths = scored_split()
    del strengths["FaceSwap"]["001_002"]
    path = tmp_path / STRENGTHS
    path.write_text(json.dumps(strengths))
    with pytest.raises(ValueError, match=r"manipulations\.json.*1 fake.*ffpp/FaceSwap/001_002"):
        row_strengths(scores, load_strengths(path), str(path))


def test_a_file_that_is_not_a_manipulations_record_is_refused_by_name(tmp_path):
    path = tmp_path / "strengths.json"
    path.write_text(json.dumps(["not", "a", "mapping"]))
    with pytest.raises(ValueError, match=r"strengths\.json: not a manipulations file"):
        load_strengths(path)


def test_the_embedded_shards_bring_their_strengths_and_others_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SFFB_HOME", str(tmp_path))
    shards = embedded_prepare_config().output
    assert embedded_strengths(shards) is None  # the synthetic videos are not generated yet
    recorded = synthetic_root() / STRENGTHS
    recorded.parent.mkdir(parents=True)
    recorded.write_text(json.dumps({"Deepfakes": {"000_001": 0.5}}))
    assert embedded_strengths(shards) == str(recorded)
    assert embedded_strengths(str(tmp_path / "shards" / "other")) is None


def test_strengths_with_the_matrix_mode_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        evaluate_main(["--checkpoint", "a", "b", "--matrix", "--strengths", STRENGTHS])
    assert "--strengths breaks down one model's evaluation" in capsys.readouterr().err
