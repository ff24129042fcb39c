"""YUV 4:2:0 -> RGB in plain float64 NumPy: the same pixels on every CPU.

FFmpeg's swscale converts with CPU-specific code: its C path and its x86 SIMD path differ by up
to 2 levels in half the pixels (measured here by forcing FFmpeg's CPU flags), and ARM has its own.
Decoding H.264 to YUV is exact by the standard, so converting the planes here makes a video's
RGB frames, and everything prepared from them, independent of the machine. Element-wise IEEE
arithmetic is correctly rounded whatever the SIMD width, so NumPy's result is too.

Semantics follow what PyAV asks swscale for: the matrix from the frame's colour space (BT.601
when unspecified), limited or full range from its colour range, each chroma sample covering its
2x2 block of luma (nearest, no siting filter).
"""

from __future__ import annotations

import numpy as np

# (Kr, Kb) by FFmpeg's AVColorSpace code; anything else (0 RGB, 2 unspecified, 5/6 BT.601) -> 601.
LUMA_WEIGHTS = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
    10: (0.2627, 0.0593),  # BT.2020 constant luminance (treated as non-constant, as swscale)
}
BT601 = (0.299, 0.114)


def yuv420_to_rgb(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, colorspace: int = 2, full_range: bool = False
) -> np.ndarray:
    """uint8 planes (H x W luma, ceil(H/2) x ceil(W/2) chroma) -> H x W x 3 uint8 RGB.

    Each term is a 256-entry table (scaled to 0..255), chroma terms are summed at chroma
    resolution and spread over their 2x2 blocks: a few passes over the frame."""
    height, width = y.shape
    kr, kb = LUMA_WEIGHTS.get(colorspace, BT601)
    kg = 1.0 - kr - kb
    levels = np.arange(256, dtype=np.float64)
    if full_range:
        luma, chroma = levels, (levels - 128.0) * (255.0 / 255.0)
    else:
        luma, chroma = (levels - 16.0) * (255.0 / 219.0), (levels - 128.0) * (255.0 / 224.0)
    terms = (  # per channel: (table for Cb, table for Cr)
        (None, 2.0 * (1.0 - kr) * chroma),
        (-(2.0 * kb * (1.0 - kb) / kg) * chroma, -(2.0 * kr * (1.0 - kr) / kg) * chroma),
        (2.0 * (1.0 - kb) * chroma, None),
    )
    base = luma[y]
    rgb = np.empty((height, width, 3), np.uint8)
    for channel, (from_cb, from_cr) in enumerate(terms):
        shift = (0.0 if from_cb is None else from_cb[u]) + (0.0 if from_cr is None else from_cr[v])
        spread = shift.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
        rgb[..., channel] = np.clip(np.rint(base + spread), 0, 255)
    return rgb
