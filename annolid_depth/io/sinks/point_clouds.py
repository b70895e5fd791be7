"""`point_clouds/point_NNNN.csv` (or `.ply`): each frame back-projected through the pinhole camera."""
from __future__ import annotations

import cv2
import numpy as np

from ..camera import back_project, one_per_voxel, pinhole_rays, pixel_grid, usable
from ..point_files import write_csv, write_ply
from .base import RunInfo, Sink


def rays_of(info: RunInfo) -> tuple[np.ndarray, np.ndarray]:
    return pinhole_rays(info.width, info.height, info.settings.focal_length_x, info.settings.focal_length_y)


class PointCloudSink(Sink):
    """`point_clouds/point_NNNN.csv` (or `.ply`): each frame back-projected through a pinhole
    camera with the given focal lengths and the principal point at the image centre
    (`camera.py`): x = (u - W/2) z / fx, y = (v - H/2) z / fy, one point per pixel unless
    thinned (below).

    Metric models: z is the depth in metres. Relative models: z = 1 / disparity, a depth
    known only up to an unknown scale, and only approximately, since the disparity also has
    an unknown shift; it is never metres. Pixels without a usable value (metric <= 0,
    disparity <= 1e-6 of the frame's largest, non-finite) are left out. `intensity` is the
    pixel's luminance (0-255), as in camera point clouds; the model's own value is z itself
    (metric) or 1 / z (relative). `region` (with `include_region_labels`) is the label of the
    tracked polygon or rectangle that holds the pixel (from Annolid's per-frame LabelMe files
    or its annotation store, see `annotations.py`), "" elsewhere. PLY files are binary little
    endian with the same properties; `region` is an int32 there, named by
    `comment region <index> <label>` lines.

    `point_cloud_stride` keeps every Nth pixel in x and y; `point_cloud_voxel` then keeps the
    first point (in image order) of each occupied cube of that edge, in the cloud's unit.
    """

    result_key = "point_cloud_csv"  # also for .ply: the key users already look up
    folder = True

    def name(self, info):
        return "point_clouds"

    def open(self, info):
        super().open(info)
        self.rays = rays_of(info)
        self.grid = pixel_grid(info.width, info.height, info.settings.point_cloud_stride)
        if info.settings.include_region_labels:
            self.annotations = info.annotations  # indexed now, before the model loads

    def prepare(self, frame_index, rgb, depth):
        """Each frame is a file of its own, written whole here under a temporary name."""
        settings = self.info.settings
        keep = self.grid[usable(depth, settings.metric)[self.grid]]
        _, (x, y, z) = back_project(depth, keep, self.rays, settings.metric)
        if settings.point_cloud_voxel > 0:
            first = one_per_voxel(x, y, z, settings.point_cloud_voxel)
            keep, x, y, z = keep[first], x[first], y[first], z[first]
        points = {
            "x": x,
            "y": y,
            "z": z,
            "intensity": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).ravel()[keep],
            "rgb": rgb.reshape(-1, 3)[keep],
        }
        names = None
        if settings.include_region_labels:
            label_map, names = self.annotations.labels(frame_index) or (np.zeros(depth.shape, np.int32), [""])
            points["region"] = label_map.ravel()[keep]
        writer = write_ply if settings.point_cloud_format == "ply" else write_csv
        with self.saving(f"point_{frame_index:04d}.{settings.point_cloud_format}") as path:
            writer(path, points, names)
