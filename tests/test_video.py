"""H.264 writing and compression with PyAV: frame count and order preserved, levels real."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep.compress import CompressConfig, compress_dataset, encoding_for
from data_prep.extract import sample_indices
from data_prep.video import Encoding, VideoError, compress_video, encode_video, iter_frames, probe


def numbered_frames(count: int, size=(64, 80)) -> list[np.ndarray]:
    """Frames whose content says their index: a bright bar at a position set by the index."""
    frames = []
    for i in range(count):
        frame = np.full((*size, 3), 40, np.uint8)
        frame[:, 4 * i : 4 * i + 4] = 220
        frames.append(cv2.GaussianBlur(frame, (5, 5), 1))
    return frames


def decoded(path: Path) -> list[np.ndarray]:
    count = probe(path).frame_count
    return [f for _, f in iter_frames(path, range(count), count)]


def test_lossless_raw_is_bit_exact(tmp_path):
    frames = numbered_frames(12)
    assert encode_video(frames, tmp_path / "raw.mp4", Fraction(25), Encoding.lossless()) == 12
    assert all(
        np.array_equal(a, b) for a, b in zip(decoded(tmp_path / "raw.mp4"), frames, strict=True)
    )


@pytest.mark.parametrize(
    "encoding", [encoding_for("c23"), encoding_for("c40"), encoding_for("c30", "qp")]
)
def test_compression_keeps_every_frame_in_order(tmp_path, encoding):
    frames = numbered_frames(15)
    encode_video(frames, tmp_path / "raw.mp4", Fraction(25), Encoding.lossless())
    assert compress_video(tmp_path / "raw.mp4", tmp_path / "out.mp4", encoding) == 15
    out = decoded(tmp_path / "out.mp4")
    assert len(out) == 15
    for i, frame in enumerate(out):  # each decoded frame is closest to its own original
        errors = [np.abs(frame.astype(int) - f).mean() for f in frames]
        assert int(np.argmin(errors)) == i
    assert probe(tmp_path / "out.mp4").fps == Fraction(25)


def test_c40_loses_more_than_c23(tmp_path):
    rng = np.random.default_rng(0)
    noise = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(6)]
    frames = [(cv2.GaussianBlur(n, (0, 0), 1.5) * 1000 % 255).astype(np.uint8) for n in noise]
    encode_video(frames, tmp_path / "raw.mp4", Fraction(25), Encoding.lossless())
    psnr = {}
    for level in ("c23", "c40"):
        compress_video(tmp_path / "raw.mp4", tmp_path / f"{level}.mp4", encoding_for(level))
        psnr[level] = np.mean(
            [
                cv2.PSNR(a, b)
                for a, b in zip(decoded(tmp_path / f"{level}.mp4"), frames, strict=True)
            ]
        )
    assert psnr["c23"] > psnr["c40"] + 3


def test_bad_levels_are_refused():
    assert encoding_for("c23").options() == {"crf": "23"}
    assert encoding_for("c23", "qp").options() == {"qp": "23"}
    with pytest.raises(ValueError, match="'hq'"):
        encoding_for("hq")
    with pytest.raises(ValueError, match="0 to 51"):
        encoding_for("c60")


def test_bad_files_raise_video_errors(tmp_path):
    with pytest.raises(VideoError, match="file not found"):
        probe(tmp_path / "absent.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4: empty file"):
        probe(tmp_path / "empty.mp4")


def test_sampling_spreads_over_the_video():
    assert sample_indices(300, 5) == [0, 75, 150, 224, 299]
    assert sample_indices(4, 50) == [0, 1, 2, 3]
    many = sample_indices(51, 50)
    assert len(set(many)) == 50 and many[0] == 0 and many[-1] == 50


def test_compress_dataset_fills_the_folder_layout(tmp_path, ray_session):
    for label in ("real", "fake"):
        for i in range(2):
            encode_video(
                numbered_frames(6), tmp_path / label / f"{i}.mp4", Fraction(25), Encoding.lossless()
            )
    errors = compress_dataset(CompressConfig(dataset="folder", root=str(tmp_path)), progress=False)
    assert errors == []
    for level in ("c23", "c40"):
        copies = sorted((tmp_path / "compressed" / level).rglob("*.mp4"))
        assert len(copies) == 4
        assert all(probe(p).frame_count == 6 for p in copies)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "compressed").rglob("*.mp4")}
    compress_dataset(CompressConfig(dataset="folder", root=str(tmp_path)), progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "compressed").rglob("*.mp4")} == before
