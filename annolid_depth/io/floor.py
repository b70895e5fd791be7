"""The floor under the tracked animals: a plane fitted to the back-projected points outside
every tracked region, and the frame on it in which heights and floor paths are measured.

The points are the point clouds' (`camera.py`), so the floor is in their unit: metres for
metric models; for relative models the unit of z = 1 / disparity (`"1/disparity"`). A plane's
disparity is affine in the pixel coordinates, so under a relative model's unknown scale and
shift the floor is still a plane, but tilted and placed differently, and heights above it are
no fixed multiple of true ones (the factor changes with the distance from the camera): good
for comparing animals and frames of one video, not for millimetres. The fit is RANSAC (a
seeded generator: the same points give the same floor) followed by least squares (the plane
of least squared distances, by SVD) on the inliers.

The floor frame: `normal` points from the camera towards the floor, so `normal . p = offset`
on the plane and `offset` > 0 is the camera's distance to it. The origin is the foot of the
camera on the plane (`offset * normal`); x is the camera's x axis (the image's rows, left to
right) projected onto the plane; y = up x x, with up = -normal, so (x, y, height) is
right-handed with height positive towards the camera, and a top-down plot of (x, y) shows
the floor as the image does (y towards the top of the image).

`depth_floor.json` holds `Floor.to_dict()` (its fields, and the frame's axes for readers); a
run whose points hold no floor writes `{"floor": null, "reason": ..., "units": ..., "frames":
[...]}` instead (`floor_document`, `read_floor_document`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .camera import back_project, usable

FLOOR_JSON = "depth_floor.json"
METRIC_TOLERANCE = 0.02  # metres: inliers lie within 2 cm of the plane ...
RELATIVE_TOLERANCE = 0.02  # ... or, in relative units, within 2 % of the points' median distance
MIN_INLIER_SHARE = 0.5  # of the sampled points: a smaller share is no dominant plane
MIN_POINTS = 256  # usable points outside the regions, over all sampled frames
MIN_VIEW_COS = 0.1  # normal . view direction: under it (about 84 degrees) the plane is edge-on or behind
MIN_SPREAD = 0.02  # the inliers' narrower in-plane spread over their wider one: under it, a line
SAMPLE_FRAMES = 8  # the first processed frames make the sample ...
POINTS_PER_FRAME = 4096  # ... each thinned evenly to at most this many points outside the regions
ITERATIONS = 256  # RANSAC hypotheses: at an inlier share of 0.5, all miss the floor with odds 1e-15
SCORED_POINTS = 4096  # points each hypothesis is scored on
REFINEMENTS = 5  # least-squares rounds at most, until the inliers stop changing
SEED = 0


def floor_units(metric: bool) -> str:
    """The unit of the point clouds' coordinates, and so of the floor, heights and floor paths."""
    return "m" if metric else "1/disparity"


@dataclass(frozen=True)
class Floor:
    """A fitted floor and how well it fits: the sanity check of every height measured on it."""

    normal: tuple[float, float, float]  # unit, camera coordinates, from the camera towards the floor
    offset: float  # the camera's distance to the plane
    units: str
    inlier_share: float  # of the sampled points, within `tolerance` of the plane
    rms: float  # the inliers' distances to the plane
    p90: float
    points: int  # sampled
    frames: tuple[int, ...]  # whose points were sampled
    tolerance: float  # inlier distance, in `units`
    min_inlier_share: float
    x_axis: tuple[float, float, float] = field(init=False)
    y_axis: tuple[float, float, float] = field(init=False)

    def __post_init__(self):
        # The camera's x axis minus its normal part; MIN_VIEW_COS keeps its length >= 0.1.
        normal = np.array(self.normal)
        x_axis = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
        x_axis /= np.linalg.norm(x_axis)
        object.__setattr__(self, "x_axis", tuple(x_axis.tolist()))
        object.__setattr__(self, "y_axis", tuple(np.cross(-normal, x_axis).tolist()))

    def height(self, x, y, z):
        """Signed distance above the floor of points (arrays or numbers), positive on the camera's side."""
        a, b, c = self.normal
        return self.offset - (a * x + b * y + c * z)

    def floor_xy(self, x, y, z):
        """The points' (x, y) in the floor frame (their foot on the plane, from the camera's foot)."""
        (ax, ay, az), (bx, by, bz) = self.x_axis, self.y_axis
        return ax * x + ay * y + az * z, bx * x + by * y + bz * z

    def to_dict(self) -> dict:
        """Plain JSON values (lists for the tuples); the axes are for readers only."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, fields: dict) -> Floor:
        """From `to_dict()`; the axes follow from the normal."""
        return cls(
            normal=tuple(float(v) for v in fields["normal"]), offset=float(fields["offset"]), units=str(fields["units"]),
            inlier_share=float(fields["inlier_share"]), rms=float(fields["rms"]), p90=float(fields["p90"]),
            points=int(fields["points"]), frames=tuple(int(f) for f in fields["frames"]),
            tolerance=float(fields["tolerance"]), min_inlier_share=float(fields["min_inlier_share"]),
        )


def floor_document(found: Floor | None, reason: str, units: str, frames: Sequence[int]) -> dict:
    """The content of `depth_floor.json`: the floor's fields, or why there is none."""
    if found is not None:
        return found.to_dict()
    return {"floor": None, "reason": reason, "units": units, "frames": list(frames)}


def read_floor_document(document: dict) -> tuple[Floor | None, str]:
    """(floor, "") or (None, the reason) from `depth_floor.json`'s content."""
    if "normal" in document:
        return Floor.from_dict(document), ""
    return None, str(document.get("reason") or "no floor")


def fit_floor(
    points: np.ndarray,
    metric: bool,
    frames: Sequence[int] = (),
    *,
    tolerance: float | None = None,
    min_inlier_share: float = MIN_INLIER_SHARE,
    seed: int = SEED,
) -> tuple[Floor | None, str]:
    """The dominant plane of `points` [N, 3] (camera coordinates) as a Floor and "", or
    None and the reason there is none (for the caller's warning). `tolerance` (the inlier
    distance) defaults to 2 cm for metric points and to 2 % of the points' median distance
    from the camera otherwise, since relative units have no fixed scale."""
    units = floor_units(metric)
    points = np.asarray(points, np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < MIN_POINTS:
        return None, f"too few points with a usable depth outside the tracked regions ({len(points)}, needs {MIN_POINTS})"
    if tolerance is None:
        tolerance = METRIC_TOLERANCE if metric else RELATIVE_TOLERANCE * float(np.median(np.linalg.norm(points, axis=1)))

    normal, offset = ransac_plane(points, tolerance, np.random.default_rng(seed))
    if normal is None:
        return None, "the points lie on a line or a point: no plane"
    inliers = np.abs(points @ normal - offset) < tolerance
    for _ in range(REFINEMENTS):
        normal, offset, spread = least_squares_plane(points[inliers])
        refined = np.abs(points @ normal - offset) < tolerance
        if np.array_equal(refined, inliers) or refined.sum() < 3:
            break
        inliers = refined
    distances = np.abs(points @ normal - offset)
    inliers = distances < tolerance
    share = float(inliers.mean())
    if share < min_inlier_share:
        return None, (f"no dominant plane: at best {share:.0%} of {len(points)} sampled points lie within "
                      f"{tolerance:.3g} {units} of one plane, needs {min_inlier_share:.0%}")
    if spread < MIN_SPREAD:
        return None, "the points on the best plane lie along a narrow strip: too thin to fix a floor"
    if offset < 0:
        normal, offset = -normal, -offset
    if offset <= tolerance:
        return None, f"the best plane passes through the camera (distance {offset:.3g} {units})"
    if normal[2] < MIN_VIEW_COS:
        angle = math.degrees(math.acos(float(np.clip(normal[2], -1, 1))))
        return None, (f"the best plane is behind the camera or seen edge-on (its normal is {angle:.0f} degrees from "
                      f"the view direction, at most {math.degrees(math.acos(MIN_VIEW_COS)):.0f}): not a floor below it")
    distances = distances[inliers]
    return Floor(
        normal=tuple(normal.tolist()), offset=float(offset), units=units, inlier_share=share,
        rms=float(np.sqrt(np.mean(distances**2))), p90=float(np.percentile(distances, 90)),
        points=len(points), frames=tuple(int(f) for f in frames), tolerance=float(tolerance),
        min_inlier_share=float(min_inlier_share),
    ), ""


def ransac_plane(points: np.ndarray, tolerance: float, rng: np.random.Generator) -> tuple[np.ndarray | None, float]:
    """The plane through three of the points that best explains a sample of them: least sum
    of squared distances, each capped at the tolerance (MSAC), all hypotheses at once."""
    triples = points[rng.integers(0, len(points), (ITERATIONS, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    valid = lengths > 1e-12 * np.abs(triples).max() ** 2
    if not valid.any():
        return None, 0.0
    normals = normals[valid] / lengths[valid, None]
    offsets = np.einsum("ij,ij->i", normals, triples[valid, 0])
    scored = points[rng.choice(len(points), min(len(points), SCORED_POINTS), replace=False)]
    costs = np.minimum(np.abs(scored @ normals.T - offsets), tolerance) ** 2
    best = int(np.argmin(costs.sum(axis=0)))
    return normals[best], float(offsets[best])


def least_squares_plane(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(normal, offset, in-plane spread ratio) of the plane of least squared distances."""
    centre = points.mean(axis=0)
    _, singular, axes = np.linalg.svd(points - centre, full_matrices=False)
    return axes[2], float(axes[2] @ centre), float(singular[1] / singular[0])


class FloorSample:
    """The points a run's floor is fitted to: those outside every tracked region (label 0)
    of its first `frames` processed frames, each frame thinned evenly to at most
    `points_per_frame` points (its own phase of the thinning, so frames add new pixels).
    Fed the same frames in the same order, a streaming run and a rebuild from depth.ndjson
    sample the same points; memory stays at frames x points_per_frame points."""

    def __init__(self, rays: tuple[np.ndarray, np.ndarray], metric: bool,
                 frames: int = SAMPLE_FRAMES, points_per_frame: int = POINTS_PER_FRAME):
        self.rays, self.metric = rays, metric
        self.max_frames, self.points_per_frame = frames, points_per_frame
        self.frames: list[int] = []
        self.chunks: list[np.ndarray] = []

    @property
    def full(self) -> bool:
        return len(self.frames) >= self.max_frames

    def add(self, frame_index: int, depth: np.ndarray, label_map: np.ndarray | None = None) -> None:
        """Sample a frame (all of it without annotations); once full, frames are ignored."""
        if self.full:
            return
        keep = usable(depth, self.metric)
        if label_map is not None:
            keep &= label_map.ravel() == 0
        pixels = np.flatnonzero(keep)
        step = max(1, -(-len(pixels) // self.points_per_frame))
        phase = len(self.frames) * step // self.max_frames
        _, xyz = back_project(depth, pixels[phase::step], self.rays, self.metric)
        self.chunks.append(np.stack(xyz, axis=1))
        self.frames.append(frame_index)

    def fit(self, **options) -> tuple[Floor | None, str]:
        """`fit_floor` on the points sampled so far (options: its keywords)."""
        points = np.concatenate(self.chunks) if self.chunks else np.empty((0, 3))
        return fit_floor(points, self.metric, self.frames, **options)
