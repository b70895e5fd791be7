"""Outputs of a run: one class per output, each `open` / `write` / `close`.

`open` checks the target before any inference (a file where a folder goes, a folder that
takes no files, a missing optional package) and raises `OutputError` naming the path.
Everything is written under `<final name>.partial` and renamed once complete, so a failed
or killed run never leaves a half-written file under a final name, and a re-run replaces
the previous results instead of adding to them. A run that wrote no frame leaves the
previous results in place. The depth video and the depth frames share one colour range for
the whole video; since that range is known only at the end, they are rendered at `close()`
from the finished `depth.ndjson`, which therefore comes first in the sink list.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import OutputError
from .annotations import VideoAnnotations
from .camera import back_project, pinhole_rays, usable
from .records import decode_depth, encode_png, encode_record, iter_records, scan_range
from .regions import PLOT_MISSING, header, plot_regions, region_rows

log = logging.getLogger(__name__)
NDJSON = "depth.ndjson"
REGIONS_CSV = "depth_regions.csv"
REGIONS_PNG = "depth_regions.png"


@dataclass
class RunInfo:
    """What every sink needs to know about the run before the first frame."""

    video_path: Path
    output_dir: Path
    stem: str
    width: int  # of the processed frames
    height: int
    fps: float  # of the processed frames
    total_frames: int | None = None
    metric: bool = False
    grayscale: bool = False
    focal_length_x: float = 470.4
    focal_length_y: float = 470.4
    include_region_labels: bool = False
    point_cloud_format: str = "csv"
    source_fps: float | None = None  # of the video itself, for timestamps (None: fps)

    @property
    def kind(self) -> str:
        return "metric_depth" if self.metric else "relative_disparity"

    @functools.cached_property
    def annotations(self) -> VideoAnnotations:
        """The video's tracked shapes, indexed once for all the sinks that use them."""
        return VideoAnnotations(self.video_path, self.width, self.height)


# --------------------------------------------------------------------------- files


def partial(path: Path) -> Path:
    """The temporary name a file or folder is written under until it is complete."""
    return path.with_name(path.name + ".partial")


def publish(tmp: Path, final: Path) -> None:
    """Put a finished file or folder in place of the previous one."""
    if final.is_dir() and not final.is_symlink():  # a folder cannot be replaced in one step
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def cannot_write(path: Path, exc: OSError) -> OutputError:
    existing = next((folder for folder in path.parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        return OutputError(f"{existing} is a file, not a folder; choose another output_dir")
    return OutputError(f"cannot write {path} ({exc.strerror or exc}); choose another output_dir")


def claim_file(final: Path) -> Path:
    """Check that `final` can become this output file and that its folder takes files;
    returns the temporary name (cleared of a killed run's leftovers)."""
    if final.is_dir():
        raise OutputError(f"{final} is a folder, but this output is a file; move it or choose another output_dir")
    tmp = partial(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove(tmp)
        tmp.touch()
        tmp.unlink()
    except OSError as exc:
        raise cannot_write(tmp, exc) from None
    return tmp


def claim_folder(final: Path) -> Path:
    """Check that `final` can become this output folder; returns an empty temporary folder."""
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final} is a file, but this output is a folder; move the file or choose another output_dir")
    tmp = partial(final)
    try:
        remove(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise cannot_write(tmp, exc) from None
    return tmp


# --------------------------------------------------------------------------- sinks


class Sink:
    """One output. `prepare` does a frame's CPU work (quantise, colourise, encode, format) and
    may run in a pool of workers, in any order; `write` then takes its result on one thread, in
    frame order, and does only ordered appends. A sink with nothing heavy to do keeps the
    default `prepare`, which hands the frame itself to `write`."""

    def open(self, info: RunInfo) -> None:
        self.info = info
        self.count = 0  # frames written by this run

    def prepare(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray):
        return rgb, depth

    def write(self, frame_index: int, payload) -> None:
        self.count += 1

    def put(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        """`prepare` then `write`, for a caller that writes one frame at a time."""
        self.write(frame_index, self.prepare(frame_index, rgb, depth))

    def close(self, completed: bool) -> dict[str, str]:
        """Finish the output and return its result entries. `completed` is False after a
        cancel or an error: what was written so far is kept, since every part is valid."""
        return {}


class NdjsonSink(Sink):
    """`depth.ndjson`: a record per frame, flushed as it is written, so a killed run leaves
    `depth.ndjson.partial` with every line but at most the last one complete."""

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / NDJSON
        self.tmp = claim_file(self.final)
        self.file = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def prepare(self, frame_index, rgb, depth):
        record = encode_record(depth, frame_index, self.info.video_path.name, self.info.stem, self.info.kind)
        return json.dumps(record) + "\n"

    def write(self, frame_index, line):
        self.file.write(line)
        self.file.flush()
        super().write(frame_index, line)

    def close(self, completed):
        self.file.close()
        if self.count:
            publish(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)
        return {"depth_ndjson": str(self.final)} if self.final.exists() else {}


class FolderSink(Sink):
    """A folder of one file per frame, built under a temporary name and swapped in whole at
    the end, so no file of an earlier run survives beside the new ones."""

    result_key = ""

    def folder(self, info: RunInfo) -> Path:
        raise NotImplementedError

    def open(self, info):
        super().open(info)
        self.final = self.folder(info)
        self.tmp = claim_folder(self.final)

    @contextmanager
    def saving(self, name: str) -> Iterator[Path]:
        """The temporary path to write one file of the folder to; renamed once written, so
        even the folder a killed run leaves holds only complete files."""
        tmp = partial(self.tmp / name)
        yield tmp
        os.replace(tmp, self.tmp / name)

    def close(self, completed):
        if self.count:
            publish(self.tmp, self.final)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return {self.result_key: str(self.final)} if self.final.exists() else {}


def colorize(depth: np.ndarray, lo: float, hi: float, metric: bool, grayscale: bool) -> np.ndarray:
    """Depth -> BGR uint8 over the fixed range [lo, hi], inferno or gray. Nearer is brighter
    for both kinds: disparity grows towards the camera, metres shrink, so metric depth is
    drawn inverted (linear in -depth)."""
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    level = (depth - lo) * scale
    if metric:
        level = 255.0 - level
    gray = np.clip(level, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if grayscale else cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO)


def rendered_frames(info: RunInfo) -> Iterator[tuple[int, np.ndarray]]:
    """(frame_index, BGR image) for every record of the finished depth.ndjson, all coloured
    with the range of the whole run so a colour means the same depth in every frame."""
    ndjson = info.output_dir / NDJSON
    lo, hi, _ = scan_range(ndjson)
    for record in iter_records(ndjson):
        yield record["frame_index"], colorize(decode_depth(record), lo, hi, info.metric, info.grayscale)


# Visually lossless for both: x264 at CRF 18 with the "veryfast" preset (at 1280x720 about
# half the time of the default preset for a file ~20 % larger: the video is rendered while
# the user waits); MPEG-4 with a fixed quantiser of 3 (given as a lambda, 3 * FF_QP2LAMBDA),
# since its default bit rate smears the colour bands.
VIDEO_QUALITY = {
    "libx264": {"crf": "18", "preset": "veryfast"},
    "mpeg4": {"flags": "+qscale", "global_quality": str(3 * 118)},
}


class DepthVideoSink(Sink):
    """`<stem>_vis.mp4` at the processed fps (a fractional rate kept exact), H.264 where
    PyAV has libx264, else MPEG-4 Part 2. yuv420p needs even sizes, so an odd width or
    height gains one replicated last column or row."""

    def __init__(self, codecs: tuple[str, ...] = ("libx264", "mpeg4")):
        self.codecs = codecs

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / f"{info.stem}_vis.mp4"
        self.tmp = claim_file(self.final)
        available = [codec for codec in self.codecs if codec in av.codecs_available]
        if not available:
            raise OutputError(f"PyAV has none of the video encoders {', '.join(self.codecs)}; turn save_depth_video off")
        self.codec = available[0]

    def close(self, completed):
        if self.count:
            info = self.info
            pad = ((0, info.height % 2), (0, info.width % 2), (0, 0))
            with av.open(str(self.tmp), "w", format="mp4") as container:
                stream = container.add_stream(self.codec, rate=Fraction(info.fps).limit_denominator(1001))
                stream.width, stream.height = info.width + info.width % 2, info.height + info.height % 2
                stream.pix_fmt = "yuv420p"
                stream.options = VIDEO_QUALITY.get(self.codec, {})
                for _, bgr in rendered_frames(info):
                    frame = av.VideoFrame.from_ndarray(np.pad(bgr, pad, mode="edge"), format="bgr24")
                    container.mux(stream.encode(frame))
                container.mux(stream.encode())
            publish(self.tmp, self.final)
        return {"depth_visualization": str(self.final)} if self.final.exists() else {}


class DepthFramesSink(FolderSink):
    """`depth_frames/depth_NNNNN.png`, numbered by the frame's index in the video."""

    result_key = "depth_frames"

    def folder(self, info):
        return info.output_dir / "depth_frames"

    def close(self, completed):
        if self.count:
            for frame_index, bgr in rendered_frames(self.info):
                with self.saving(f"depth_{frame_index:05d}.png") as path:
                    path.write_bytes(encode_png(bgr))
        return super().close(completed)


# --------------------------------------------------------------------------- CSV text


def cell_table(cells: list[bytes], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as (characters, in-use mask), both [len(cells), width] uint8, right-aligned."""
    width = width or max([1, *map(len, cells)])
    chars = np.zeros((len(cells), width), np.uint8)
    used = np.zeros((len(cells), width), np.uint8)
    for row, cell in enumerate(cells):
        if cell:
            chars[row, width - len(cell) :] = np.frombuffer(cell, np.uint8)
            used[row, width - len(cell) :] = 1
    return chars, used


def gather_rows(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`table[codes]` for a 2-D uint8 table, moving each row as one item: several times
    faster than numpy's row-wise fancy indexing."""
    width = table.shape[1]
    item = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(width, np.dtype((np.void, width)))
    return np.ascontiguousarray(table).view(item).ravel()[codes].view(np.uint8).reshape(len(codes), width)


DIGITS = np.array([list(f"{i:03d}\0".encode()) for i in range(1000)], np.uint8)  # 4 bytes: rows move as uint32
BYTES = cell_table([str(i).encode() for i in range(256)], 4)  # 0..255, each with its own width
POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def put_digits(out: np.ndarray, values: np.ndarray) -> None:
    """Non-negative integers as zero-padded digits filling `out` [n, width] (each value has
    at most `width` digits), three at a time from the right, one division per three."""
    for end in range(out.shape[1], 0, -3):
        start = max(0, end - 3)
        if start:
            values, three = np.divmod(values, 1000)
        else:
            three = values
        out[:, start:end] = gather_rows(DIGITS, three)[:, 3 - (end - start) : 3]


def csv_rows(columns: list[tuple[np.ndarray, int | tuple[np.ndarray, np.ndarray]]]) -> bytes:
    """Rows of CSV, vectorised. A column is (numbers, decimals), written in fixed point, or
    (codes, cell table) for text looked up by code (small integers, labels).

    Each cell gets a fixed-width slot in one character matrix with a mask of the characters
    in use (a number's unused leading digits, a '-' it does not need); compacting the matrix
    by the mask gives the text: 7-9x faster than np.savetxt (bench/bench_point_cloud.py).
    """
    n = len(columns[0][0])
    layout = []
    for values, spec in columns:
        if isinstance(spec, tuple):
            layout.append((spec[0].shape[1], 0))
        else:
            whole = len(str(int(np.abs(values).max() + 0.5))) if n else 1  # rounding may add a digit
            layout.append((1 + whole + (1 + spec if spec else 0), whole))
    chars = np.empty((n, sum(width for width, _ in layout) + len(columns)), np.uint8)
    used = np.ones(chars.shape, bool)
    at = 0
    for (values, spec), (width, whole) in zip(columns, layout):
        cell, cell_used = chars[:, at : at + width], used[:, at : at + width]
        if isinstance(spec, tuple):
            cell[:] = gather_rows(spec[0], values)
            cell_used[:] = gather_rows(spec[1], values)
        else:
            scaled = np.rint(np.asarray(values, np.float64) * 10.0**spec).astype(np.int64)
            integral, fraction = np.divmod(np.abs(scaled), 10**spec)
            cell[:, 0], cell_used[:, 0] = ord("-"), scaled < 0
            put_digits(cell[:, 1 : 1 + whole], integral)
            digits = 1 + np.searchsorted(POWERS[: whole - 1], integral, side="right")
            cell_used[:, 1 : 1 + whole] = np.arange(whole) >= whole - digits[:, None]
            if spec:
                cell[:, 1 + whole] = ord(".")
                put_digits(cell[:, 2 + whole :], fraction)
        chars[:, at + width] = ord(",")
        at += width + 1
    chars[:, -1] = ord("\n")
    return np.compress(used.ravel(), chars.ravel()).tobytes()


def label_cells(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A cell table for labels, quoted as RFC 4180 asks when they hold , " or a line break."""
    quoted = [f'"{t.replace(chr(34), chr(34) * 2)}"' if any(c in t for c in ',"\r\n') else t for t in texts]
    return cell_table([q.encode() for q in quoted])


def decimals_for(z: np.ndarray, largest: float) -> int:
    """Decimals that give the nearest point six significant digits: 5 for a nearest depth
    of 1 to 10, more for 1 / disparity clouds of large disparities (a nearest z of 0.004
    gets 8), within what a 64-bit integer holds for the frame's largest coordinate."""
    if not z.size:
        return 5
    wanted = 5 - int(np.floor(np.log10(float(z.min()))))
    return max(0, min(wanted, 17 - len(str(int(largest)))))


# --------------------------------------------------------------------------- point clouds


CSV_CHUNK = 16384  # rows formatted at a time: the character matrix stays in cache


def rays_of(info: RunInfo) -> tuple[np.ndarray, np.ndarray]:
    return pinhole_rays(info.width, info.height, info.focal_length_x, info.focal_length_y)


class PointCloudSink(FolderSink):
    """`point_clouds/point_NNNN.csv` (or `.ply`): each frame back-projected through a pinhole
    camera with the given focal lengths and the principal point at the image centre
    (`camera.py`): x = (u - W/2) z / fx, y = (v - H/2) z / fy, one point per pixel.

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
    """

    result_key = "point_cloud_csv"  # also for .ply: the key users already look up

    def folder(self, info):
        return info.output_dir / "point_clouds"

    def open(self, info):
        if info.point_cloud_format not in ("csv", "ply"):
            raise ValueError(f"point_cloud_format must be 'csv' or 'ply', not {info.point_cloud_format!r}")
        super().open(info)
        self.rays = rays_of(info)
        if info.include_region_labels:
            self.annotations = info.annotations  # indexed now, before the model loads

    def prepare(self, frame_index, rgb, depth):
        """Each frame is a file of its own, written whole here under a temporary name."""
        info = self.info
        keep = np.flatnonzero(usable(depth, info.metric))
        _, (x, y, z) = back_project(depth, keep, self.rays, info.metric)
        points = {
            "x": x,
            "y": y,
            "z": z,
            "intensity": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).ravel()[keep],
            "rgb": rgb.reshape(-1, 3)[keep],
        }
        names = None
        if info.include_region_labels:
            label_map, names = self.annotations.labels(frame_index) or (np.zeros(depth.shape, np.int32), [""])
            points["region"] = label_map.ravel()[keep]
        writer = write_ply if info.point_cloud_format == "ply" else write_csv
        with self.saving(f"point_{frame_index:04d}.{info.point_cloud_format}") as path:
            writer(path, points, names)


def write_csv(path: Path, points: dict[str, np.ndarray], names: list[str] | None) -> None:
    x, y, z, rgb = points["x"], points["y"], points["z"], points["rgb"]
    largest = max((float(np.abs(a).max()) for a in (x, y, z) if a.size), default=0.0)
    decimals = decimals_for(z, largest)
    columns = [(x, decimals), (y, decimals), (z, decimals), (points["intensity"], BYTES)]
    header = "x,y,z,intensity"
    if names is not None:
        columns.append((points["region"], label_cells(names)))
        header += ",region"
    columns += [(rgb[:, 0], BYTES), (rgb[:, 1], BYTES), (rgb[:, 2], BYTES)]
    header += ",red,green,blue\n"
    with open(path, "wb") as out:
        out.write(header.encode())
        out.writelines(
            csv_rows([(values[start : start + CSV_CHUNK], spec) for values, spec in columns])
            for start in range(0, len(z), CSV_CHUNK)
        )


def write_ply(path: Path, points: dict[str, np.ndarray], names: list[str] | None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if names is not None:
        fields.append(("region", "<i4"))
    vertices = np.empty(len(points["z"]), dtype=fields)
    for name in ("x", "y", "z", "intensity"):
        vertices[name] = points[name]
    vertices["red"], vertices["green"], vertices["blue"] = points["rgb"].T
    header = ["ply", "format binary_little_endian 1.0"]
    if names is not None:
        vertices["region"] = points["region"]
        header += [f"comment region {i} {' '.join(name.splitlines())}" for i, name in enumerate(names)]
    types = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header += [f"element vertex {len(vertices)}"] + [f"property {types[t]} {name}" for name, t in fields] + ["end_header"]
    with open(path, "wb") as out:
        out.write(("\n".join(header) + "\n").encode())
        vertices.tofile(out)


class RegionStatsSink(Sink):
    """`depth_regions.csv`: depth statistics per tracked region and frame (columns in
    `regions.py`), a row per label of each annotated frame, streamed as frames arrive.
    Frames without annotations give no rows. Annotations of frames the run did not process
    are ignored and counted in one warning at the end."""

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / REGIONS_CSV
        self.tmp = claim_file(self.final)
        self.annotations = info.annotations
        self.rays = rays_of(info)
        self.annotated = 0  # processed frames that have annotations
        if not self.annotations.frames:
            log.warning(
                "no annotations for %s: neither %s_NNNNNNNNN.json files nor %s exist; depth_regions.csv will have no rows",
                info.video_path, self.annotations.folder / info.stem, self.annotations.store_path,
            )
        self.file = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in close())
        self.file.write(header())

    def prepare(self, frame_index, rgb, depth):
        """The frame's CSV rows ("" without annotations)."""
        found = self.annotations.labels(frame_index)
        if found is None:
            return ""
        time_s = frame_index / (self.info.source_fps or self.info.fps)
        return region_rows(frame_index, time_s, *found, depth, self.rays, self.info.metric)

    def write(self, frame_index, rows):
        self.file.write(rows)
        self.file.flush()
        self.annotated += frame_index in self.annotations.frames
        super().write(frame_index, rows)

    def close(self, completed):
        self.file.close()
        if not self.count:
            self.tmp.unlink(missing_ok=True)
        else:
            publish(self.tmp, self.final)
            missed = len(self.annotations.frames) - self.annotated
            if missed:
                log.warning(
                    "%d annotated frames in %s were not processed by this run (target_fps, max_frames, a cancel or "
                    "the end of the video); their annotations are ignored",
                    missed, self.annotations.folder,
                )
        return {"region_stats": str(self.final)} if self.final.exists() else {}


class RegionPlotSink(Sink):
    """`depth_regions.png`: each label's median over time, drawn at the end from the
    finished `depth_regions.csv` (so it comes after RegionStatsSink). It needs matplotlib;
    without it the run warns once, before the model loads, and writes the table alone."""

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / REGIONS_PNG
        self.tmp = claim_file(self.final)
        self.can_plot = importlib.util.find_spec("matplotlib") is not None
        if not self.can_plot:
            log.warning("%s; writing depth_regions.csv only", PLOT_MISSING)

    def close(self, completed):
        if self.count and self.can_plot:
            plot_regions(self.final.with_name(REGIONS_CSV), self.tmp, title=self.info.stem)
            publish(self.tmp, self.final)
        elif self.count:
            self.final.unlink(missing_ok=True)  # an earlier run's plot would not match the new table
        return {"region_plot": str(self.final)} if self.final.exists() else {}


# --------------------------------------------------------------------------- float arrays


class NpzSink(Sink):
    """`<stem>_depths.npz` with `depths` float32 [N, H, W] and `frame_indices` int64 [N].

    Frames go to a raw temporary file as they arrive; at the end the archive is assembled by
    streaming that file into a zip64 member, so memory does not grow with the video.
    """

    def open(self, info):
        super().open(info)
        self.final = info.output_dir / f"{info.stem}_depths.npz"
        self.tmp = claim_file(self.final)
        self.raw_path = partial(self.final.with_name(self.final.name + ".raw"))
        try:
            self.raw = open(self.raw_path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise cannot_write(self.raw_path, exc) from None
        self.indices: list[int] = []

    def prepare(self, frame_index, rgb, depth):
        if depth.shape != (self.info.height, self.info.width):
            raise ValueError(f"depth of frame {frame_index} is {depth.shape}, not {(self.info.height, self.info.width)}")
        return np.ascontiguousarray(depth, np.float32).tobytes()

    def write(self, frame_index, data):
        self.raw.write(data)
        self.indices.append(frame_index)
        super().write(frame_index, data)

    def close(self, completed):
        self.raw.close()
        try:
            if self.count:
                shape = (self.count, self.info.height, self.info.width)
                with zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                    with archive.open("depths.npy", "w", force_zip64=True) as member:
                        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                        np.lib.format.write_array_header_2_0(member, header)
                        with open(self.raw_path, "rb") as raw:
                            shutil.copyfileobj(raw, member, 1 << 22)
                    with archive.open("frame_indices.npy", "w") as member:
                        np.lib.format.write_array(member, np.asarray(self.indices, np.int64))
                publish(self.tmp, self.final)
        finally:
            self.raw_path.unlink(missing_ok=True)
        return {"npz": str(self.final)} if self.final.exists() else {}


class ExrSink(FolderSink):
    """`<stem>_depths_exr/depth_NNNNN.exr`: one single-channel float32 EXR (channel `Z`,
    zip-compressed) per frame, the float depth exactly as the model gave it."""

    result_key = "exr"

    def folder(self, info):
        return info.output_dir / f"{info.stem}_depths_exr"

    def open(self, info):
        try:
            import OpenEXR
        except ImportError:
            raise OutputError("EXR output needs the OpenEXR package: pip install OpenEXR (or turn save_exr off)") from None
        if not hasattr(OpenEXR, "File"):
            raise OutputError("EXR output needs OpenEXR 3.3 or newer: pip install --upgrade OpenEXR (or turn save_exr off)")
        self.exr = OpenEXR
        super().open(info)

    def prepare(self, frame_index, rgb, depth):
        header = {"compression": self.exr.ZIP_COMPRESSION, "type": self.exr.scanlineimage}
        channels = {"Z": np.ascontiguousarray(depth, np.float32)}
        with self.saving(f"depth_{frame_index:05d}.exr") as path, self.exr.File(header, channels) as image:
            image.write(str(path))


def build_sinks(
    info: RunInfo,
    save_depth_video: bool = False,
    save_depth_frames: bool = False,
    save_point_clouds: bool = False,
    save_npz: bool = False,
    save_exr: bool = False,
    save_region_stats: bool = False,
) -> list[Sink]:
    """The sinks a run asked for: depth.ndjson always, and first, since the rendered outputs
    read it back when they close."""
    chosen = [
        (True, NdjsonSink),
        (save_npz, NpzSink),
        (save_exr, ExrSink),
        (save_point_clouds, PointCloudSink),
        (save_region_stats, RegionStatsSink),
        (save_region_stats, RegionPlotSink),
        (save_depth_video, DepthVideoSink),
        (save_depth_frames, DepthFramesSink),
    ]
    return [cls() for wanted, cls in chosen if wanted]
