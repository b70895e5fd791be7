"""Depth as colour: the colour range's affine map, inferno or gray, and the colour bar.

Nearer is brighter for both kinds of depth: disparity grows towards the camera, metres shrink,
so metric depth is drawn inverted.
"""
from __future__ import annotations

import cv2
import numpy as np

from .records import LEVELS, Quantised, once_per_frame


def paint(gray: np.ndarray, grayscale: bool) -> np.ndarray:
    """uint8 levels -> BGR, inferno or gray."""
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if grayscale else cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO)


def colour_scale(lo: float, hi: float, metric: bool) -> tuple[float, float]:
    """(alpha, beta) with alpha * depth + beta the 0-255 level of a depth in [lo, hi]. Nearer
    is brighter for both kinds: disparity grows towards the camera, metres shrink, so metric
    depth is drawn inverted (linear in -depth)."""
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return (-scale, 255.0 + lo * scale) if metric else (scale, -lo * scale)


def colorize(depth: np.ndarray, lo: float, hi: float, metric: bool, grayscale: bool) -> np.ndarray:
    """Depth -> BGR uint8 over the fixed range [lo, hi] (values beyond it drawn at its ends,
    levels rounded), inferno or gray, in OpenCV's passes (clip, scale-and-round, colour map)."""
    alpha, beta = colour_scale(lo, hi, metric)
    inside = np.clip(depth, lo, hi, dtype=np.float32)  # beyond the range: the end levels, never negative
    return paint(cv2.convertScaleAbs(inside, alpha=alpha, beta=beta), grayscale)


@once_per_frame
def colorize_levels(quantised: Quantised, lo: float, hi: float, metric: bool, grayscale: bool) -> np.ndarray:
    """`colorize` of a record's 16-bit levels, without going through float depth: the two
    affine maps composed, the levels clipped to those of [lo, hi]."""
    alpha, beta = colour_scale(lo, hi, metric)
    step = (quantised.hi - quantised.lo) / LEVELS  # depth per level
    if step <= 0:  # a constant map
        gray = np.full(quantised.levels.shape, np.clip(np.rint(alpha * quantised.lo + beta), 0, 255), np.uint8)
        return paint(gray, grayscale)
    first = min(max(np.floor((lo - quantised.lo) / step), 0), LEVELS)
    last = min(max(np.ceil((hi - quantised.lo) / step), 0), LEVELS)
    inside = np.clip(quantised.levels, first, last).astype(np.uint16)
    return paint(cv2.convertScaleAbs(inside, alpha=alpha * step, beta=alpha * quantised.lo + beta), grayscale)


def with_colour_bar(bgr: np.ndarray, lo: float, hi: float, metric: bool, grayscale: bool) -> np.ndarray:
    """A copy of a drawn frame with the colour bar of [lo, hi] at its right edge, nearest at
    the top, its ends labelled in the run's unit (metres, or relative disparity)."""
    height, width = bgr.shape[:2]
    bar_w, bar_h = max(4, width // 48), max(8, height * 3 // 5)
    x, y = width - bar_w - max(2, width // 64), (height - bar_h) // 2
    if x < width // 2:  # too small a frame to hold a bar
        return bgr
    out = bgr.copy()
    near, far = (lo, hi) if metric else (hi, lo)
    ramp = np.linspace(near, far, bar_h, dtype=np.float32)[:, None].repeat(bar_w, 1)
    out[y : y + bar_h, x : x + bar_w] = colorize(ramp, lo, hi, metric, grayscale)
    unit = " m" if metric else " (disparity)"
    scale = max(0.3, height / 1400)
    for value, row in ((near, y - 4), (far, y + bar_h + int(14 * scale / 0.45))):
        text = f"{value:.3g}{unit}"
        size = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0]
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined: readable on any colour
            cv2.putText(out, text, (max(0, x + bar_w - size[0]), row), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                        thickness, cv2.LINE_AA)
    return out
