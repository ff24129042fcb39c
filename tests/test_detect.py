"""Detection on a user's own files: real H.264 clips, images and broken files, a real checkpoint
file, a real local Ray cluster and a real MLflow store."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

from data_prep.image_columns import decode_column, level_column, to_model_size
from data_prep.media import file_faces
from data_prep.video import Encoding, encode_video, iter_frames, probe
from rayjobs.detect import detect, main
from rayjobs.lib.calibration import LevelCalibration, save_calibration
from rayjobs.lib.checkpoints import load_model, save_state
from rayjobs.lib.config import load_job_config
from rayjobs.lib.detection_results import read_results
from rayjobs.lib.scoring import SCORE_BATCH, fake_scores
from rayjobs.lib.trained_model import load_trained_model, resolve_model
from sffb.cam import stage_cams
from sffb.model import SFFB, SFFBConfig
from tests.servers import free_port

pytestmark = pytest.mark.slow

#: 48 px: the 64 px test crops are resized to the model as training resizes them.
TINY = ["model.backbone=test_resnet", "model.image_size=48"]
CALIBRATION = LevelCalibration(temperature=2.0, threshold=0.4, val_frames=10)


@pytest.fixture(scope="module")
def teacher(prepared, tmp_path_factory) -> Path:
    """A teacher checkpoint as training writes it (random weights), calibrated on raw; written
    before checkpoints recorded their preparation, so its crops come from the shards' manifest."""
    shards, _ = prepared
    job = load_job_config("cpu-demo", overrides=[*TINY, f"data.shards={shards}"])
    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    save_state(folder, model=SFFB(job.model).state_dict(), config=job, history=[], epoch=0,
               mode="teacher")  # fmt: skip
    save_calibration(str(folder), {"raw": CALIBRATION})
    return folder


def _test_video(shards: Path, root: Path, label: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A test-split clip's raw file, and its shard rows' frame indices and raw crops."""
    table = pq.read_table(shards / "test")
    key = table.filter(pc.equal(table["label"], label))["video_key"][0].as_py()
    rows = table.filter(pc.equal(table["video_key"], key))
    video_id, method = rows["video_id"][0].as_py(), rows["method"][0].as_py()
    base = root / "original_sequences" / "youtube" if label == 0 else (
        root / "manipulated_sequences" / method)  # fmt: skip
    order = np.argsort(rows["frame_index"].to_numpy())
    crops = decode_column(rows[level_column(rows.column_names, "raw")].take(order), 48)
    return base / "raw" / "videos" / f"{video_id}.mp4", rows["frame_index"].to_numpy()[order], crops


def test_detection_scores_the_crops_the_model_was_trained_on(
    ray_session, prepared, synthetic_root, teacher, tmp_path
):
    """Frame scores of a raw clip equal the model's scores of that clip's prepared test rows:
    same sampled frames, face boxes, crops and resizing; then calibrated and thresholded."""
    shards, _ = prepared
    model = load_model(teacher)
    expected = {}
    for label in (0, 1):
        path, indices, crops = _test_video(shards, synthetic_root, label)
        raw = fake_scores(model, crops, torch.device("cpu"), SCORE_BATCH)
        expected[str(path)] = dict(zip(map(str, indices), CALIBRATION.apply(raw), strict=True))
    output = tmp_path / "scores.jsonl"
    outcome = detect(list(expected), model=str(teacher), output=str(output), progress=False)

    assert (outcome.files, outcome.scored, outcome.failed) == (2, 2, 0)
    records = read_results(str(output))
    assert [r["path"] for r in records] == list(expected)  # input order
    for record in records:
        wanted = expected[record["path"]]
        assert record["frame_scores"].keys() == wanted.keys()
        got = np.array([record["frame_scores"][k] for k in wanted])
        np.testing.assert_allclose(got, list(wanted.values()), rtol=1e-5, atol=1e-6)
        assert record["video_score"] == pytest.approx(np.mean(got))
        assert record["label"] == ("fake" if record["video_score"] > 0.4 else "real")
        assert record["frames_scored"] == len(wanted) and record["error"] is None


def _gray_clip(path: Path) -> Path:
    """A real H.264 clip without a face."""
    encode_video([np.full((64, 64, 3), 128, np.uint8)] * 4, path, Fraction(25), Encoding())
    return path


def test_bad_files_are_recorded_and_the_batch_goes_on(
    ray_session, synthetic_root, teacher, tmp_path, capsys
):
    """Every kind of bad input gets its reason; a folder and a glob expand; CSV round-trips;
    an image is one frame; Grad-CAM pictures are written for every scored frame."""
    clip = next((synthetic_root / "original_sequences" / "youtube" / "raw" / "videos").glob("*"))
    _, frame = next(iter_frames(clip, [0], probe(clip).frame_count))
    inputs = tmp_path / "inputs"
    (inputs / "nested").mkdir(parents=True)
    cv2.imwrite(str(inputs / "nested" / "still.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (inputs / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (inputs / "empty.mp4").write_bytes(b"")
    (inputs / "notes.jpg").write_text("not an image")
    _gray_clip(inputs / "gray.mp4")
    missing = tmp_path / "missing.mov"
    output, cams = tmp_path / "scores.csv", tmp_path / "cams"

    main([str(inputs), str(tmp_path / "none-*.mp4"), str(missing), str(clip),
          "--model", str(teacher), "--output", str(output), "--cam", str(cams)])  # fmt: skip

    records = {Path(r["path"]).name: r for r in read_results(str(output))}
    assert records.keys() == {"broken.mp4", "empty.mp4", "gray.mp4", "notes.jpg", "still.png",
                              "none-*.mp4", "missing.mov", clip.name}  # fmt: skip
    assert "not a readable video" in records["broken.mp4"]["error"]
    assert "empty file" in records["empty.mp4"]["error"]
    assert "no face detected" in records["gray.mp4"]["error"]
    assert "not a readable image" in records["notes.jpg"]["error"]
    assert "not found" in records["missing.mov"]["error"]
    assert "not found" in records["none-*.mp4"]["error"]
    assert records["still.png"]["frames_scored"] == 1 and records["still.png"]["error"] is None
    assert records[clip.name]["frames_scored"] == 8  # the training data's frames per video
    for name in ("still.png", clip.name):
        assert 0 <= records[name]["video_score"] <= 1 and records[name]["label"] in ("real", "fake")
    printed = capsys.readouterr().out
    assert "2 scored, 6 not scored" in printed and "no face detected" in printed

    pictures = sorted(cams.rglob("*.png"))
    assert len(pictures) == 1 + 8
    strip = cv2.imread(str(pictures[-1]))
    assert strip.shape == (48, 4 * 48, 3)  # crop | spatial | frequency | fused
    maps = [strip[:, 48 * i : 48 * (i + 1)].astype(int) for i in range(1, 4)]
    assert not np.array_equal(maps[0], maps[1]) and not np.array_equal(maps[1], maps[2])


def test_nothing_scorable_exits_non_zero(ray_session, teacher, tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"junk")
    with pytest.raises(SystemExit, match="no input could be scored"):
        main([str(tmp_path / "a.mp4"), "--model", str(teacher), "--output",
              str(tmp_path / "out.jsonl")])  # fmt: skip
    assert read_results(str(tmp_path / "out.jsonl"))[0]["error"]  # still recorded


def test_models_named_by_mlflow_run_and_default_newest_student(teacher, tmp_path):
    """``runs:/<id>`` and the default resolve through a real MLflow store's tags."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("sffb")
    with pytest.raises(FileNotFoundError, match="no distilled student"):
        resolve_model(None, uri)
    made = {}
    for name, mode, knowledge in (("old", "student", "maps+logits"), ("alone", "student", "none"),
                                  ("teacher", "teacher", "maps+logits")):  # fmt: skip
        run = client.create_run(experiment, run_name=name, tags={"sffb.mode": mode})
        client.log_param(run.info.run_id, "loss.knowledge", knowledge)
        client.set_tag(run.info.run_id, "sffb.best_checkpoint", str(tmp_path / name))
        made[name] = run.info.run_id
    assert resolve_model(None, uri) == str(tmp_path / "old")  # not SFFB alone, not a teacher
    assert resolve_model(f"runs:/{made['teacher']}", uri) == str(tmp_path / "teacher")
    bare = client.create_run(experiment, run_name="unfinished").info.run_id
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        resolve_model(f"runs:/{bare}", uri)


def test_recorded_preparation_wins_and_the_level_follows_the_mode(teacher, tmp_path):
    state = torch.load(teacher / "state.pt", weights_only=True)
    preparation = {"detector": "none", "margin": 1.0, "crop_size": 32, "frames_per_video": 3}
    torch.save(state | {"preparation": json.dumps(preparation), "mode": "student"},
               tmp_path / "state.pt")  # fmt: skip
    loaded = load_trained_model(str(tmp_path))
    assert (loaded.crops.detector, loaded.crops.crop_size, loaded.crops.frames_per_video) == (
        "none", 32, 3)  # fmt: skip
    assert loaded.level == loaded.config.data.student_level and loaded.calibration is None
    assert loaded.threshold == 0.5
    assert load_trained_model(str(teacher)).level == "raw"


def test_grad_cam_matches_a_direct_computation():
    """The package's map of the spatial stage equals Grad-CAM written out with autograd:
    ReLU(sum_c mean(dlogit_fake/dA_c) * A_c), min-max scaled, resized to the crop, rescaled."""
    torch.manual_seed(1)
    model = SFFB(SFFBConfig(backbone="test_resnet", image_size=64)).eval()
    images = torch.rand(2, 3, 64, 64, dtype=torch.float64).float()
    package = stage_cams(model, images)["spatial"]

    output = model(images)
    activations = output.spatial_map
    (gradients,) = torch.autograd.grad(output.logits[:, 1].sum(), activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cams = torch.relu((weights * activations).sum(dim=1)).detach().double().numpy()
    for cam, got in zip(cams, package, strict=True):
        cam = cam - cam.min()
        cam = cam / (1e-7 + cam.max())
        expected = cv2.resize(cam.astype(np.float32), (64, 64))
        expected = (expected - expected.min()) / (1e-7 + expected.max() - expected.min())
        np.testing.assert_allclose(got, expected, atol=1e-4)


def _post(url: str, name: str, body: bytes, form: bool) -> tuple[int, dict]:
    """POST a file as ``curl -F file=@name`` does (``form``) or as the raw body + ?filename=."""
    if form:
        answer = requests.post(f"{url}/detect", files={"file": (name, body)}, timeout=120)
    else:
        answer = requests.post(f"{url}/detect", params={"filename": name}, data=body, timeout=120)
    return answer.status_code, answer.json()


def test_ray_serve_answers_concurrent_uploads_and_survives_a_corrupt_one(
    ray_session, synthetic_root, teacher
):
    """Eight clips posted at once, half as form uploads and half as raw bodies, are each scored
    as detection scores them (frames batched across requests); a corrupt upload and a form
    without a file get a 400 with the reason; the server still answers."""
    from ray import serve

    from rayjobs.serve import app

    clips = sorted(synthetic_root.rglob("raw/videos/*.mp4"))[::7][:8]
    trained = load_trained_model(str(teacher))
    model = load_model(teacher)
    expected = {}
    for clip in clips:
        crops = file_faces(str(clip), trained.crops).faces.crops
        images = np.stack([to_model_size(crops[i], 48).transpose(2, 0, 1) for i in sorted(crops)])
        expected[clip.name] = CALIBRATION.apply(fake_scores(model, images, torch.device("cpu")))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(app({"model": str(teacher)}), name="sffb", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        uploads = [(url, c.name, c.read_bytes(), i % 2 == 0) for i, c in enumerate(clips)]
        uploads.append((url, "bad.mp4", b"\x00\x01 not a video", True))
        with ThreadPoolExecutor(len(uploads)) as pool:
            answers = list(pool.map(lambda u: _post(*u), uploads))
        for clip, (status, record) in zip(clips, answers, strict=False):
            assert status == 200, record
            got = [record["frame_scores"][k] for k in sorted(record["frame_scores"], key=int)]
            np.testing.assert_allclose(got, expected[clip.name], rtol=1e-5, atol=1e-6)
            assert record["path"] == clip.name and record["label"] in ("real", "fake")
        status, record = answers[-1]
        assert status == 400 and "not a readable video" in record["error"]
        assert record["path"] == "bad.mp4"
        no_file = requests.post(f"{url}/detect", files={"note": (None, "hi")}, timeout=60)
        assert no_file.status_code == 400 and "holds no file" in no_file.json()["error"]
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as answer:
            assert json.loads(answer.read())["model"] == str(teacher)
    finally:
        serve.shutdown()
