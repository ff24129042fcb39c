"""H.264 writing and compression with PyAV: frame count and order preserved, levels real."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from data_prep.__main__ import main as data_prep_main
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


def _moving_noisy_clip(frames: int = 32, size=(144, 192)) -> list[np.ndarray]:
    """Texture drifting under sensor noise: enough motion and detail for x264's lookahead
    (the macroblock tree) to matter, as in the synthetic dataset."""
    rng = np.random.default_rng(3)
    base = cv2.resize(rng.integers(0, 256, (18, 24, 3), dtype=np.uint8), size[::-1])
    return [
        np.clip(np.roll(base, 2 * t, axis=1) + rng.normal(0, 4, base.shape), 0, 255).astype(
            np.uint8
        )
        for t in range(frames)
    ]


def _bitstream(path: Path) -> bytes:
    with av.open(str(path)) as container:
        return b"".join(bytes(packet) for packet in container.demux(video=0))


def test_bit_exact_encodes_repeat_byte_for_byte(tmp_path):
    """The same frames give the same bytes every time, whatever else the process has done
    (x264's AVX-512 macroblock-tree code gave a few in a hundred CRF 40 encodes other bytes
    here; decoding in between moves the memory it depends on)."""
    frames = _moving_noisy_clip()
    streams = set()
    for attempt in range(16):
        path = tmp_path / f"{attempt}.mp4"
        encode_video(frames, path, Fraction(25), encoding_for("c40"))
        streams.add(_bitstream(path))
        decoded(path)
    assert len(streams) == 1
    assert b"threads=1 " in next(iter(streams))  # x264's own record of its settings


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
    exact = {"threads": "1", "x264-params": "asm=0"}
    assert encoding_for("c23").options() == {"crf": "23", **exact}
    assert encoding_for("c23", "qp").options() == {"qp": "23", **exact}
    assert encoding_for("c40", bit_exact=False).options() == {"crf": "40", "threads": "1"}
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
    # The same bytes as robustness's and the synthetic dataset's re-encodes of the raw video.
    raw, copy = tmp_path / "real" / "0.mp4", tmp_path / "compressed" / "c40" / "real" / "0.mp4"
    compress_video(raw, tmp_path / "direct.mp4", Encoding(crf=40))
    assert copy.read_bytes() == (tmp_path / "direct.mp4").read_bytes()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "compressed").rglob("*.mp4")}
    compress_dataset(CompressConfig(dataset="folder", root=str(tmp_path)), progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "compressed").rglob("*.mp4")} == before


def test_compress_command_with_fast_encode(tmp_path, ray_session, capsys):
    """README's `python -m data_prep compress ... --fast-encode`: x264's SIMD code writes every
    level of every video, each frame kept and as compressed as the level says."""
    for i in range(2):
        encode_video(
            numbered_frames(6), tmp_path / "real" / f"{i}.mp4", Fraction(25), Encoding.lossless()
        )
    command = ["compress", "--dataset", "folder", "--root", str(tmp_path), "--levels", "c10"]
    assert data_prep_main([*command, "c40", "--fast-encode"]) == 0
    assert "skipped" not in capsys.readouterr().err
    sizes = {}
    for level in ("c10", "c40"):
        copies = sorted((tmp_path / "compressed" / level / "real").glob("*.mp4"))
        assert [p.name for p in copies] == ["0.mp4", "1.mp4"]
        assert all(probe(p).frame_count == 6 for p in copies)
        sizes[level] = copies[0].stat().st_size
    assert sizes["c40"] < sizes["c10"]
    first = decoded(tmp_path / "compressed" / "c10" / "real" / "0.mp4")
    assert [int(np.argmax(f[32, :, 0])) // 4 for f in first] == list(range(6))  # order kept
    assert data_prep_main(["compress", "--levels", "c10"]) == 2  # no --root: named, not a trace
    assert "root" in capsys.readouterr().err
