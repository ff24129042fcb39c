"""Detection throughput: videos/s per core of the CPU stage, frames/s of the model stage.

Measured on synthetic FF++ clips (H.264 at CRF 23, the Haar face detector, as preparation
runs it):

1. CPU stage, one process: ``data_prep.media.file_faces`` (decode, even sampling, face
   detection, crop) per clip, at the given frames per video and crop size: videos/s per core.
2. Model stage, one process: ``rayjobs.lib.scoring.fake_scores`` on batches of uint8 crops at the
   model's input size (a random-weight SFFB of the given backbone): frames/s. Runs on CUDA when
   present (bf16 autocast, as the detection actors do).
3. End to end: ``rayjobs.detect.detect`` over the clips on a local Ray cluster (already
   started; the model actor's start-up included): videos/s.

    PYTHONPATH=. python bench/detect.py --clips 16 --frames 32 --json detect.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from data_prep.media import CropSettings, file_faces
from data_prep.prepare import PrepareConfig
from data_prep.synthetic import SyntheticConfig, generate
from rayjobs.lib.scoring import fake_scores, model_device
from sffb.model import SFFB, SFFBConfig


def clips(root: Path, count: int, frames: int, width: int, height: int) -> list[Path]:
    """``count`` synthetic clips (real and fake; 5 per identity) at CRF 23, as files people
    score usually are (the lossless RGB raw level decodes several times slower)."""
    reals = max(6, 2 * math.ceil(count / 10))  # the generator splits at least 3 pairs
    config = SyntheticConfig(reals=reals, frames=frames, width=width, height=height,
                             compressed=(("c23", 23),))  # fmt: skip
    generate(root, config)
    return sorted(root.rglob("c23/videos/*.mp4"))[:count]


def cpu_stage(paths: list[Path], settings: CropSettings) -> dict:
    file_faces(str(paths[0]), settings)  # the detector's first load is not a video's cost
    start = time.perf_counter()
    frames = sum(len(file_faces(str(p), settings).faces.crops) for p in paths)
    elapsed = time.perf_counter() - start
    return {
        "videos_per_s_per_core": len(paths) / elapsed,
        "frames_per_s_per_core": frames / elapsed,
    }


def model_stage(backbone: str, size: int, batch: int, batches: int) -> dict:
    device = model_device()
    model = SFFB(SFFBConfig(backbone=backbone, image_size=size)).to(device).eval()
    images = np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
    fake_scores(model, images, device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        fake_scores(model, images, device)  # returns on the host: synchronised
    elapsed = time.perf_counter() - start
    return {"frames_per_s": batch * batches / elapsed, "device": str(device),
            "threads": torch.get_num_threads()}  # fmt: skip


def end_to_end(paths: list[Path], checkpoint: Path, frames: int) -> dict:
    import ray

    from data_prep.cluster import ensure_ray
    from rayjobs.detect import detect

    ensure_ray()  # Ray's start-up is not detection's cost
    ray.data.DataContext.get_current().enable_progress_bars = False
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        outcome = detect([str(p) for p in paths], model=str(checkpoint), frames=frames,
                         output=str(Path(directory) / "out.jsonl"), progress=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    return {"videos_per_s": len(paths) / elapsed, "seconds": elapsed, "scored": outcome.scored}


def write_checkpoint(folder: Path, backbone: str, size: int, crop: int, frames: int) -> Path:
    """A random-weight checkpoint as training writes it, with its preparation settings."""
    folder.mkdir(parents=True, exist_ok=True)
    from rayjobs.lib.checkpoints import save_state
    from rayjobs.lib.config import load_job_config

    job = load_job_config("cpu-demo", overrides=[f"model.backbone={backbone}",
                                                 f"model.image_size={size}"])  # fmt: skip
    preparation = asdict(PrepareConfig(crop_size=crop, frames_per_video=frames))
    save_state(folder, model=SFFB(job.model).state_dict(), config=job, history=[], epoch=0,
               mode="student", preparation=json.dumps(preparation))  # fmt: skip
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video")
    parser.add_argument("--clip-frames", type=int, default=64, help="frames in each clip")
    parser.add_argument("--width", type=int, default=640, help="clip width (height: 9/16 of it)")
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--backbone", default="legacy_xception")
    parser.add_argument("--image-size", type=int, default=96, help="the model's input side")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--skip-ray", action="store_true", help="no end-to-end run")
    parser.add_argument("--clips-dir", help="keep the generated clips here (reused when present)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    figures: dict = {"machine": f"{platform.node()} {os.cpu_count()} cores", "args": vars(args)}
    with tempfile.TemporaryDirectory() as directory:
        height = args.width * 9 // 16 // 2 * 2
        where = Path(args.clips_dir) if args.clips_dir else Path(directory) / "clips"
        paths = clips(where, args.clips, args.clip_frames, args.width, height)
        preparation = asdict(PrepareConfig(crop_size=args.crop_size, frames_per_video=args.frames))
        settings = CropSettings.from_preparation(preparation)
        figures["cpu_stage"] = cpu_stage(paths, settings)
        print(f"CPU stage: {figures['cpu_stage']['videos_per_s_per_core']:.2f} videos/s per core "
              f"({figures['cpu_stage']['frames_per_s_per_core']:.0f} frames/s), "
              f"{args.frames} of {args.clip_frames} frames of {args.width}x{height}, "
              f"{args.crop_size} px crops")  # fmt: skip
        figures["model_stage"] = model_stage(args.backbone, args.image_size, args.batch,
                                             args.batches)  # fmt: skip
        print(f"model stage: {figures['model_stage']['frames_per_s']:.1f} frames/s, "
              f"{args.backbone} at {args.image_size} px, batch {args.batch}, "
              f"{figures['model_stage']['device']}")  # fmt: skip
        if not args.skip_ray:
            checkpoint = write_checkpoint(Path(directory) / "model", args.backbone,
                                          args.image_size, args.crop_size, args.frames)  # fmt: skip
            figures["end_to_end"] = end_to_end(paths, checkpoint, args.frames)
            print(f"end to end (Ray Data, actor start-up included): "
                  f"{figures['end_to_end']['videos_per_s']:.2f} videos/s "
                  f"({figures['end_to_end']['seconds']:.1f} s for {len(paths)})")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
