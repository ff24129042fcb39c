"""Reading sampled frames from, and writing, H.264 videos with PyAV (FFmpeg from the wheel).

Every failure becomes a ``VideoError`` whose message says what is wrong with which file, so the
caller can record a skip and carry on with the other videos.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data_prep.yuv import (
    ENCODED_COLOR_RANGE,
    ENCODED_COLORSPACE,
    rgb_to_yuv420,
    yuv420_to_rgb,
)


class VideoError(Exception):
    """A video that cannot be used, with the reason (the path is part of the message)."""


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    width: int
    height: int
    fps: Fraction


@dataclass(frozen=True)
class Encoding:
    """An H.264 encoder setting: lossless RGB for raw, or CRF / constant QP on yuv420p.

    One thread, always: x264 cuts every frame into one slice per thread, so the bitstream would
    follow the machine's core count (callers run one encode per CPU instead). ``bit_exact``
    restricts x264 to its C code: its SIMD code differs from it and between CPU families, and on
    AVX-512 CPUs its macroblock-tree code gives other bytes from run to run (measured here: a
    few of every hundred CRF 40 encodes of the same frames). The C code is about 4x slower.
    The RGB -> YUV 4:2:0 conversion in front of x264 is ``data_prep.yuv``'s, not swscale's
    (whose code is CPU-specific too), so a bit-exact encode's bytes depend on nothing but x264's
    C code and the frames.
    """

    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int | None = 23
    qp: int | None = None
    bit_exact: bool = True

    @classmethod
    def lossless(cls) -> Encoding:
        """libx264rgb at CRF 0: bit-exact RGB (yuv420p at QP 0 is not, its chroma is halved).

        Lossless frames decode to the same pixels whatever code wrote them: the SIMD code is
        used (CRF 0 is constant-QP coding, without the macroblock tree)."""
        return cls(codec="libx264rgb", pix_fmt="rgb24", crf=0, bit_exact=False)

    def options(self) -> dict[str, str]:
        rate = {"crf": str(self.crf)} if self.qp is None else {"qp": str(self.qp)}
        exact = {"x264-params": "asm=0"} if self.bit_exact else {}
        return {**rate, "threads": "1", **exact}


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"{path}: not a readable video ({error})") from error
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def probe(path: Path) -> VideoInfo:
    """Frame count (from the header, else by counting packets), size and frame rate."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        count = stream.frames
        if count <= 0:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        if count <= 0 or not stream.codec_context.width:
            raise VideoError(f"{path}: video stream has no frames")
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(count, stream.codec_context.width, stream.codec_context.height, fps)


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def rgb_frame(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as H x W x 3 RGB. 8-bit 4:2:0 (H.264's usual output, FF++'s c23/c40) is
    converted by ``yuv420_to_rgb``, the same on every CPU; other formats (the lossless raw's
    planar RGB, a pure reordering) by FFmpeg's swscale."""
    name = frame.format.name
    if name in ("yuv420p", "yuvj420p"):
        y, u, v = (_plane(plane) for plane in frame.planes)
        full_range = name == "yuvj420p" or frame.color_range == 2  # AVCOL_RANGE_JPEG
        return yuv420_to_rgb(y, u, v, frame.colorspace, full_range)
    return frame.to_ndarray(format="rgb24")


def iter_frames(
    path: Path, indices: Sequence[int], expected_count: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the whole video once and yield ``(index, RGB frame)`` at the sorted ``indices``.

    Only wanted frames are converted; a video that decodes to fewer than ``expected_count``
    frames (a truncated file) raises after the frames it had.
    """
    path = Path(path)
    wanted = set(indices)
    decoded = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for decoded, frame in enumerate(container.decode(stream), start=1):
                if decoded - 1 in wanted:
                    yield decoded - 1, rgb_frame(frame)
        except av.FFmpegError as error:
            raise VideoError(f"{path}: decoding failed after {decoded} frames ({error})") from error
    if decoded < expected_count:
        raise VideoError(f"{path}: truncated: {decoded} of {expected_count} frames decode")


def encoder_frame(rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """An RGB frame in the encoder's pixel format: 4:2:0 converted by ``rgb_to_yuv420`` (the
    same bytes on every CPU; PyAV then hands it to x264 as is), RGB passed through."""
    rgb = np.ascontiguousarray(rgb)
    if pix_fmt != "yuv420p":
        return av.VideoFrame.from_ndarray(rgb, format="rgb24")
    y, u, v = rgb_to_yuv420(rgb)
    width = y.shape[1]
    stacked = np.concatenate([y, u.reshape(-1, width), v.reshape(-1, width)])
    frame = av.VideoFrame.from_ndarray(stacked, format="yuv420p")
    frame.colorspace, frame.color_range = ENCODED_COLORSPACE, ENCODED_COLOR_RANGE
    return frame


def encode_video(
    frames: Iterable[np.ndarray], path: Path, fps: Fraction, encoding: Encoding
) -> int:
    """Write RGB ``frames`` as H.264 MP4 atomically (temporary name, then rename); return the count.

    Frames get consecutive timestamps, so none is dropped or reordered.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    count = 0
    try:
        with av.open(str(temporary), "w", format="mp4") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream(encoding.codec, rate=fps)
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = encoding.pix_fmt
                    stream.options = encoding.options()
                    if encoding.pix_fmt == "yuv420p":  # tags: every decoder uses this matrix
                        stream.codec_context.colorspace = ENCODED_COLORSPACE
                        stream.codec_context.color_range = ENCODED_COLOR_RANGE
                video_frame = encoder_frame(frame, encoding.pix_fmt)
                video_frame.pts = count
                container.mux(stream.encode(video_frame))
                count += 1
            if stream is None:
                raise VideoError(f"{path}: nothing to encode (no frames)")
            container.mux(stream.encode())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def compress_video(source: Path, target: Path, encoding: Encoding) -> int:
    """Re-encode ``source`` to ``target`` with ``encoding``, keeping every frame in order."""
    info = probe(source)
    frames = (frame for _, frame in iter_frames(source, range(info.frame_count), info.frame_count))
    written = encode_video(frames, target, info.fps, encoding)
    if written != info.frame_count:
        Path(target).unlink(missing_ok=True)
        raise VideoError(f"{source}: wrote {written} of {info.frame_count} frames to {target}")
    return written
