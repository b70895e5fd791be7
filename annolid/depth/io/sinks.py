"""Outputs of a run: one class per file format, each `open` / `write` / `close`.

Every file is written under a temporary name and renamed once complete, so a failed or
killed run never leaves a half-written file under a final name, and a re-run replaces the
previous results. The depth video and depth frames share one colour range for the whole
video; since that range is known only at the end, they are rendered at `close()` from the
finished `depth.ndjson` (which must come first in the sink list).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import OutputError
from .records import decode_depth, encode_record, iter_records, scan_range

log = logging.getLogger(__name__)
NDJSON = "depth.ndjson"
CSV_CHUNK = 65536  # rows formatted at a time
RELATIVE_EPS = 1e-6  # disparities below this (relative to the frame's max) have no finite depth


@dataclass
class RunInfo:
    video_path: Path
    output_dir: Path
    stem: str
    width: int
    height: int
    fps: float  # of the processed frames
    total_frames: int | None = None
    metric: bool = False
    grayscale: bool = False
    focal_length_x: float = 470.4
    focal_length_y: float = 470.4
    include_region_labels: bool = False
    point_cloud_format: str = "csv"

    @property
    def kind(self) -> str:
        return "metric_depth" if self.metric else "relative_disparity"


def partial(path: Path) -> Path:
    """The temporary name a file or folder is written under until it is complete."""
    return path.with_name(path.name + ".partial")


def publish(tmp: Path, final: Path) -> None:
    """Atomically put a finished file or folder in place of the previous one."""
    if final.is_dir() and not final.is_symlink():  # folders cannot be replaced in one step
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def make_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {path} ({exc.strerror}); choose another output_dir") from None
    return path


class Sink:
    def open(self, info: RunInfo) -> None:
        self.info = info

    def write(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        pass

    def close(self, completed: bool) -> dict[str, str]:
        """Finish the output. `completed` is False after a cancel or an error: what was written
        so far is kept when it is valid on its own."""
        return {}


class NdjsonSink(Sink):
    """`depth.ndjson`: a record per frame, flushed as it is written."""

    def open(self, info):
        super().open(info)
        self.path = info.output_dir / NDJSON
        self.tmp = partial(self.path)
        self.file = open(self.tmp, "w", encoding="utf-8")
        self.count = 0

    def write(self, frame_index, rgb, depth):
        record = encode_record(depth, frame_index, self.info.video_path.name, self.info.stem, self.info.kind)
        self.file.write(json.dumps(record) + "\n")  # one write per line: a killed run cuts at most the last
        self.file.flush()
        self.count += 1

    def close(self, completed):
        self.file.close()
        if self.count == 0:  # nothing new: keep the previous results, if any
            self.tmp.unlink(missing_ok=True)
            return {"depth_ndjson": str(self.path)} if self.path.exists() else {}
        publish(self.tmp, self.path)
        return {"depth_ndjson": str(self.path)}


class FolderSink(Sink):
    """An output folder of one file per frame, built under a temporary name and swapped in
    at the end; if no frame was written the previous folder stays."""

    folder_name = result_key = ""

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / self.folder_name
        if self.final.exists() and not self.final.is_dir():
            raise OutputError(f"{self.final} is a file, but this output is a folder; move the file or choose another output_dir")
        self.tmp = partial(self.final)
        if self.tmp.is_dir():  # left by a killed run
            shutil.rmtree(self.tmp)
        self.tmp.unlink(missing_ok=True)
        make_dir(self.tmp)
        self.count = 0

    def close(self, completed):
        if self.count == 0:
            shutil.rmtree(self.tmp)
        else:
            publish(self.tmp, self.final)
        return {self.result_key: str(self.final)} if self.final.exists() else {}


def colorize(depth: np.ndarray, lo: float, hi: float, metric: bool, grayscale: bool) -> np.ndarray:
    """Depth -> BGR uint8 with a fixed range; nearer is brighter for both kinds of depth."""
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    level = (depth - lo) * scale
    if metric:  # metres grow with distance; disparity shrinks
        level = 255.0 - level
    gray = np.clip(level, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if grayscale else cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO)


class RenderedSink(Sink):
    """Base for outputs coloured with the range of the whole run, drawn from depth.ndjson."""

    def frames(self):
        ndjson = self.info.output_dir / NDJSON
        if not ndjson.exists():
            return
        lo, hi, count = scan_range(ndjson)
        for record in iter_records(ndjson):
            yield record["frame_index"], colorize(decode_depth(record), lo, hi, self.info.metric, self.info.grayscale)


class DepthVideoSink(RenderedSink):
    """`<stem>_vis.mp4` (H.264); odd sizes gain a replicated last row/column, as yuv420p needs."""

    def close(self, completed):
        final = self.info.output_dir / f"{self.info.stem}_vis.mp4"
        tmp = final.with_name(final.stem + ".partial.mp4")
        written = 0
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(self.info.fps).limit_denominator(1001))
            stream.width = self.info.width + self.info.width % 2
            stream.height = self.info.height + self.info.height % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18"}
            for _, bgr in self.frames():
                bgr = np.pad(bgr, ((0, self.info.height % 2), (0, self.info.width % 2), (0, 0)), mode="edge")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
                written += 1
            container.mux(stream.encode())
        if written == 0:
            tmp.unlink(missing_ok=True)
            return {}
        publish(tmp, final)
        return {"depth_visualization": str(final)}


class DepthFramesSink(FolderSink, RenderedSink):
    """`depth_frames/depth_NNNNN.png`, numbered by the frame's index in the video."""

    folder_name, result_key = "depth_frames", "depth_frames"

    def close(self, completed):
        for frame_index, bgr in self.frames():
            cv2.imwrite(str(self.tmp / f"depth_{frame_index:05d}.png"), bgr)
            self.count += 1
        return super().close(completed)


# --------------------------------------------------------------------------- point clouds


DIGITS = np.array([list(f"{i:03d}".encode()) for i in range(1000)], np.uint8)  # 0..999 as 3 ASCII digits


def digit_chars(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers -> [n, width] ASCII digits with leading zeros, by table look-up
    three digits at a time (integer division per digit is the slow way)."""
    groups = -(-width // 3)
    chunks = [DIGITS[values // 1000**g % 1000] for g in range(groups - 1, -1, -1)]
    return np.concatenate(chunks, axis=1)[:, 3 * groups - width :]


def csv_columns(columns: list[tuple[np.ndarray, int | list[str]]]) -> bytes:
    """Rows as CSV text, vectorised (far faster than np.savetxt): builds a character matrix
    and keeps the cells in use. A column is (numbers, decimals) or (indices, names) for text.
    """
    n = len(columns[0][0])
    pieces, masks = [], []

    def add(chars, mask):
        pieces.append(chars.astype(np.uint8))
        masks.append(mask)

    for c, (values, spec) in enumerate(columns):
        if isinstance(spec, list):  # text: look each row's cell up in a padded table
            cells = [(json.dumps(t) if ("," in t or '"' in t) else t).encode() for t in spec]
            width = max(1, max(map(len, cells)))
            table = np.zeros((len(cells), width), np.uint8)
            used = np.zeros((len(cells), width), bool)
            for i, cell in enumerate(cells):
                table[i, : len(cell)], used[i, : len(cell)] = np.frombuffer(cell, np.uint8), True
            add(table[values], used[values])
        else:
            scaled = np.rint(np.asarray(values, np.float64) * 10**spec).astype(np.int64)
            whole, fraction = np.divmod(np.abs(scaled), 10**spec)
            width = len(str(int(whole.max()))) if n else 1
            digits_used = 1 + sum((whole >= 10**k for k in range(1, width)), np.zeros(n, np.int64))
            add(np.full((n, 1), ord("-")), (scaled < 0)[:, None])
            add(digit_chars(whole, width), np.arange(width) >= width - digits_used[:, None])
            if spec:
                add(np.full((n, 1), ord(".")), np.ones((n, 1), bool))
                add(digit_chars(fraction, spec), np.ones((n, spec), bool))
        add(np.full((n, 1), ord("\n" if c == len(columns) - 1 else ",")), np.ones((n, 1), bool))
    return np.concatenate(pieces, axis=1)[np.concatenate(masks, axis=1)].tobytes()


def region_labels(json_path: Path, height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """LabelMe polygons and rectangles rasterised: (label index per pixel, 0 = none; names)."""
    names = [""]
    label_map = np.zeros((height, width), np.int32)
    if not json_path.exists():
        return label_map, names
    try:
        shapes = json.loads(json_path.read_text(encoding="utf-8")).get("shapes", [])
    except (OSError, ValueError) as exc:
        log.warning("ignoring region labels in %s: %s", json_path, exc)
        return label_map, names
    for shape in shapes:  # later shapes are drawn over earlier ones
        points = np.asarray(shape.get("points", []), np.float64)
        kind = shape.get("shape_type") or "polygon"
        if kind not in ("polygon", "rectangle") or len(points) < 2:
            continue
        label = str(shape.get("label", ""))
        if label not in names:
            names.append(label)
        value = names.index(label)
        if kind == "rectangle":
            (x0, y0), (x1, y1) = points.min(0), points.max(0)
            cv2.rectangle(label_map, (round(x0), round(y0)), (round(x1), round(y1)), value, thickness=-1)
        else:
            cv2.fillPoly(label_map, [np.round(points).astype(np.int32)], value)
    return label_map, names


class PointCloudSink(FolderSink):
    """`point_clouds/point_NNNN.csv` (or `.ply`): one pinhole back-projection per frame.

    x = (u - cx) z / fx, y = (v - cy) z / fy with cx, cy the image centre. Metric models:
    z is metres. Relative models: z = 1 / disparity, a depth known only up to an unknown
    scale (and approximate, since the disparity also has an unknown shift); pixels with no
    disparity are left out. `intensity` is the pixel's luminance (0-255).
    """

    folder_name, result_key = "point_clouds", "point_cloud_csv"

    def open(self, info):
        super().open(info)
        v, u = np.mgrid[0 : info.height, 0 : info.width].astype(np.float32)
        self.rays = ((u - info.width / 2) / info.focal_length_x, (v - info.height / 2) / info.focal_length_y)

    def write(self, frame_index, rgb, depth):
        info = self.info
        if info.metric:
            z, keep = depth, depth > 0
        else:
            keep = depth > RELATIVE_EPS * max(float(depth.max()), RELATIVE_EPS)
            z = np.divide(1.0, depth, out=np.zeros_like(depth), where=keep)
        x, y = self.rays[0] * z, self.rays[1] * z
        intensity = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        labels, names = None, None
        if info.include_region_labels:
            json_path = info.video_path.parent / info.stem / f"{info.stem}_{frame_index:09d}.json"
            labels, names = region_labels(json_path, info.height, info.width)
        pick = lambda a: a[keep]  # noqa: E731
        path = self.tmp / f"point_{frame_index:04d}.{info.point_cloud_format}"
        points = (pick(x), pick(y), pick(z), pick(intensity), None if labels is None else pick(labels), pick(rgb))
        (write_ply if info.point_cloud_format == "ply" else write_csv)(path, *points, names)
        self.count += 1


def write_csv(path, x, y, z, intensity, labels, rgb, names):
    columns = [(x, 5), (y, 5), (z, 5), (intensity, 0)]
    if labels is not None:
        columns.append((labels, names))
    columns += [(rgb[:, 0], 0), (rgb[:, 1], 0), (rgb[:, 2], 0)]
    header = "x,y,z,intensity" + (",region" if labels is not None else "") + ",red,green,blue\n"
    with open(path, "wb") as out:
        out.write(header.encode())
        for start in range(0, len(x), CSV_CHUNK):  # chunks that stay in cache: about 2x faster
            out.write(csv_columns([(values[start : start + CSV_CHUNK], spec) for values, spec in columns]))


def write_ply(path, x, y, z, intensity, labels, rgb, names):
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if labels is not None:
        fields.append(("region", "<i4"))
    vertices = np.empty(len(x), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"], vertices["intensity"] = x, y, z, intensity
    vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    types = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header = ["ply", "format binary_little_endian 1.0"]
    if labels is not None:
        vertices["region"] = labels
        header += [f"comment region {i} {name}" for i, name in enumerate(names)]
    header += [f"element vertex {len(x)}"] + [f"property {types[t]} {name}" for name, t in fields] + ["end_header"]
    with open(path, "wb") as out:
        out.write(("\n".join(header) + "\n").encode())
        vertices.tofile(out)


# --------------------------------------------------------------------------- arrays


class NpzSink(Sink):
    """`<stem>_depths.npz` with `depths` [N, H, W] float32 and `frame_indices` [N].

    Frames go to a raw temporary file as they arrive; the archive is assembled at the end by
    streaming that file, so memory does not grow with the video.
    """

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / f"{info.stem}_depths.npz"
        self.raw_path = partial(self.final.with_suffix(".raw"))
        self.raw = open(self.raw_path, "wb")
        self.indices: list[int] = []  # 8 bytes a frame

    def write(self, frame_index, rgb, depth):
        self.raw.write(np.ascontiguousarray(depth, np.float32).tobytes())
        self.indices.append(frame_index)

    def close(self, completed):
        self.raw.close()
        try:
            if not self.indices:
                return {}
            tmp = partial(self.final)
            shape = (len(self.indices), self.info.height, self.info.width)
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                with archive.open("depths.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_2_0(
                        member, {"descr": "<f4", "fortran_order": False, "shape": shape}
                    )
                    with open(self.raw_path, "rb") as raw:
                        shutil.copyfileobj(raw, member, 1 << 22)
                with archive.open("frame_indices.npy", "w") as member:
                    np.lib.format.write_array(member, np.asarray(self.indices, np.int64))
            publish(tmp, self.final)
            return {"npz": str(self.final)}
        finally:
            self.raw_path.unlink(missing_ok=True)


class ExrSink(FolderSink):
    """`<stem>_depths_exr/depth_NNNNN.exr`: one single-channel float32 EXR (channel `Z`) per frame."""

    result_key = "exr"

    def open(self, info):
        try:
            import OpenEXR
        except ImportError:
            raise OutputError("EXR output needs the OpenEXR package: pip install OpenEXR (or turn save_exr off)") from None
        self.exr = OpenEXR
        self.folder_name = f"{info.stem}_depths_exr"
        super().open(info)

    def write(self, frame_index, rgb, depth):
        header = {"compression": self.exr.ZIP_COMPRESSION, "type": self.exr.scanlineimage}
        with self.exr.File(header, {"Z": np.ascontiguousarray(depth, np.float32)}) as image:
            image.write(str(self.tmp / f"depth_{frame_index:05d}.exr"))
        self.count += 1


def build_sinks(
    info: RunInfo,
    save_depth_video: bool = False,
    save_depth_frames: bool = False,
    save_point_clouds: bool = False,
    save_npz: bool = False,
    save_exr: bool = False,
) -> list[Sink]:
    """The sinks a run asked for; depth.ndjson always, and first (the rendered ones read it)."""
    chosen = [
        (True, NdjsonSink),
        (save_npz, NpzSink),
        (save_exr, ExrSink),
        (save_point_clouds, PointCloudSink),
        (save_depth_video, DepthVideoSink),
        (save_depth_frames, DepthFramesSink),
    ]
    return [cls() for wanted, cls in chosen if wanted]
