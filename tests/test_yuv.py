"""YUV 4:2:0 <-> RGB: FFmpeg's semantics, independent float64 references, and the same pixels
and encoded bytes whatever code FFmpeg runs on this CPU."""

from __future__ import annotations

import ctypes
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from data_prep.video import Encoding, encode_video, iter_frames, rgb_frame
from data_prep.yuv import (
    BT601,
    ENCODED_COLOR_RANGE,
    ENCODED_COLORSPACE,
    LUMA_WEIGHTS,
    rgb_to_yuv420,
    yuv420_to_rgb,
)

SPACES = {"unspecified": 2, "bt709": 1, "bt2020": 9}


def planes(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random planes: saturated colours, where the choice of matrix shows most."""
    rng = np.random.default_rng(seed)
    chroma = ((height + 1) // 2, (width + 1) // 2)
    y = rng.integers(0, 256, (height, width), dtype=np.uint8)
    return (
        y,
        rng.integers(0, 256, chroma, dtype=np.uint8),
        rng.integers(0, 256, chroma, dtype=np.uint8),
    )


def forward_matrix(colorspace: int) -> np.ndarray:
    """The standard's RGB -> Y'CbCr matrix (Y in 0..1, Cb and Cr in -0.5..0.5)."""
    kr, kb = LUMA_WEIGHTS.get(colorspace, BT601)
    kg = 1 - kr - kb
    return np.array([[kr, kg, kb],
                     [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                     [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]])  # fmt: skip


def reference(y, u, v, colorspace: int, full_range: bool) -> np.ndarray:
    """Invert the forward RGB -> Y'CbCr matrix of the standard (float64, with numpy.linalg)."""
    forward = forward_matrix(colorspace)
    height, width = y.shape
    up = [c.repeat(2, 0).repeat(2, 1)[:height, :width].astype(np.float64) for c in (u, v)]
    if full_range:
        ycc = np.stack([y / 255.0, (up[0] - 128) / 255.0, (up[1] - 128) / 255.0])
    else:
        ycc = np.stack([(y - 16.0) / 219.0, (up[0] - 128) / 224.0, (up[1] - 128) / 224.0])
    rgb = np.einsum("ij,jhw->hwi", np.linalg.inv(forward), ycc) * 255
    return np.clip(np.rint(rgb), 0, 255)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("full_range", [False, True])
def test_matches_an_independent_float64_reference(space, full_range):
    y, u, v = planes(37, 53)  # odd sizes: the last chroma row and column cover one pixel
    ours = yuv420_to_rgb(y, u, v, SPACES[space], full_range)
    expected = reference(y, u, v, SPACES[space], full_range)
    assert ours.shape == (37, 53, 3) and ours.dtype == np.uint8 and ours.flags.c_contiguous
    difference = np.abs(ours - expected)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # rounding ties only


def _frame(y, u, v, colorspace: int, color_range: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(-1, y.shape[1]),
                                                       v.reshape(-1, y.shape[1])]),
                                       format="yuv420p")  # fmt: skip
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("color_range", [1, 2])  # MPEG (limited), JPEG (full)
def test_follows_the_frames_tags_as_ffmpeg_does(space, color_range):
    """Within swscale's own rounding (3 levels) of what PyAV's swscale conversion gives, and
    far from it under another matrix or range: the tags are honoured, not guessed."""
    y, u, v = planes(64, 96, seed=1)
    frame = _frame(y, u, v, SPACES[space], color_range)
    ffmpeg = frame.to_ndarray(format="rgb24").astype(int)
    assert np.abs(rgb_frame(frame) - ffmpeg).max() <= 3
    other_space = 1 if SPACES[space] != 1 else 2
    wrong = yuv420_to_rgb(y, u, v, other_space, color_range == 2)
    assert np.abs(wrong - ffmpeg).max() > 10
    wrong_range = yuv420_to_rgb(y, u, v, SPACES[space], color_range != 2)
    assert np.abs(wrong_range - ffmpeg).max() > 10


def _libavutil() -> ctypes.CDLL:
    folder = Path(av.__file__).parent
    found = sorted([*folder.parent.glob("av.libs/libavutil*"), *folder.glob(".dylibs/libavutil*")])
    if not found:
        pytest.skip("this PyAV build has no bundled libavutil to force FFmpeg's CPU flags with")
    return ctypes.CDLL(str(found[0]))


def test_decoded_frames_do_not_depend_on_the_cpu_code_ffmpeg_runs(tmp_path):
    """FFmpeg forced to its C code (as on a CPU without SIMD) decodes to the same RGB frames.
    swscale's own conversion differs there by up to 2 levels (measured on x86 with SSSE3)."""
    rng = np.random.default_rng(2)
    clip = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    path = tmp_path / "c23.mp4"
    encode_video(clip, path, Fraction(25), Encoding(crf=23))
    every = range(len(clip))
    native = [frame for _, frame in iter_frames(path, every, len(clip))]
    util = _libavutil()
    util.av_force_cpu_flags(0)
    try:
        plain = [frame for _, frame in iter_frames(path, every, len(clip))]
    finally:
        util.av_force_cpu_flags(-1)  # back to detecting the CPU
    assert all(np.array_equal(a, b) for a, b in zip(native, plain, strict=True))


def smooth_rgb(height: int, width: int) -> np.ndarray:
    """Gradients in every channel: chroma varies slowly, so 4:2:0 loses little of it."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 255 // (height - 1), (rows + cols) * 255 // (height + width - 2),
                     255 - cols * 255 // (width - 1)], axis=-1).astype(np.uint8)  # fmt: skip


def test_rgb_to_yuv420_matches_an_independent_float64_reference():
    """BT.601 limited range from the standard's matrix; chroma the mean of each 2x2 block."""
    rgb = np.random.default_rng(3).integers(0, 256, (38, 54, 3), dtype=np.uint8)
    y, u, v = rgb_to_yuv420(rgb)
    ycc = np.einsum("ij,hwj->ihw", forward_matrix(6), rgb / 255.0)
    blocks = ycc[1:].reshape(2, 19, 2, 27, 2).mean(axis=(2, 4))
    expected = [16 + 219 * ycc[0], 128 + 224 * blocks[0], 128 + 224 * blocks[1]]
    for ours, exact in zip((y, u, v), expected, strict=True):
        assert ours.dtype == np.uint8 and ours.shape == exact.shape
        difference = np.abs(ours - np.rint(exact))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # rounding ties only
    with pytest.raises(ValueError, match="even frame sides, got 53x38"):
        rgb_to_yuv420(rgb[:, :53])


def test_rgb_to_yuv420_agrees_with_ffmpeg_and_inverts_with_the_decoder():
    """On smooth frames, within 2 levels of swscale's own conversion (its chroma filter and
    rounding differ), and back to RGB through the decoder's conversion at least as closely."""
    rgb = smooth_rgb(64, 96)
    ours = rgb_to_yuv420(rgb)
    ffmpeg = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    theirs = [rows for rows in (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:, : p.width]
              for p in ffmpeg.planes)]  # fmt: skip
    for a, b in zip(ours, theirs, strict=True):
        assert np.abs(a.astype(int) - b[: a.shape[0]]).max() <= 2
    # Round trip through 4:2:0: no further from the frame than swscale's own (5 and 6 levels
    # at most here, where a channel climbs 2.7 levels per pixel; 1.1 and 1.6 on average).
    ours_back = np.abs(yuv420_to_rgb(*ours, ENCODED_COLORSPACE, full_range=False) - rgb.astype(int))
    swscale_back = np.abs(ffmpeg.to_ndarray(format="rgb24") - rgb.astype(int))
    assert ours_back.max() <= swscale_back.max() and ours_back.mean() <= swscale_back.mean()


def test_encoded_bytes_do_not_depend_on_the_cpu_code_ffmpeg_runs(tmp_path):
    """A bit-exact encode with FFmpeg forced to its C code gives the same file byte for byte:
    x264 runs its C code and the RGB -> YUV conversion is ours. (With swscale converting, the
    forced encode differed on x86.) The stream is tagged BT.601 limited, as converted."""
    rng = np.random.default_rng(4)
    clip = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    native, plain = tmp_path / "native.mp4", tmp_path / "plain.mp4"
    encode_video(clip, native, Fraction(25), Encoding(crf=40))
    util = _libavutil()
    util.av_force_cpu_flags(0)
    try:
        encode_video(clip, plain, Fraction(25), Encoding(crf=40))
    finally:
        util.av_force_cpu_flags(-1)
    assert native.read_bytes() == plain.read_bytes()
    with av.open(str(native)) as container:
        frame = next(container.decode(video=0))
    assert (frame.colorspace, frame.color_range) == (ENCODED_COLORSPACE, ENCODED_COLOR_RANGE)
