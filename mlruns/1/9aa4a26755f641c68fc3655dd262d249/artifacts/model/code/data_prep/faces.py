"""Face boxes: pluggable detectors, and the square crop box FF++ uses (enlarged, clamped).

A detector maps an RGB frame to candidate boxes ``(x, y, w, h)``; the largest is kept, enlarged
by ``margin`` around its centre, made square and clamped to the frame. The same crop box is then
cut from every compression level, which is what makes the (raw, compressed) crops pixel-aligned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class CropBox:
    """A square region of a frame: left, top, side (all within the frame)."""

    left: int
    top: int
    side: int

    def cut(self, frame: np.ndarray, size: int) -> np.ndarray:
        """The region resized to ``size`` (area filter when shrinking, bilinear when growing)."""
        region = frame[self.top : self.top + self.side, self.left : self.left + self.side]
        interpolation = cv2.INTER_AREA if self.side >= size else cv2.INTER_LINEAR
        return cv2.resize(region, (size, size), interpolation=interpolation)


def crop_box(face: Box, frame_width: int, frame_height: int, margin: float = 1.3) -> CropBox:
    """Square box of side ``margin * max(w, h)`` on the face's centre, shifted into the frame."""
    x, y, w, h = face
    side = min(round(max(w, h) * margin), frame_width, frame_height)
    left = round(x + w / 2 - side / 2)
    top = round(y + h / 2 - side / 2)
    left = min(max(left, 0), frame_width - side)
    top = min(max(top, 0), frame_height - side)
    return CropBox(left, top, side)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (ships with opencv-python-headless < 5; offline).

    Runs on a copy scaled so its longer side is at most ``max_side``, for speed on HD video.
    """

    def __init__(self, max_side: int = 640, min_face: int = 24) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"{path}: OpenCV's Haar cascade could not be loaded")
        self.max_side, self.min_face = max_side, min_face

    def __call__(self, frame: np.ndarray) -> list[Box]:
        scale = min(1.0, self.max_side / max(frame.shape[:2]))
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=4, minSize=(self.min_face, self.min_face)
        )
        return [tuple(round(v / scale) for v in box) for box in found]


class CentreDetector:
    """For pre-cropped data: the centred square of the frame is the face."""

    def __call__(self, frame: np.ndarray) -> list[Box]:
        height, width = frame.shape[:2]
        side = min(height, width)
        return [((width - side) // 2, (height - side) // 2, side, side)]


DETECTORS: dict[str, Callable[[], Callable[[np.ndarray], list[Box]]]] = {
    "haar": HaarDetector,
    "none": CentreDetector,
}


def build_detector(name: str) -> Callable[[np.ndarray], list[Box]]:
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; one of {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]()


def largest(boxes: list[Box]) -> Box | None:
    return max(boxes, key=lambda b: (b[2] * b[3], b)) if boxes else None
