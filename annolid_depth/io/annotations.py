"""Annolid's tracking output for one video, as label maps at the processed frame size.

A frame's shapes live in its LabelMe file `<video folder>/<stem>/<stem>_<frame:09d>.json`
or, where that is absent or unreadable, in the annotation store
`<video folder>/<stem>/<stem>_annotations.ndjson` (one JSON record per line with a `frame`
key; a later record for a frame replaces an earlier one). A per-frame file may also be a
stub, `{"annotation_store": <name>, "frame": N}`, that points into a store.

Stores grow with the video, so they are read once into an index of byte offsets (the
latest record of each frame) and a frame's record is read back from disk when asked for.
Each read opens the file afresh, so several threads may ask at once.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

STORE_SUFFIX = "_annotations.ndjson"
MIN_POINTS = {"polygon": 3, "rectangle": 2}  # the shape types that cover an area
BEYOND = 1e12  # coordinates farther than this from the frame are taken as this far (the frame is a dot there)


def frame_of_path(name: str) -> int | None:
    """The frame number a LabelMe file or image is named with (`..._000000042.json`)."""
    match = re.search(r"_(\d+)\.\w+$", name)
    return int(match.group(1)) if match else None


class StoreIndex:
    """Where the latest record of each frame starts in an annotation store."""

    def __init__(self, path: Path):
        self.path = path
        self.offsets: dict[int, int] = {}
        if not path.is_file():
            return
        try:
            with open(path, "rb") as lines:
                offset = 0
                for number, line in enumerate(lines, 1):
                    frame = self._frame(line, number)
                    if frame is not None:
                        self.offsets[frame] = offset
                    offset += len(line)
        except OSError as exc:
            log.warning("cannot read the annotation store %s (%s); its annotations are ignored", path, exc.strerror)
            self.offsets.clear()

    def _frame(self, line: bytes, number: int) -> int | None:
        """The frame a store line is for; None (with a warning) for a line that is not a record."""
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except ValueError as exc:
            log.warning("%s line %d is not valid JSON (%s); skipped", self.path, number, exc)
            return None
        frame = record.get("frame") if isinstance(record, dict) else None
        if frame is None and isinstance(record, dict):
            frame = frame_of_path(str(record.get("imagePath") or ""))  # older stores name the image only
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            log.warning("%s line %d has no frame number; skipped", self.path, number)
            return None
        return frame

    def record(self, frame: int) -> dict | None:
        offset = self.offsets.get(frame)
        if offset is None:
            return None
        with open(self.path, "rb") as lines:
            lines.seek(offset)
            return json.loads(lines.readline())


class VideoAnnotations:
    """The tracked shapes of one video, rasterised to label maps of `width` x `height`.

    Shapes are in the video's own pixels (the record's `imageWidth` x `imageHeight`) and are
    scaled to the processed size, since `max_res` shrinks frames; a record without a size is
    taken to be at the processed size. Polygons (3+ points) and rectangles (two opposite
    corners, either order) cover an area; other shape types (points, lines, circles) and
    shapes without a label are not regions. Where shapes overlap, the first one in the
    record claims the pixel, as in Annolid. A shape with fewer points than its type needs
    is skipped with a warning (once per run; later ones are counted in `skipped_shapes`).
    """

    def __init__(self, video_path: str | Path, width: int, height: int):
        video = Path(video_path)
        self.stem = video.stem
        self.folder = video.parent / self.stem
        self.width, self.height = width, height
        self.files: dict[int, Path] = {}
        if self.folder.is_dir():
            name = re.compile(re.escape(self.stem) + r"_(\d{9})\.json")
            for path in self.folder.iterdir():
                if match := name.fullmatch(path.name):
                    self.files[int(match.group(1))] = path
        self.store_path = self.folder / f"{self.stem}{STORE_SUFFIX}"
        self.stores = {self.store_path.name: StoreIndex(self.store_path)}
        self.frames = frozenset(self.files) | frozenset(self.stores[self.store_path.name].offsets)
        self.skipped_shapes = 0
        self._lock = threading.Lock()

    def record(self, frame: int) -> tuple[dict, str] | None:
        """The frame's LabelMe record and where it came from (for warnings), or None."""
        path = self.files.get(frame)
        if path is not None:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s (%s); using the annotation store for frame %d", path, exc, frame)
            else:
                if "annotation_store" not in record:
                    return record, str(path)
                return self._from_store(str(record["annotation_store"]), record.get("frame", frame))
        return self._from_store(self.store_path.name, frame)

    def _from_store(self, name: str, frame) -> tuple[dict, str] | None:
        name = Path(name).name  # a stub names a store in its own folder
        with self._lock:
            if name not in self.stores:
                self.stores[name] = StoreIndex(self.folder / name)
            store = self.stores[name]
        try:
            record = store.record(int(frame))
            if record is not None and not isinstance(record, dict):
                raise ValueError("the store changed since it was indexed")
        except (OSError, ValueError, TypeError) as exc:
            log.warning("cannot read frame %s from %s (%s); no annotations for it", frame, store.path, exc)
            return None
        return None if record is None else (record, f"{store.path} frame {frame}")

    def labels(self, frame: int) -> tuple[np.ndarray, list[str]] | None:
        """(label map int32 [height, width], 0 = no region; names, names[0] = "") for the
        frame, or None when the frame has no annotations."""
        found = self.record(frame)
        if found is None:
            return None
        record, source = found
        shapes = record.get("shapes") or []
        if not isinstance(shapes, list):
            log.warning("%s: shapes is not a list; no annotations for frame %d", source, frame)
            shapes = []
        scale = self._scale(record)
        names = [""]
        polygons: list[tuple[int, np.ndarray]] = []
        for shape in shapes:
            polygon = self._polygon(shape, scale, source)
            if polygon is None:
                continue
            label = str(shape["label"])
            if label not in names:
                names.append(label)
            polygons.append((names.index(label), polygon))
        label_map = np.zeros((self.height, self.width), np.int32)
        for value, polygon in reversed(polygons):  # drawn last, the first shape keeps its pixels
            if len(polygon):
                cv2.fillPoly(label_map, [polygon], value)
        return label_map, names

    def _scale(self, record: dict) -> np.ndarray:
        size = record.get("imageWidth"), record.get("imageHeight")
        if all(isinstance(n, (int, float)) and n > 0 for n in size):
            return np.array([self.width / size[0], self.height / size[1]])
        return np.ones(2)

    def _polygon(self, shape, scale: np.ndarray, source: str) -> np.ndarray | None:
        """The shape's outline in processed pixels, cut to the frame, or None when it covers no area."""
        if not isinstance(shape, dict) or not shape.get("label"):
            return None
        kind = shape.get("shape_type") or "polygon"
        if kind not in MIN_POINTS:
            return None
        try:
            points = np.asarray(shape.get("points") or [], np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            points = np.empty((0, 2))
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) < MIN_POINTS[kind]:
            self._skipped(f"{source}: {kind} {shape['label']!r} has {len(points)} usable points, needs {MIN_POINTS[kind]}")
            return None
        if kind == "rectangle":
            (x0, y0), (x1, y1) = points[:2].min(axis=0), points[:2].max(axis=0)
            points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        # clipped to just beyond the frame first: far-off coordinates (1e300) would overflow the
        # pixel type and cover the wrong pixels; the part of the shape inside the frame is kept exactly
        points = clip_polygon(np.clip(points, -BEYOND, BEYOND), -1 / scale, (self.width + 1, self.height + 1) / scale)
        return np.round(points * scale).astype(np.int32)  # no points: the shape lies outside the frame

    def _skipped(self, why: str) -> None:
        with self._lock:
            self.skipped_shapes += 1
            first = self.skipped_shapes == 1
        if first:
            log.warning("%s; skipped (further shapes like it are skipped without a warning)", why)


def clip_polygon(points: np.ndarray, low, high) -> np.ndarray:
    """The polygon `points` [n, 2] cut to the box from `low` to `high` (x, y): the polygon of
    their common area (Sutherland and Hodgman's method, one side of the box at a time)."""
    for axis in (0, 1):
        for bound, sign in ((low[axis], 1.0), (high[axis], -1.0)):
            inside = sign * (points[:, axis] - bound) >= 0
            kept = []
            for i in range(len(points)):
                current, previous = points[i], points[i - 1]
                if inside[i] != inside[i - 1]:  # the edge crosses this side: where it does
                    t = (bound - previous[axis]) / (current[axis] - previous[axis])
                    kept.append(previous + t * (current - previous))
                if inside[i]:
                    kept.append(current)
            points = np.array(kept, np.float64).reshape(-1, 2)
            if not len(points):
                return points
    return points
