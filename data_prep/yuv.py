"""YUV 4:2:0 <-> RGB in integer NumPy: the same pixels and bytes on every CPU.

FFmpeg's swscale converts with CPU-specific code: its C path and its x86 SIMD path differ by up
to 2 levels in half the pixels (measured here by forcing FFmpeg's CPU flags), and ARM has its own.
Decoding H.264 to YUV is exact by the standard, so converting the planes here makes a video's
RGB frames, and everything prepared from them, independent of the machine: integer arithmetic
on 256-entry tables, exact whatever the SIMD width. The same holds in the other direction: the
frames handed to x264 are converted here (``rgb_to_yuv420``), so a compressed copy's bytes
depend on x264 alone, which ``data_prep.video.Encoding`` pins to its C code.

Decoding follows what PyAV asks swscale for: the matrix from the frame's colour space (BT.601
when unspecified), limited or full range from its colour range, each chroma sample covering its
2x2 block of luma (nearest, no siting filter). Encoding writes BT.601 limited range (what
swscale wrote by default, and the tags the encoder stores), each chroma sample the mean of its
2x2 block (centred siting, a box filter).
"""

from __future__ import annotations

from functools import cache

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


FRACTION_BITS = 16  # fixed point: the tables' rounding moves a result by at most 1 level, rarely


@cache
def _tables(colorspace: int, full_range: bool) -> tuple[np.ndarray, ...]:
    """Luma and the four chroma terms as 256-entry int32 tables, in 0..255 units (built once
    per colour space and range; read-only)."""
    kr, kb = LUMA_WEIGHTS.get(colorspace, BT601)
    kg = 1.0 - kr - kb
    levels = np.arange(256, dtype=np.float64)
    if full_range:
        luma, chroma = levels, levels - 128.0
    else:
        luma, chroma = (levels - 16.0) * (255.0 / 219.0), (levels - 128.0) * (255.0 / 224.0)
    terms = (
        luma,
        2.0 * (1.0 - kr) * chroma,  # Cr -> R
        -(2.0 * kb * (1.0 - kb) / kg) * chroma,  # Cb -> G
        -(2.0 * kr * (1.0 - kr) / kg) * chroma,  # Cr -> G
        2.0 * (1.0 - kb) * chroma,  # Cb -> B
    )
    tables = [np.rint(t * (1 << FRACTION_BITS)).astype(np.int32) for t in terms]
    tables[0] += 1 << (FRACTION_BITS - 1)  # one half, so that the final shift rounds
    for table in tables:
        table.flags.writeable = False
    return tuple(tables)


def yuv420_to_rgb(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, colorspace: int = 2, full_range: bool = False
) -> np.ndarray:
    """uint8 planes (H x W luma, ceil(H/2) x ceil(W/2) chroma) -> H x W x 3 uint8 RGB.

    Integer arithmetic on table look-ups; each chroma sum is broadcast over its 2x2 block of
    luma (a view, no up-sampled copy)."""
    height, width = y.shape
    half_h, half_w = u.shape
    luma, cr_r, cb_g, cr_g, cb_b = _tables(colorspace, full_range)
    padded = np.zeros((2 * half_h, 2 * half_w), np.uint8)  # odd sizes: a last half block
    padded[:height, :width] = y
    base = luma[padded].reshape(half_h, 2, half_w, 2)
    rgb = np.empty((half_h, 2, half_w, 2, 3), np.uint8)
    for channel, shift in enumerate((cr_r[v], cb_g[u] + cr_g[v], cb_b[u])):
        total = base + shift[:, None, :, None]
        np.right_shift(total, FRACTION_BITS, out=total)
        rgb[..., channel] = np.clip(total, 0, 255, out=total)
    return np.ascontiguousarray(rgb.reshape(2 * half_h, 2 * half_w, 3)[:height, :width])


#: ``rgb_to_yuv420``'s output: BT.601, limited range (FFmpeg's AVColorSpace / AVColorRange codes,
#: stored in the encoded stream so that every decoder reads it back with the same matrix).
ENCODED_COLORSPACE, ENCODED_COLOR_RANGE = 6, 1  # SMPTE 170M (BT.601 525), MPEG


@cache
def _forward_tables() -> tuple[tuple[np.ndarray, ...], ...]:
    """Per output plane (Y, Cb, Cr), one int32 table per input channel (R, G, B): the channel's
    term in 1/2^16 units of a level, limited range's 219 and 224 scales folded in, offset and
    rounding half in the R table. Y's tables take a level (0..255), chroma's the sum of a 2x2
    block (0..1020, 4x the mean; shifted 2 bits further)."""
    kr, kb = BT601
    kg = 1.0 - kr - kb
    rows = np.array([[kr, kg, kb],
                     [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                     [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]])  # fmt: skip
    planes = []
    for row, (scale, offset, inputs, extra) in zip(
        rows, ((219, 16, 256, 0), (224, 128, 1021, 2), (224, 128, 1021, 2)), strict=True
    ):
        levels = np.arange(inputs, dtype=np.float64)
        tables = [np.rint(w * scale / 255.0 * levels * (1 << FRACTION_BITS)).astype(np.int32)
                  for w in row]  # fmt: skip
        tables[0] += (offset << (FRACTION_BITS + extra)) + (1 << (FRACTION_BITS + extra - 1))
        for table in tables:
            table.flags.writeable = False
        planes.append(tuple(tables))
    return tuple(planes)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H x W x 3 uint8 RGB (H, W even) -> uint8 planes Y (H x W), U and V (H/2 x W/2).

    BT.601 limited range in integer arithmetic on table look-ups: each chroma sample is
    computed from the sums of its 2x2 block, so it is the block's mean chroma, rounded once."""
    height, width, _ = rgb.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs even frame sides, got {width}x{height}")
    luma, blue, red = _forward_tables()
    r, g, b = np.ascontiguousarray(rgb.transpose(2, 0, 1))  # planar: contiguous look-ups
    y = luma[0][r] + luma[1][g] + luma[2][b]
    wide = rgb.astype(np.int16)
    blocks = wide[0::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 0::2] + wide[1::2, 1::2]
    sr, sg, sb = blocks.transpose(2, 0, 1)
    u = blue[0][sr] + blue[1][sg] + blue[2][sb]
    v = red[0][sr] + red[1][sg] + red[2][sb]
    planes = (y >> FRACTION_BITS, u >> (FRACTION_BITS + 2), v >> (FRACTION_BITS + 2))
    return tuple(np.clip(plane, 0, 255).astype(np.uint8) for plane in planes)
