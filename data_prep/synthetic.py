"""A small synthetic dataset in the exact FaceForensics++ layout: the embedded default.

``python -m data_prep.synthetic OUT`` renders ``reals`` clips of a cartoon face (OpenCV's Haar
cascade finds it) moving over a textured background, pairs them as FF++ does (``a_b``: target
``a``, source ``b``), and makes one fake per pair and method by a distinct manipulation of the face
region, each leaving a different kind of trace:

- Deepfakes: the source's face blended in with a colour mismatch (a low-frequency seam);
- Face2Face: the face re-synthesised through 4x down- and up-sampling (missing high frequencies);
- FaceSwap: the face warped by a smooth displacement field (geometry);
- NeuralTextures: a fine periodic texture over the lower face (a high-frequency trace that c40
  weakens, as H.264 does to real re-rendering artefacts).

Raw is lossless H.264 (libx264rgb, CRF 0); c23 and c40 are real libx264 CRF encodes. Everything
is deterministic in ``seed``; the default size renders in seconds on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from data_prep.video import Encoding, encode_video

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
MARKER = "synthetic.json"  # written last: its presence means the dataset is complete


@dataclass(frozen=True)
class SyntheticConfig:
    reals: int = 12  # even: FF++ pairs identities (a, b)
    frames: int = 32
    width: int = 192
    height: int = 144
    fps: int = 25
    seed: int = 0
    compressed: tuple[tuple[str, int], ...] = (("c23", 23), ("c40", 40))  # level, CRF


@dataclass(frozen=True)
class Identity:
    """What makes one synthetic person look like themselves."""

    skin: tuple[int, int, int]
    background: tuple[int, int, int]
    eye_gap: float
    face_aspect: float
    stripe_period: float
    phase: float


def make_identity(rng: np.random.Generator) -> Identity:
    return Identity(
        skin=tuple(int(v) for v in rng.integers((170, 130, 110), (235, 190, 170))),
        background=tuple(int(v) for v in rng.integers(30, 120, 3)),
        eye_gap=float(rng.uniform(12, 16)),
        face_aspect=float(rng.uniform(1.15, 1.35)),
        stripe_period=float(rng.uniform(9, 17)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def face_geometry(config: SyntheticConfig, person: Identity, t: int) -> tuple[int, int, float]:
    """Face centre and scale at frame ``t``: a slow Lissajous drift and a gentle zoom."""
    cx = config.width / 2 + 0.12 * config.width * np.sin(0.11 * t + person.phase)
    cy = config.height / 2 + 0.08 * config.height * np.sin(0.07 * t + 2 * person.phase)
    scale = config.height / 160 * (1.0 + 0.08 * np.sin(0.05 * t + person.phase))
    return round(cx), round(cy), float(scale)


def draw_face(canvas: np.ndarray, person: Identity, cx: int, cy: int, s: float, t: int) -> None:
    """A frontal cartoon face: dark eyes and brows over bright cheeks, as a Haar cascade expects."""
    half_w, half_h = int(34 * s), int(34 * s * person.face_aspect)
    cv2.ellipse(canvas, (cx, cy), (half_w, half_h), 0, 0, 360, person.skin, -1, cv2.LINE_AA)
    blink = 1 if (t + int(person.phase * 10)) % 23 == 0 else int(4 * s)
    for side in (-1, 1):
        ex = cx + int(side * person.eye_gap * s)
        cv2.ellipse(
            canvas, (ex, cy - int(10 * s)), (int(7 * s), blink), 0, 0, 360, (40, 30, 30), -1
        )
        brow = (ex - int(8 * s), cy - int(19 * s)), (ex + int(8 * s), cy - int(19 * s))
        cv2.line(canvas, *brow, (50, 40, 40), max(1, int(3 * s)), cv2.LINE_AA)
    nose = tuple(min(255, c + 25) for c in person.skin)
    cv2.line(canvas, (cx, cy - int(5 * s)), (cx, cy + int(10 * s)), nose, max(1, int(3 * s)))
    mouth_open = int((5 + 2 * np.sin(0.4 * t)) * s)
    cv2.ellipse(
        canvas, (cx, cy + int(22 * s)), (int(12 * s), mouth_open), 0, 0, 360, (140, 50, 60), -1
    )


def render_real(config: SyntheticConfig, person: Identity, video_seed: int) -> list[np.ndarray]:
    """Moving face over moving stripes, with sensor-like noise (the fine detail codecs remove)."""
    rng = np.random.default_rng(video_seed)
    ys, xs = np.mgrid[0 : config.height, 0 : config.width].astype(np.float32)
    frames = []
    for t in range(config.frames):
        stripes = 18 * np.sin((xs + 0.6 * ys + 1.5 * t) * 2 * np.pi / person.stripe_period)
        canvas = np.clip(np.array(person.background, np.float32) + stripes[..., None], 0, 255)
        canvas = canvas.astype(np.uint8)
        draw_face(canvas, person, *face_geometry(config, person, t), t)
        canvas = cv2.GaussianBlur(canvas, (3, 3), 0.8)
        noise = rng.normal(0, 3, canvas.shape)
        frames.append(np.clip(canvas + noise, 0, 255).astype(np.uint8))
    return frames


def face_mask(config: SyntheticConfig, person: Identity, t: int, lower_only: bool = False):
    """Feathered elliptical mask (float, 0..1) of the face region at frame ``t``."""
    cx, cy, s = face_geometry(config, person, t)
    mask = np.zeros((config.height, config.width), np.float32)
    half_w, half_h = int(30 * s), int(30 * s * person.face_aspect)
    if lower_only:
        cv2.ellipse(mask, (cx, cy + int(15 * s)), (half_w, int(half_h * 0.55)), 0, 0, 360, 1.0, -1)
    else:
        cv2.ellipse(mask, (cx, cy), (half_w, half_h), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 2.5 * s)[..., None]


def manipulate(
    method: str,
    config: SyntheticConfig,
    target: list[np.ndarray],
    target_person: Identity,
    source_person: Identity,
) -> list[np.ndarray]:
    """The fake of ``target`` by ``method`` (see the module docstring)."""
    fakes = []
    for t, frame in enumerate(target):
        f = frame.astype(np.float32)
        if method == "NeuralTextures":
            mask = face_mask(config, target_person, t, lower_only=True)
        else:
            mask = face_mask(config, target_person, t)
        if method == "Deepfakes":
            swapped = frame.copy()
            draw_face(swapped, source_person, *face_geometry(config, target_person, t), t)
            shift = np.array([18.0, -10.0, 8.0], np.float32)  # colour mismatch at the seam
            replaced = swapped.astype(np.float32) + shift
        elif method == "Face2Face":
            h, w = frame.shape[:2]
            small = cv2.resize(frame, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
            replaced = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        elif method == "FaceSwap":
            h, w = frame.shape[:2]
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            map_x = xs + 3.0 * np.sin(ys / 6.0 + 0.3 * t)
            map_y = ys + 3.0 * np.cos(xs / 7.0)
            replaced = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR).astype(np.float32)
        elif method == "NeuralTextures":
            h, w = frame.shape[:2]
            checker = ((np.add.outer(np.arange(h), np.arange(w)) % 2) * 2 - 1).astype(np.float32)
            replaced = f + 14.0 * checker[..., None]
        else:
            raise ValueError(f"unknown synthetic manipulation {method!r}")
        fakes.append(np.clip(mask * replaced + (1 - mask) * f, 0, 255).astype(np.uint8))
    return fakes


def split_pairs(reals: int) -> dict[str, list[list[str]]]:
    """FF++-style split files: identities in pairs, about 72/14/14 of the pairs."""
    if reals < 6 or reals % 2:
        raise ValueError(f"need an even number of at least 6 real clips, got {reals}")
    pairs = [[f"{i:03d}", f"{i + 1:03d}"] for i in range(0, reals, 2)]
    held_out = max(1, round(0.14 * len(pairs)))
    return {
        "train": pairs[: len(pairs) - 2 * held_out],
        "val": pairs[len(pairs) - 2 * held_out : len(pairs) - held_out],
        "test": pairs[len(pairs) - held_out :],
    }


def _write_levels(
    frames: list[np.ndarray], folder: Path, name: str, config: SyntheticConfig
) -> None:
    fps = Fraction(config.fps)
    encode_video(frames, folder / "raw" / "videos" / f"{name}.mp4", fps, Encoding.lossless())
    for level, crf in config.compressed:
        path = folder / level / "videos" / f"{name}.mp4"
        encode_video(frames, path, fps, Encoding(crf=crf))


def generate(output: Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write the dataset to ``output`` (skipped when already complete with the same config)."""
    output = Path(output).resolve()
    marker = output / MARKER
    wanted = json.loads(json.dumps(asdict(config)))
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return output
    splits = split_pairs(config.reals)
    rng = np.random.default_rng(config.seed)
    people = [make_identity(rng) for _ in range(config.reals)]
    originals = output / "original_sequences" / "youtube"
    reals = {}
    for i, person in enumerate(people):
        reals[i] = render_real(config, person, video_seed=config.seed * 1000 + i)
        _write_levels(reals[i], originals, f"{i:03d}", config)
    for pairs in splits.values():
        for a, b in pairs:
            for target, source in ((int(a), int(b)), (int(b), int(a))):
                for method in METHODS:
                    fake = manipulate(method, config, reals[target], people[target], people[source])
                    folder = output / "manipulated_sequences" / method
                    _write_levels(fake, folder, f"{target:03d}_{source:03d}", config)
    (output / "splits").mkdir(exist_ok=True)
    for split, pairs in splits.items():
        (output / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(json.dumps(wanted, indent=2))
    os.replace(temporary, marker)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic FF++-layout dataset.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--reals", type=int, default=SyntheticConfig.reals)
    parser.add_argument("--frames", type=int, default=SyntheticConfig.frames)
    parser.add_argument("--seed", type=int, default=SyntheticConfig.seed)
    args = parser.parse_args(argv)
    config = SyntheticConfig(reals=args.reals, frames=args.frames, seed=args.seed)
    print(f"synthetic FF++ dataset at {generate(args.output, config)}")


if __name__ == "__main__":
    main()
