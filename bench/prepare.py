"""Data preparation throughput and memory on the synthetic FF++ dataset.

Measures, on all CPU cores through Ray: prepared rows (one sampled frame, every level: decode +
detect + crop + PNG encode) per second per core, the single-core decode rate of the videos, and
the peak resident memory of the driver and Ray workers at two dataset sizes (flat = memory does
not grow with the number of videos). Then extrapolates to full FF++ (1000 real + 4000 fake
videos, ~509 frames each, 3 levels, 50 sampled frames) on one 16-core node.

    python bench/prepare.py --sizes 6 12 --width 640 --height 480 --crop-size 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import psutil
import ray

from data_prep.prepare import PrepareConfig, prepare
from data_prep.synthetic import SyntheticConfig, generate
from data_prep.video import iter_frames, probe

FFPP_VIDEOS = 5000
FFPP_MEAN_FRAMES = 509  # FF++ original sequences: ~509k frames over 1000 videos
FFPP_LEVELS = 3
FFPP_SAMPLED = 50
NODE_CORES = 16


class PeakMemory:
    """Peak summed RSS of this process and every Ray worker, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        total = psutil.Process().memory_info().rss
        for process in psutil.process_iter(["name", "memory_info"]):
            name = process.info["name"] or ""
            if name.startswith("ray::") and process.info["memory_info"] is not None:
                total += process.info["memory_info"].rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def decode_rate(root: Path) -> float:
    """Frames decoded per second on one core, over every video and level (conversion included)."""
    frames, started = 0, time.perf_counter()
    for path in sorted(root.rglob("*.mp4")):
        count = probe(path).frame_count
        frames += sum(1 for _ in iter_frames(path, range(count), count))
    return frames / (time.perf_counter() - started)


def measure(size: int, args: argparse.Namespace, workdir: Path) -> dict:
    synthetic = SyntheticConfig(
        reals=size, frames=args.frames, width=args.width, height=args.height
    )
    root = generate(workdir / f"data_{size}", synthetic)
    config = PrepareConfig(
        dataset="ffpp",
        root=str(root),
        output=str(workdir / f"shards_{size}"),
        frames_per_video=args.frames_per_video,
        crop_size=args.crop_size,
    )
    cores = int(ray.cluster_resources()["CPU"])
    with PeakMemory() as memory:
        started = time.perf_counter()
        manifest = prepare(config, overwrite=True, progress=False)
        seconds = time.perf_counter() - started
    videos = size * 5
    rows = manifest["total_rows"]
    return {
        "videos": videos,
        "rows": rows,
        "seconds": seconds,
        "cores": cores,
        "rows_per_s_per_core": rows / seconds / cores,
        "core_seconds_per_video": seconds * cores / videos,
        "peak_memory_mb": memory.peak / 2**20,
        "decode_frames_per_s_one_core": decode_rate(root),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[6, 12], help="real clips per run")
    parser.add_argument("--frames", type=int, default=64, help="frames per synthetic clip")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames-per-video", type=int, default=FFPP_SAMPLED)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(size, args, Path(tmp)) for size in args.sizes]
    ray.shutdown()

    big = runs[-1]
    # Per video: decode every frame of every level, then detect/crop/encode the sampled rows.
    decode_s = args.frames * FFPP_LEVELS / big["decode_frames_per_s_one_core"]
    row_s = max(0.0, big["core_seconds_per_video"] - decode_s) / min(
        args.frames, args.frames_per_video
    )
    ffpp_core_s = FFPP_VIDEOS * (
        FFPP_MEAN_FRAMES * FFPP_LEVELS / big["decode_frames_per_s_one_core"] + FFPP_SAMPLED * row_s
    )
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "video_size": f"{args.width}x{args.height}",
        "crop_size": args.crop_size,
        "runs": runs,
        "row_core_seconds": row_s,
        "ffpp_hours_on_16_cores": ffpp_core_s / NODE_CORES / 3600,
        "memory_growth_ratio": runs[1]["peak_memory_mb"] / runs[0]["peak_memory_mb"],
    }
    header = ("videos", "rows", "s", "rows/s/core", "decode f/s/core", "peak MB")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (7, 6, 7, 12, 16, 8), strict=True)))
    for run in runs:
        print(
            f"{run['videos']:>7} {run['rows']:>6} {run['seconds']:>7.1f} "
            f"{run['rows_per_s_per_core']:>12.2f} {run['decode_frames_per_s_one_core']:>16.1f} "
            f"{run['peak_memory_mb']:>8.0f}"
        )
    growth = result["memory_growth_ratio"]
    print(f"peak memory from {runs[0]['videos']} to {runs[1]['videos']} videos: x{growth:.2f}")
    print(f"detect+crop+PNG per row: {row_s * 1000:.1f} core-ms")
    hours = result["ffpp_hours_on_16_cores"]
    print(
        f"full FF++ at {result['video_size']} on {NODE_CORES} cores: {hours:.2f} h (target < 2 h)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
