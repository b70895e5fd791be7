"""Synthetic arenas of known geometry for the floor, height and floor-path tests: a tilted
floor at a known distance and flat-topped boxes on it, ray-cast exactly through the
package's pinhole camera (`camera.pinhole_rays`), with the boxes' label maps and their
outlines as Annolid shapes.

Boxes are placed in the floor frame that `floor.py` defines (origin at the camera's foot,
x the camera's x axis projected onto the floor, y = up x x), written out here from the
convention itself so the tests compare the fit with the truth, not with itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from annolid_depth.io.camera import pinhole_rays


@dataclass(frozen=True)
class Box:
    """A flat-topped box standing on the floor: centre (x, y) and sides along the floor's axes."""

    label: str
    x: float
    y: float
    height: float
    size: tuple[float, float] = (0.08, 0.05)  # a mouse's footprint, metres

    @property
    def corners(self) -> np.ndarray:
        """The 8 corners as floor coordinates (x, y, height)."""
        (sx, sy), h = self.size, self.height
        return np.array([[self.x + a * sx / 2, self.y + b * sy / 2, c * h]
                         for a in (-1, 1) for b in (-1, 1) for c in (0, 1)])


@dataclass(frozen=True)
class Arena:
    """A camera `distance` metres from a floor it looks down on, pitched by `tilt_deg` about
    its x axis, then turned by `roll_deg` about its y axis."""

    width: int = 320
    height: int = 240
    focal: float = 300.0
    distance: float = 0.8
    tilt_deg: float = 15.0
    roll_deg: float = 5.0

    @cached_property
    def normal(self) -> np.ndarray:
        t, r = np.radians(self.tilt_deg), np.radians(self.roll_deg)
        return np.array([np.sin(r) * np.cos(t), -np.sin(t), np.cos(r) * np.cos(t)])

    @cached_property
    def axes(self) -> np.ndarray:
        """Rows: floor x, floor y, up (= -normal), in camera coordinates."""
        up = -self.normal
        x_axis = np.array([1.0, 0.0, 0.0]) - up[0] * up
        x_axis /= np.linalg.norm(x_axis)
        return np.stack([x_axis, np.cross(up, x_axis), up])

    @cached_property
    def directions(self) -> np.ndarray:
        """Per pixel (flat), the ray (x / z, y / z, 1) of the package's camera."""
        rx, ry = pinhole_rays(self.width, self.height, self.focal, self.focal)
        return np.stack([rx, ry, np.ones_like(rx)], axis=1).astype(np.float64)

    def to_camera(self, floor_points: np.ndarray) -> np.ndarray:
        """Floor coordinates (x, y, height) [N, 3] -> camera coordinates."""
        return self.distance * self.normal + floor_points @ self.axes

    def to_floor(self, points: np.ndarray) -> np.ndarray:
        """Camera coordinates [N, 3] -> floor coordinates (x, y, height)."""
        return (points - self.distance * self.normal) @ self.axes.T

    def floor_point(self, u: float, v: float) -> tuple[float, float]:
        """Floor (x, y) seen at pixel (u, v)."""
        ray = np.array([(u - self.width / 2) / self.focal, (v - self.height / 2) / self.focal, 1.0])
        x, y, _ = self.to_floor((ray * self.distance / (ray @ self.normal))[None])[0]
        return float(x), float(y)

    def cast(self, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        """(distance along each pixel's ray to the nearest surface, which box it is: 0 the
        floor, k the k-th box), flat: floor and boxes by the slab method, all pixels at once."""
        along = self.axes @ self.directions.T  # [3, N]: the rays' floor-frame components
        start = np.array([0.0, 0.0, self.distance])[:, None]  # the camera in the floor frame
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -self.distance / along[2]
            t[~(t > 0)] = np.inf  # a ray that never meets the floor
            which = np.zeros(len(t), np.int32)
            for k, box in enumerate(boxes, start=1):
                low = (box.corners.min(axis=0)[:, None] - start) / along
                high = (box.corners.max(axis=0)[:, None] - start) / along
                near = np.maximum.reduce(np.minimum(low, high))  # where the ray enters all three slabs
                far = np.minimum.reduce(np.maximum(low, high))  # and leaves the first
                hit = (near <= far) & (near > 0) & (near < t)
                t[hit], which[hit] = near[hit], k
        return t, which

    def render(self, boxes: list[Box], noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(metric depth z [H, W] float32, with Gaussian noise of `noise` metres; label map
        int32 [H, W] of the boxes, 0 elsewhere; names, names[0] = ""), as a run's frame."""
        t, which = self.cast(boxes)
        z = t * self.directions[:, 2]
        if noise:
            z = z + np.random.default_rng(seed).normal(0.0, noise, z.shape)
        shape = (self.height, self.width)
        return z.reshape(shape).astype(np.float32), which.reshape(shape), [""] + [box.label for box in boxes]

    def surface(self, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        """(the exact 3D point of each pixel [N, 3], its box index), for the truth of means."""
        t, which = self.cast(boxes)
        return self.directions * t[:, None], which

    def outline(self, box: Box, scale: float = 1.0) -> list[list[float]]:
        """The box's outline in the image (the hull of its corners' pixels, times `scale`
        for a video larger than the processed frames), as a LabelMe polygon's points."""
        corners = self.to_camera(box.corners)
        pixels = corners[:, :2] / corners[:, 2:] * self.focal + [self.width / 2, self.height / 2]
        hull = cv2.convexHull(pixels.astype(np.float32))[:, 0]
        return (hull * scale).round(3).tolist()

    def shapes(self, boxes: list[Box], scale: float = 1.0) -> list[dict]:
        """The boxes as Annolid's tracking shapes (polygons in the video's pixels)."""
        return [{"label": box.label, "shape_type": "polygon", "points": self.outline(box, scale)} for box in boxes]


def relative(depth: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """A relative model's output for a metric depth map: disparity = scale / z + shift."""
    return (scale / depth.astype(np.float64) + shift).astype(np.float32)
