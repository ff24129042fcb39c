"""What the machine-independent RGB -> YUV 4:2:0 conversion costs an H.264 encode.

Encodes one video's frames (decoded once, held in memory) at CRF 23 and 40 with x264's C code
(``Encoding(bit_exact=True)``, one thread), through ``data_prep.video.encode_video`` (frames
converted by ``data_prep.yuv.rgb_to_yuv420``) and through FFmpeg's swscale (RGB frames handed to
PyAV, as before commit 56ade90). Best of ``--repeats`` per path, in ms per frame.

    PYTHONPATH=. python bench/encode.py VIDEO.mp4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data_prep.video import Encoding, encode_video, iter_frames, probe


def swscale_encode(frames: list[np.ndarray], path: Path, fps: Fraction, encoding: Encoding) -> None:
    """The old path: RGB frames converted to yuv420p by swscale inside PyAV's encoder."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(encoding.codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = encoding.pix_fmt, encoding.options()
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def best_ms_per_frame(encode, frames, fps, encoding, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            encode(frames, Path(directory) / "out.mp4", fps, encoding)
            times.append(time.perf_counter() - started)
    return 1000 * min(times) / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = probe(args.video)
    frames = [f for _, f in iter_frames(args.video, range(info.frame_count), info.frame_count)]
    height, width = frames[0].shape[:2]
    print(f"{len(frames)} frames of {width}x{height}, x264 C code, one thread")
    for crf in (23, 40):
        encoding = Encoding(crf=crf)
        for name, encode in (("swscale", swscale_encode), ("data_prep.yuv", encode_video)):
            ms = best_ms_per_frame(encode, frames, info.fps, encoding, args.repeats)
            print(f"CRF {crf:2d}  {name:14s} {ms:6.1f} ms/frame", flush=True)


if __name__ == "__main__":
    main()
