"""The pinhole camera behind the point clouds and the per-region centroids: which pixels
have a usable depth, and where they lie in 3D.

x = (u - W/2) z / fx, y = (v - H/2) z / fy, with the principal point at the image centre.
Metric models: z is the depth in metres. Relative models: z = 1 / disparity, a depth known
only up to an unknown scale (and only approximately, since the disparity also has an unknown
shift); it is never metres.

Point clouds can be thinned twice over: to a grid of every Nth pixel, then to one point per
occupied cube of space (a voxel).
"""
from __future__ import annotations

import numpy as np

RELATIVE_EPS = 1e-6  # disparities below this fraction of the frame's largest have no usable depth
TINY = float(np.finfo(np.float32).tiny)  # and none so small that 1 / disparity overflows


def pinhole_rays(width: int, height: int, focal_length_x: float, focal_length_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (flat, row by row), x / z and y / z."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    return ((u - width / 2) / focal_length_x).ravel(), ((v - height / 2) / focal_length_y).ravel()


def usable(depth: np.ndarray, metric: bool) -> np.ndarray:
    """Flat mask of the pixels with a usable depth: finite, and > 0 (metres) or above
    1e-6 of the frame's largest disparity."""
    values = depth.ravel()
    finite = np.isfinite(values)
    floor = 0.0 if metric else max(RELATIVE_EPS * float(values.max(where=finite, initial=0.0)), TINY)
    return finite & (values > floor)


def back_project(depth: np.ndarray, pixels: np.ndarray, rays: tuple[np.ndarray, np.ndarray], metric: bool):
    """(depth values, (x, y, z)) of the `pixels` (flat indices or a flat mask) of a frame."""
    values = depth.ravel()[pixels]
    z = values.astype(np.float32)
    if not metric:
        z = 1.0 / z
    return values, (rays[0][pixels] * z, rays[1][pixels] * z, z)


def pixel_grid(width: int, height: int, stride: int) -> np.ndarray:
    """Flat indices of every `stride`-th pixel in x and y, row by row, from the top left."""
    return (np.arange(0, height, stride)[:, None] * width + np.arange(0, width, stride)).ravel()


def one_per_voxel(x: np.ndarray, y: np.ndarray, z: np.ndarray, size: float) -> np.ndarray:
    """Positions (ascending) of the first point in each occupied cube of edge `size`, the
    cubes aligned on the origin: the point keeps its own coordinates, colour and region."""
    cells = np.floor(np.stack([x, y, z], axis=1) / size).astype(np.int64)
    order = np.lexsort(cells.T[::-1])  # stable: a cube's points stay in image order
    ordered = cells[order]
    starts = np.ones(len(order), bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    return np.sort(order[starts])
