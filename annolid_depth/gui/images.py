"""numpy images <-> Qt pixmaps, and how depth is drawn on screen."""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtGui import QImage, QPixmap

from ..io.colour import colorize


def to_pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy())


def depth_image(depth: np.ndarray, metric: bool = False, size: tuple[int, int] | None = None) -> np.ndarray:
    """Depth as inferno RGB with the frame's own range (nearer is brighter), optionally resized to (w, h)."""
    bgr = colorize(depth, float(depth.min()), float(depth.max()), metric, grayscale=False)
    if size is not None and (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colour_ramp(low: float, high: float, metric: bool, steps: int = 256) -> tuple[np.ndarray, float, float]:
    """(RGB column [steps, 1, 3] from nearest at the top to farthest at the bottom, in the
    depth view's colours; the value at the top; the value at the bottom). Nearer is larger
    disparity but smaller metres."""
    near, far = (low, high) if metric else (high, low)
    values = np.linspace(near, far, steps, dtype=np.float32)[:, None]
    return cv2.cvtColor(colorize(values, low, high, metric, grayscale=False), cv2.COLOR_BGR2RGB), near, far


def blend(frame: np.ndarray, overlay: np.ndarray, opacity: float) -> np.ndarray:
    return cv2.addWeighted(overlay, opacity, frame, 1.0 - opacity, 0.0)
