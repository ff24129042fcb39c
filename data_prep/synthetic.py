"""A small synthetic dataset in the exact FaceForensics++ layout: the embedded default.

``python -m data_prep.synthetic OUT`` renders ``reals`` clips of a cartoon face (OpenCV's Haar
cascade finds it) moving over a textured background with sensor noise, pairs them as FF++ does
(``a_b``: target ``a``, source ``b``), and makes one fake per pair and method.

Every fake has its own *strength* s, spread evenly over ``config.strength`` within each split
and method (recorded in ``manipulations.json``): s near 0 is a fake no detector can see, s = 1
an obvious one, so a detector's AUC says how far down it still finds them. As in FF++, each
method leaves traces that survive CRF 40 (a colour mismatch and smoothing of the face, besides
the method's own below) and high-frequency ones that CRF 40 removes: the re-synthesised face
lacks the sensor noise of the rest of the frame (an autoencoder or a renderer does not reproduce
it) and carries a faint up-sampling checkerboard. The methods differ in what they change:

- Deepfakes: the inner face (eye spacing) of the source, on the target's head and expression;
- Face2Face: the target's face re-synthesised through 4x down- and up-sampling;
- FaceSwap: the face warped by a smooth displacement field (geometry);
- NeuralTextures: the lower face only, with a stronger fine texture (high frequency, the trace
  that c40 removes almost completely, as H.264 does to real re-rendering artefacts).

Raw is lossless H.264 (libx264rgb, CRF 0); c23 and c40 are real libx264 CRF encodes, bit-exact
(``Encoding``). Every file is a function of ``seed`` alone, byte for byte on any CPU (x264's C
code, and the RGB -> YUV conversion in ``data_prep.yuv``); the default size
renders in about a minute on two cores (one process per core).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.video import Encoding, encode_video

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
MARKER = "synthetic.json"  # written last: its presence means the dataset is complete
STRENGTHS = "manipulations.json"  # method -> fake video name -> its manipulation strength


@dataclass(frozen=True)
class SyntheticConfig:
    reals: int = 40  # even: FF++ pairs identities (a, b)
    frames: int = 32
    width: int = 192
    height: int = 144
    fps: int = 25
    seed: int = 0
    compressed: tuple[tuple[str, int], ...] = (("c23", 23), ("c40", 40))  # level, CRF
    held_out: float = 0.2  # share of the identity pairs in each of val and test (FF++: 0.14)
    # Fakes' manipulation strengths: spread evenly over this range within every split and
    # method (so that validation and test are as hard as training), in a seeded order.
    strength: tuple[float, float] = (0.2, 1.0)
    noise: tuple[float, float] = (2.0, 4.0)  # each real clip's sensor-noise sigma, drawn evenly
    # The high-frequency traces, at strength 1: the up-sampling checkerboard's amplitude (8-bit
    # levels) and how fast the new face loses the clip's sensor noise (none kept from 1 / this).
    # 7 at 2-pixel cells: a raw teacher sees all but the weakest fakes (test AUC ~95, not 100),
    # and CRF 40 removes enough of it that SFFB alone on c40 stays below (docs/distillation.md,
    # "Fourteenth", "Fifteenth"); 10 at 1-pixel cells was the embedded default until 2026-12-01.
    checkerboard: float = 7.0
    noise_loss: float = 1.5
    # The checkerboard's cell in pixels: 1 is the finest pattern (period 2), which the prepared
    # crops' resampling (face box -> crop size) folds into a moire; 2 (period 4, a 2x
    # up-convolution enlarged to the face box) survives it, and CRF 40 still removes most of it
    # (docs/distillation.md, Fourteenth).
    checker_cell: int = 2

    def __post_init__(self) -> None:
        if self.checker_cell < 1:  # np.arange // 0 only warns, and draws no pattern
            raise ValueError(f"a checker cell is at least one pixel, got {self.checker_cell}")


@dataclass(frozen=True)
class Identity:
    """What makes one synthetic person look like themselves."""

    skin: tuple[int, int, int]
    background: tuple[int, int, int]
    eye_gap: float
    face_aspect: float
    stripe_period: float
    phase: float


@dataclass(frozen=True)
class Clip:
    """A real clip before its sensor noise is added, and that noise: fakes re-synthesise the
    face without it, which is the high-frequency trace compression removes."""

    clean: list[np.ndarray]  # float32 HxWx3, the rendered scene
    noise: list[np.ndarray]  # float32 HxWx3, zero-mean sensor noise

    def frames(self) -> list[np.ndarray]:
        return [to_uint8(c + n) for c, n in zip(self.clean, self.noise, strict=True)]


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_identity(rng: np.random.Generator) -> Identity:
    return Identity(
        skin=tuple(int(v) for v in rng.integers((170, 130, 110), (235, 190, 170))),
        background=tuple(int(v) for v in rng.integers(30, 120, 3)),
        eye_gap=float(rng.uniform(12, 16)),
        face_aspect=float(rng.uniform(1.15, 1.35)),
        stripe_period=float(rng.uniform(9, 17)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def identities(config: SyntheticConfig) -> list[Identity]:
    """The people of the dataset, in the order of their clips' names."""
    rng = np.random.default_rng(config.seed)
    return [make_identity(rng) for _ in range(config.reals)]


def face_geometry(config: SyntheticConfig, person: Identity, t: int) -> tuple[int, int, float]:
    """Face centre and scale at frame ``t``: a slow Lissajous drift and a gentle zoom."""
    cx = config.width / 2 + 0.12 * config.width * np.sin(0.11 * t + person.phase)
    cy = config.height / 2 + 0.08 * config.height * np.sin(0.07 * t + 2 * person.phase)
    scale = config.height / 160 * (1.0 + 0.08 * np.sin(0.05 * t + person.phase))
    return round(cx), round(cy), float(scale)


def draw_face(
    canvas: np.ndarray,
    person: Identity,
    cx: int,
    cy: int,
    s: float,
    t: int,
) -> None:
    """A frontal cartoon face: dark eyes and brows over bright cheeks, as a Haar cascade expects."""
    skin = person.skin
    half_w, half_h = int(34 * s), int(34 * s * person.face_aspect)
    cv2.ellipse(canvas, (cx, cy), (half_w, half_h), 0, 0, 360, skin, -1, cv2.LINE_AA)
    blink = 1 if (t + int(person.phase * 10)) % 23 == 0 else int(4 * s)
    for side in (-1, 1):
        ex = cx + int(side * person.eye_gap * s)
        cv2.ellipse(
            canvas, (ex, cy - int(10 * s)), (int(7 * s), blink), 0, 0, 360, (40, 30, 30), -1
        )
        brow = (ex - int(8 * s), cy - int(19 * s)), (ex + int(8 * s), cy - int(19 * s))
        cv2.line(canvas, *brow, (50, 40, 40), max(1, int(3 * s)), cv2.LINE_AA)
    nose = tuple(min(255, c + 25) for c in skin)
    cv2.line(canvas, (cx, cy - int(5 * s)), (cx, cy + int(10 * s)), nose, max(1, int(3 * s)))
    mouth_open = int((5 + 2 * np.sin(0.4 * t)) * s)
    cv2.ellipse(
        canvas, (cx, cy + int(22 * s)), (int(12 * s), mouth_open), 0, 0, 360, (140, 50, 60), -1
    )


def _background(config: SyntheticConfig, person: Identity, t: int) -> np.ndarray:
    ys, xs = np.mgrid[0 : config.height, 0 : config.width].astype(np.float32)
    stripes = 18 * np.sin((xs + 0.6 * ys + 1.5 * t) * 2 * np.pi / person.stripe_period)
    canvas = np.clip(np.array(person.background, np.float32) + stripes[..., None], 0, 255)
    return canvas.astype(np.uint8)


def _camera(canvas: np.ndarray) -> np.ndarray:
    """The camera's optics: a slight blur of every rendered frame."""
    return cv2.GaussianBlur(canvas, (3, 3), 0.8).astype(np.float32)


def render_real(config: SyntheticConfig, person: Identity, video_seed: int) -> Clip:
    """Moving face over moving stripes, plus sensor noise (the fine detail codecs remove)."""
    rng = np.random.default_rng(video_seed)
    sigma = rng.uniform(*config.noise)
    clean, noise = [], []
    for t in range(config.frames):
        canvas = _background(config, person, t)
        draw_face(canvas, person, *face_geometry(config, person, t), t)
        clean.append(_camera(canvas))
        noise.append(rng.normal(0, sigma, canvas.shape).astype(np.float32))
    return Clip(clean, noise)


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


def _soften(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.1 else image


def _checkerboard(height: int, width: int, cell: int) -> np.ndarray:
    """+-1 squares of ``cell`` pixels, as float32 (cell 1: the finest pattern there is)."""
    rows, columns = np.arange(height) // cell, np.arange(width) // cell
    return (np.add.outer(rows, columns) % 2 * 2 - 1).astype(np.float32)


def fake_strengths(config: SyntheticConfig, method: str, names: list[str]) -> dict[str, float]:
    """Strengths of one split's fakes of ``method``: evenly spaced over the range, shuffled."""
    low, high = config.strength
    first_target = int(names[0].split("_")[0])  # a different order in every split
    rng = np.random.default_rng([config.seed, METHODS.index(method), first_target])
    quantiles = (rng.permutation(len(names)) + 0.5) / len(names)
    return {name: float(low + (high - low) * q) for name, q in zip(names, quantiles, strict=True)}


def manipulate(
    method: str,
    config: SyntheticConfig,
    target: Clip,
    target_person: Identity,
    source_person: Identity,
    strength: float = 1.0,
) -> list[np.ndarray]:
    """The fake of ``target`` by ``method`` at ``strength`` (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown synthetic manipulation {method!r}")
    s = strength
    rng = np.random.default_rng([config.seed, METHODS.index(method), 7919])
    tint = rng.normal(size=3)
    tint = (24.0 * s * tint / np.linalg.norm(tint)).astype(np.float32)  # low-frequency trace
    # The share of the clip's sensor noise that the new face keeps.
    kept_noise = max(0.0, 1.0 - config.noise_loss * s)
    # A face swap keeps the target's head, pose and expression and replaces the inner face
    # (here the eyes' spacing), colour-corrected to the target's skin up to a mismatch.
    skin = np.clip(np.array(target_person.skin, np.float32) + tint, 0, 255)
    swapped = replace(
        target_person, eye_gap=source_person.eye_gap, skin=tuple(float(v) for v in skin)
    )
    h, w = target.clean[0].shape[:2]
    checker = _checkerboard(h, w, 1)
    upsampling = _checkerboard(h, w, config.checker_cell)
    fakes = []
    for t, (clean, noise) in enumerate(zip(target.clean, target.noise, strict=True)):
        geometry = face_geometry(config, target_person, t)
        mask = face_mask(config, target_person, t, lower_only=method == "NeuralTextures")
        smooth = 1.5 * s  # the re-synthesised face is smoother than the camera's output
        if method == "Deepfakes":
            canvas = _background(config, target_person, t)
            draw_face(canvas, swapped, *geometry, t)
            replaced = _soften(_camera(canvas), smooth)
        elif method == "Face2Face":
            small = cv2.resize(clean, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
            resized = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            replaced = (1 - s) * _soften(clean, smooth) + s * resized
            replaced = replaced + 0.5 * tint.mean() + 0.5 * tint
        elif method == "FaceSwap":
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            map_x = xs + 3.0 * s * np.sin(ys / 6.0 + 0.3 * t)
            map_y = ys + 3.0 * s * np.cos(xs / 7.0)
            warped = cv2.remap(clean, map_x, map_y, cv2.INTER_LINEAR)
            replaced = _soften(warped, smooth)
        else:  # NeuralTextures: a stronger texture, over the lower face only
            replaced = _soften(clean, smooth) + 5.0 * s * checker[..., None]
        # The generator's up-sampling leaves a faint checkerboard.
        face = replaced + kept_noise * noise + config.checkerboard * s * upsampling[..., None]
        fakes.append(to_uint8(mask * face + (1 - mask) * (clean + noise)))
    return fakes


def split_pairs(reals: int, held_out_share: float = 0.2) -> dict[str, list[list[str]]]:
    """FF++-style split files: identities in pairs, ``held_out_share`` of them in val and test."""
    if reals < 6 or reals % 2:
        raise ValueError(f"need an even number of at least 6 real clips, got {reals}")
    pairs = [[f"{i:03d}", f"{i + 1:03d}"] for i in range(0, reals, 2)]
    held_out = max(1, round(held_out_share * len(pairs)))
    if 2 * held_out >= len(pairs):
        raise ValueError(
            f"held-out share {held_out_share} of {len(pairs)} identity pairs leaves none to train "
            "on: val and test each take the share"
        )
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


def _write_identity(
    output: Path,
    config: SyntheticConfig,
    people: list[Identity],
    strengths: dict[str, dict[str, float]],
    i: int,
) -> None:
    """Person ``i``'s real clip and its four fakes, every level (one pool task: seeded by ``i``
    alone, so the files do not depend on the order or the process that writes them)."""
    clip = render_real(config, people[i], video_seed=config.seed * 1000 + i)
    _write_levels(clip.frames(), output / "original_sequences" / "youtube", f"{i:03d}", config)
    source = i + 1 if i % 2 == 0 else i - 1  # FF++ pairs: a_b and b_a
    name = f"{i:03d}_{source:03d}"
    for method in METHODS:
        fake = manipulate(method, config, clip, people[i], people[source], strengths[method][name])
        _write_levels(fake, output / "manipulated_sequences" / method, name, config)


def _json_values(config: SyntheticConfig) -> dict:
    """The config as its marker stores it (tuples become lists), so the two compare equal."""
    return json.loads(json.dumps(asdict(config)))


def config_digest(config: SyntheticConfig) -> str:
    """Eight hex digits of the config's SHA-256: names what is derived from one version of the
    dataset (the embedded shards), so that a changed generator default never reuses shards, or
    the runs named after them, made from the old videos."""
    text = json.dumps(_json_values(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


#: Fields added to ``SyntheticConfig`` after datasets had been written, with the value the
#: generator hard-coded until then: a marker without one was written with that value, whatever
#: today's default is (the checkerboard's amplitude and cell changed default on 2026-12-01).
VALUES_BEFORE_THEIR_FIELD = {"checkerboard": 10.0, "noise_loss": 1.5, "checker_cell": 1}


def recorded_config(marker: Path) -> dict:
    """The config a finished dataset was written with, as JSON values; a field the marker lacks
    reads as the value the generator used before the field existed (so such a dataset is kept
    exactly when that value is still the one wanted)."""
    recorded = json.loads(marker.read_text())
    return _json_values(SyntheticConfig()) | VALUES_BEFORE_THEIR_FIELD | recorded


def generate(
    output: Path, config: SyntheticConfig = SyntheticConfig(), workers: int | None = None
) -> Path:
    """Write the dataset to ``output`` (skipped when already complete with the same config).

    Identities are written by ``workers`` processes (default: one per CPU; the bit-exact H.264
    encodes dominate), with a progress bar.
    """
    output = Path(output).resolve()
    marker = output / MARKER
    wanted = _json_values(config)
    if marker.is_file() and recorded_config(marker) == wanted:
        return output
    splits = split_pairs(config.reals, config.held_out)
    people = identities(config)
    fakes = {split: [f"{a}_{b}" for x, y in pairs for a, b in ((x, y), (y, x))]
             for split, pairs in splits.items()}  # fmt: skip
    strengths = {
        method: {
            k: v
            for names in fakes.values()
            for k, v in fake_strengths(config, method, names).items()
        }
        for method in METHODS
    }
    write = partial(_write_identity, output, config, people, strengths)
    workers = min(workers or os.cpu_count() or 1, len(people))
    # spawn, not fork: the caller may already run Ray's or PyTorch's threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        done = pool.map(write, range(len(people)))
        for _ in tqdm(done, total=len(people), desc="synthetic identities", unit="id"):
            pass
    (output / "splits").mkdir(exist_ok=True)
    for split, pairs in splits.items():
        (output / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    (output / STRENGTHS).write_text(json.dumps(strengths, indent=2, sort_keys=True))
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
    parser.add_argument(
        "--held-out",
        type=float,
        default=SyntheticConfig.held_out,
        help="share of the identity pairs in each of val and test; another --seed with a large "
        "share makes a fresh held-out test set for models trained on the embedded data",
    )
    parser.add_argument(
        "--checker-cell",
        type=int,
        default=SyntheticConfig.checker_cell,
        help="the fakes' up-sampling checkerboard cell in pixels: 2 (the default) survives the "
        "crops' resampling and CRF 40 removes most of it; 1 is folded away by the resampling",
    )
    args = parser.parse_args(argv)
    try:
        config = SyntheticConfig(
            reals=args.reals,
            frames=args.frames,
            seed=args.seed,
            held_out=args.held_out,
            checker_cell=args.checker_cell,
        )
    except ValueError as error:  # the only field SyntheticConfig checks
        parser.error(f"--checker-cell {args.checker_cell}: {error}")
    print(f"synthetic FF++ dataset at {generate(args.output, config)}")


if __name__ == "__main__":
    main()
