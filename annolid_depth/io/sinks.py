"""Outputs of a run: one class per output, each `open` / `prepare` + `write` / `close`.

`open` checks the target before any inference (a file where a folder goes, a folder that
takes no files, a missing optional package) and raises `OutputError` naming the path.
Everything is written under `<final name>.partial`; the run folder (`run_folder.py`)
renames them all into place once the run completes, so a failed or killed run never leaves
a half-written file under a final name. A resumed run reopens the partial outputs and cuts
them back to the frames its resume point covers. The depth video and the depth frames share
one colour range, fixed by the first frames (`RenderedSink`), and are drawn and encoded as
frames arrive. `depth.ndjson` comes first in the sink list: the others may read it back
when a run resumes.
"""
from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import OutputError
from ..settings import DepthSettings
from .annotations import VideoAnnotations
from .camera import back_project, one_per_voxel, pinhole_rays, pixel_grid, usable
from .npz import DATA_OFFSET, crc32, data_crc, finish_npz
from .pipeline import usable_cores
from .records import (
    FRAME_INDEX,
    HEAD,
    LEVELS,
    NDJSON,
    Quantised,
    decode_levels,
    depth_kind,
    encode_png,
    encode_record,
    iter_records,
    once_per_frame,
    quantize,
    record_line,
)
from .regions import PLOT_MISSING, header, plot_regions, region_rows

log = logging.getLogger(__name__)
REGIONS_CSV = "depth_regions.csv"
REGIONS_PNG = "depth_regions.png"
HEAD_SCAN = 1 << 24  # bytes read back to find the last record of a resumed depth.ndjson


@dataclass
class ResumePoint:
    """Where a resumed run goes on: after `frames` frames, the last of index `last_index`.
    `marks` holds, per sink, what it reported (`Sink.mark`) to cut its output back there."""

    frames: int
    last_index: int
    marks: dict = field(default_factory=dict)


@dataclass
class RunInfo:
    """What every sink needs to know about the run before the first frame."""

    video_path: Path
    output_dir: Path
    stem: str
    width: int  # of the processed frames
    height: int
    fps: float  # of the processed frames
    settings: DepthSettings = field(default_factory=DepthSettings)
    resume: ResumePoint | None = None
    source_fps: float | None = None  # of the video itself, for timestamps (None: fps)

    def __getattr__(self, name):  # the run's options read as its own: info.metric, info.grayscale, ...
        if name in DepthSettings.__dataclass_fields__:
            return getattr(self.settings, name)
        raise AttributeError(name)

    @property
    def kind(self) -> str:
        return depth_kind(self.metric)

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


def claim_file(final: Path, keep: bool = False) -> Path:
    """Check that `final` can become this output file and that its folder takes files;
    returns the temporary name, cleared of an earlier run's leftovers unless `keep`."""
    if final.is_dir():
        raise OutputError(f"{final} is a folder, but this output is a file; move it or choose another output_dir")
    tmp = partial(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if not keep:
            remove(tmp)
        with open(tmp, "ab"):
            pass
    except OSError as exc:
        raise cannot_write(tmp, exc) from None
    return tmp


def claim_folder(final: Path, keep: bool = False) -> Path:
    """Check that `final` can become this output folder; returns the temporary folder,
    emptied unless `keep`."""
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final} is a file, but this output is a folder; move the file or choose another output_dir")
    tmp = partial(final)
    try:
        if not keep:
            remove(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(tmp, exc) from None
    return tmp


FRAME_NUMBER = re.compile(r"_(\d+)\.[^.]+$")  # depth_00012.png, point_0012.csv


# --------------------------------------------------------------------------- sinks


class Sink:
    """One output. `prepare` does a frame's CPU work (quantise, colourise, encode, format) and
    may run in a pool of workers, in any order; `write` then takes its result on one thread, in
    frame order, and does only ordered appends. A sink with nothing heavy to do keeps the
    default `prepare`, which hands the frame itself to `write`."""

    result_key = ""  # the entry of the run's result that names this output

    def name(self, info: RunInfo) -> str:
        """The output's name in the output folder."""
        raise NotImplementedError

    def open(self, info: RunInfo) -> None:
        self.info = info
        self.final = info.output_dir / self.name(info)
        self.count = info.resume.frames if info.resume else 0  # frames in the output
        self.tmp = self.claim()

    def claim(self) -> Path:
        return claim_file(self.final, keep=self.info.resume is not None)

    def mark(self):
        """Flush what is written so far and return what this sink needs to cut its output
        back to here on resume (None: nothing)."""
        return None

    def prepare(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray):
        return rgb, depth

    def write(self, frame_index: int, payload) -> None:
        self.count += 1

    def put(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        """`prepare` then `write`, for a caller that writes one frame at a time."""
        self.write(frame_index, self.prepare(frame_index, rgb, depth))

    def close(self, completed: bool) -> None:
        """Finish the partial output when `completed`; else only release it (it stays
        resumable: every part written so far is valid)."""


class NdjsonSink(Sink):
    """`depth.ndjson`: a record per frame, flushed as it is written, so a killed run leaves
    `depth.ndjson.partial` with every line but at most the last one complete."""

    result_key = "depth_ndjson"

    def name(self, info):
        return NDJSON

    def open(self, info):
        super().open(info)
        self.file = open(self.tmp, "r+b")  # noqa: SIM115 (closed in close())
        if info.resume is not None:  # cut back to the resume point: a killed run may have written more
            size = info.resume.marks.get("depth_ndjson", 0)
            self.file.seek(size)
            self.file.truncate()
            if size:
                self.file.seek(size - min(size, HEAD_SCAN))
                tail = self.file.read().rsplit(b"\n", 2)[-2]
                found = FRAME_INDEX.search(tail[:HEAD])
                if found is None or int(found.group(1)) != info.resume.last_index:
                    raise ValueError(f"{self.tmp} does not end with frame {info.resume.last_index} at its resume point")
        else:
            self.file.truncate(0)

    def mark(self):
        return self.file.tell()

    def prepare(self, frame_index, rgb, depth):
        record = encode_record(depth, frame_index, self.info.video_path.name, self.info.stem, self.info.kind)
        return record_line(record)

    def write(self, frame_index, line):
        self.file.write(line.encode())
        self.file.flush()
        super().write(frame_index, line)

    def close(self, completed):
        self.file.close()


class FolderSink(Sink):
    """A folder of one file per frame, built under a temporary name and swapped in whole at
    the end, so no file of an earlier run survives beside the new ones."""

    def claim(self) -> Path:
        tmp = claim_folder(self.final, keep=self.info.resume is not None)
        if self.info.resume is not None:  # drop files of frames after the resume point
            for path in tmp.iterdir():
                number = FRAME_NUMBER.search(path.name)
                if path.name.endswith(".partial") or number is None or int(number.group(1)) > self.info.resume.last_index:
                    remove(path)
        return tmp

    @contextmanager
    def saving(self, name: str) -> Iterator[Path]:
        """The temporary path to write one file of the folder to; renamed once written, so
        even the folder a killed run leaves holds only complete files."""
        tmp = partial(self.tmp / name)
        yield tmp
        os.replace(tmp, self.tmp / name)



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


RANGE_FRAMES = 32  # frames whose depth fixes the colour range of the depth video and frames


class RenderedSink(Sink):
    """Base of the depth video and the depth frames: every frame drawn with one colour range,
    as it arrives, from its 16-bit levels, so a drawn frame shows what its record holds and
    a resumed run draws exactly what an uninterrupted one would. The range runs from the
    smallest to the largest depth of the first RANGE_FRAMES frames (the windowed engine's
    first window, about a second of video); those frames wait until it is known, and every
    later frame is drawn at once, in the pool, its values beyond the range drawn at the
    range's ends. (The range of the whole video is known only at the end: drawing then
    meant reading every record back after the run, about as long again as the run itself
    at 1280x720.)"""

    redraw_on_resume = False  # whether frames before a resume point are drawn again

    def open(self, info):
        super().open(info)
        self.range: tuple[float, float] | None = None
        self.waiting: list[tuple[int, Quantised]] = []
        self.start()
        if info.resume is not None:
            self.catch_up(info.resume.frames)

    def start(self) -> None:
        """Set up what `emit` needs, before any frame."""

    def catch_up(self, frames: int) -> None:
        """After a resume point: the range, and the frames still waiting for it, from the first
        `frames` records; for an output that cannot be continued (a video), every frame."""
        records = itertools.islice(iter_records(partial(self.info.output_dir / NDJSON)), frames)
        if frames >= RANGE_FRAMES and not self.redraw_on_resume:  # drawn before: only the range counts
            scales = [record["otherData"]["depth_map"]["scale"] for record in itertools.islice(records, RANGE_FRAMES)]
            self.range = min(scale["min"] for scale in scales), max(scale["max"] for scale in scales)
            return
        for record in records:
            self.accept(record["frame_index"], decode_levels(record))

    def render(self, frame_index: int, bgr: np.ndarray):
        """The CPU work for one drawn frame; its result goes to `emit` in frame order."""
        raise NotImplementedError

    def emit(self, frame_index: int, rendered) -> None:
        pass

    def draw(self, frame_index: int, quantised: Quantised, colour_range: tuple[float, float]):
        return self.render(frame_index, colorize_levels(quantised, *colour_range, self.info.metric, self.info.grayscale))

    def prepare(self, frame_index, rgb, depth):
        quantised = quantize(depth)
        colour_range = self.range  # read once: the writer thread sets it
        return quantised if colour_range is None else self.draw(frame_index, quantised, colour_range)

    def write(self, frame_index, payload):
        super().write(frame_index, payload)
        self.accept(frame_index, payload)

    def accept(self, frame_index: int, payload) -> None:
        if self.range is None:
            self.waiting.append((frame_index, payload))
            if len(self.waiting) == RANGE_FRAMES:
                self.draw_waiting()
        elif isinstance(payload, Quantised):  # prepared before the range was known
            self.emit(frame_index, self.draw(frame_index, payload, self.range))
        else:
            self.emit(frame_index, payload)

    def draw_waiting(self) -> None:
        """The frames that waited for the range, drawn on every core (on one thread they held
        up the writing by ~160 ms at 1280x720) and emitted in order."""
        self.range = min(q.lo for _, q in self.waiting), max(q.hi for _, q in self.waiting)
        with ThreadPoolExecutor(usable_cores(), thread_name_prefix="draw") as pool:
            drawn = pool.map(lambda item: self.draw(*item, self.range), self.waiting)
            for (frame_index, _), rendered in zip(self.waiting, drawn):
                self.emit(frame_index, rendered)
        self.waiting = []

    def close(self, completed):
        if completed and self.waiting:  # a shorter run: its range is all of its frames'
            self.draw_waiting()
        super().close(completed)


# Visually lossless for both: x264 at CRF 18 with the "ultrafast" preset (the video is
# encoded during the run, beside the network: on 1280x720 depth videos ~4 ms of CPU per frame
# against ~17 ms for "veryfast", at a PSNR of 45 dB against 44, for a file twice as large,
# ~17 KB a frame); MPEG-4 with a fixed quantiser of 3 (given as a lambda, 3 * FF_QP2LAMBDA),
# since its default bit rate smears the colour bands.
VIDEO_QUALITY = {
    "libx264": {"crf": "18", "preset": "ultrafast"},
    "mpeg4": {"flags": "+qscale", "global_quality": str(3 * 118)},
}


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


class DepthVideoSink(RenderedSink):
    """`<stem>_vis.mp4` at the processed fps (a fractional rate kept exact), H.264 where
    PyAV has libx264, else MPEG-4 Part 2, encoded as frames arrive (a resumed run encodes
    the frames before its resume point again, from depth.ndjson), with the colour bar of the
    run's range at the right edge (`with_colour_bar`). yuv420p needs even sizes,
    so an odd width or height gains one replicated last column or row."""

    result_key = "depth_visualization"
    redraw_on_resume = True

    def __init__(self, codecs: tuple[str, ...] = ("libx264", "mpeg4")):
        self.codecs = codecs

    def name(self, info):
        return f"{info.stem}_vis.mp4"

    def open(self, info):
        available = [codec for codec in self.codecs if codec in av.codecs_available]
        if not available:
            raise OutputError(f"PyAV has none of the video encoders {', '.join(self.codecs)}; turn save_depth_video off")
        self.codec = available[0]
        super().open(info)

    def start(self):
        info = self.info
        self.container = av.open(str(self.tmp), "w", format="mp4")  # a resumed run starts the file again
        self.stream = self.container.add_stream(self.codec, rate=Fraction(info.fps).limit_denominator(1001))
        self.stream.width, self.stream.height = info.width + info.width % 2, info.height + info.height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = VIDEO_QUALITY.get(self.codec, {})
        self.pad = ((0, info.height % 2), (0, info.width % 2), (0, 0))
        self.encoded = 0

    def render(self, frame_index, bgr):
        bgr = with_colour_bar(bgr, *self.range, self.info.metric, self.info.grayscale)
        if any(after for _, after in self.pad):
            bgr = np.pad(bgr, self.pad, mode="edge")
        # the colour conversion here, in the pool: OpenCV's BT.601 limited range, as FFmpeg's
        # default (within 2 levels), in 0.55 ms at 1280x720 against 1.5 for FFmpeg's scaler
        yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")

    def emit(self, frame_index, rendered):
        self.container.mux(self.stream.encode(rendered))
        self.encoded += 1

    def close(self, completed):
        super().close(completed)
        if self.encoded:
            self.container.mux(self.stream.encode())
        self.container.close()


class DepthFramesSink(RenderedSink, FolderSink):
    """`depth_frames/depth_NNNNN.png`, numbered by the frame's index in the video."""

    result_key = "depth_frames"

    def name(self, info):
        return "depth_frames"

    def render(self, frame_index, bgr):
        """Each frame is a file of its own, written whole here under a temporary name."""
        with self.saving(f"depth_{frame_index:05d}.png") as path:
            path.write_bytes(encode_png(bgr))


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

    def name(self, info):
        return "point_clouds"

    def open(self, info):
        if info.point_cloud_format not in ("csv", "ply"):
            raise ValueError(f"point_cloud_format must be 'csv' or 'ply', not {info.point_cloud_format!r}")
        super().open(info)
        self.rays = rays_of(info)
        self.grid = pixel_grid(info.width, info.height, info.point_cloud_stride)
        if info.include_region_labels:
            self.annotations = info.annotations  # indexed now, before the model loads

    def prepare(self, frame_index, rgb, depth):
        """Each frame is a file of its own, written whole here under a temporary name."""
        info = self.info
        keep = self.grid[usable(depth, info.metric)[self.grid]]
        _, (x, y, z) = back_project(depth, keep, self.rays, info.metric)
        if info.point_cloud_voxel > 0:
            first = one_per_voxel(x, y, z, info.point_cloud_voxel)
            keep, x, y, z = keep[first], x[first], y[first], z[first]
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
    `regions.py`), a row per label of each annotated frame, streamed as frames arrive and cut
    back to the resume point on resume. Frames without annotations give no rows. Annotations
    of frames the run did not process are ignored and counted in one warning at the end."""

    result_key = "region_stats"

    def name(self, info):
        return REGIONS_CSV

    def open(self, info):
        super().open(info)
        self.annotations = info.annotations
        self.rays = rays_of(info)
        if not self.annotations.frames:
            log.warning(
                "no annotations for %s: neither %s_NNNNNNNNN.json files nor %s exist; depth_regions.csv will have no rows",
                info.video_path, self.annotations.folder / info.stem, self.annotations.store_path,
            )
        self.file = open(self.tmp, "r+b")  # noqa: SIM115 (closed in close())
        mark = info.resume.marks.get(self.result_key) if info.resume is not None else None
        size, self.annotated = mark or (0, 0)  # bytes and annotated frames at the resume point
        self.file.truncate(size)
        self.file.seek(size)
        if not size:
            self.file.write(header().encode())

    def mark(self):
        return [self.file.tell(), self.annotated]

    def prepare(self, frame_index, rgb, depth):
        """The frame's CSV rows ("" without annotations)."""
        found = self.annotations.labels(frame_index)
        if found is None:
            return ""
        time_s = frame_index / (self.info.source_fps or self.info.fps)
        return region_rows(frame_index, time_s, *found, depth, self.rays, self.info.metric)

    def write(self, frame_index, rows):
        self.file.write(rows.encode())
        self.file.flush()
        self.annotated += frame_index in self.annotations.frames
        super().write(frame_index, rows)

    def close(self, completed):
        self.file.close()
        missed = len(self.annotations.frames) - self.annotated
        if completed and missed:
            log.warning(
                "%d annotated frames in %s were not processed by this run (target_fps, max_frames or the end of "
                "the video); their annotations are ignored",
                missed, self.annotations.folder,
            )


class RegionPlotSink(Sink):
    """`depth_regions.png`: each label's median over time, drawn when the run completes from
    its `depth_regions.csv` (so it comes after RegionStatsSink). Needs matplotlib."""

    result_key = "region_plot"

    def name(self, info):
        return REGIONS_PNG

    def open(self, info):
        if importlib.util.find_spec("matplotlib") is None:
            raise OutputError(f"{PLOT_MISSING} (or turn save_region_stats off)")
        super().open(info)

    def close(self, completed):
        if completed and self.count:
            plot_regions(partial(self.info.output_dir / REGIONS_CSV), self.tmp, title=self.info.stem)


# --------------------------------------------------------------------------- float arrays


class NpzSink(Sink):
    """`<stem>_depths.npz` with `depths` float32 [N, H, W] and `frame_indices` int64 [N].

    Each frame's depth is written once, at its place in the unfinished archive (see
    `io/npz.py`), its CRC-32 carried on, and its index to a small side file; a resumed run
    cuts both back to a whole number of frames and reads its frames once for their CRC. At
    the end the headers, the indices and the zip's directory are added in place, so memory
    and time at the end do not grow with the video.
    """

    result_key = "npz"

    def name(self, info):
        return f"{info.stem}_depths.npz"

    def open(self, info):
        super().open(info)
        self.frame_bytes = info.height * info.width * 4
        self.archive = self._reopen(self.tmp, self.count * self.frame_bytes, head=DATA_OFFSET)  # headers: at the end
        self.crc = data_crc(self.archive, self.count * self.frame_bytes) if self.count else 0
        self.indices = self._reopen(partial(self.final.with_name(self.final.name + ".idx")), self.count * 8)

    def _reopen(self, path: Path, frames_size: int, head: int = 0):
        """The file, holding `head` bytes kept for later and then `frames_size` bytes of
        frames: created so, or (resuming) cut back to that."""
        try:
            stream = open(path, "r+b" if self.info.resume else "w+b")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise cannot_write(path, exc) from None
        if not self.info.resume:
            stream.write(bytes(head))
        size = head + frames_size
        if stream.seek(0, os.SEEK_END) < size:
            stream.close()
            raise ValueError(f"{path} holds fewer frames than the resume point")
        stream.truncate(size)
        stream.seek(size)
        return stream

    def prepare(self, frame_index, rgb, depth):
        if depth.shape != (self.info.height, self.info.width):
            raise ValueError(f"depth of frame {frame_index} is {depth.shape}, not {(self.info.height, self.info.width)}")
        return np.ascontiguousarray(depth, np.float32)

    def mark(self):
        self.archive.flush()  # on disk for the resume point: a killed process loses its buffers
        self.indices.flush()

    def write(self, frame_index, data):
        self.archive.write(data)
        self.crc = crc32(data, self.crc)
        self.indices.write(np.int64(frame_index).tobytes())
        super().write(frame_index, data)

    def close(self, completed):
        try:
            self.indices.flush()
            if completed and self.count:
                self.indices.seek(0)
                finish_npz(self.archive, ("depths.npy", "<f4", (self.count, self.info.height, self.info.width)),
                           self.count * self.frame_bytes, self.crc,
                           ("frame_indices.npy", "<i8", (self.count,), self.indices.read()))
            else:
                self.archive.flush()
        finally:  # the index file goes once the run is published: a run killed before resumes from it
            self.archive.close()
            self.indices.close()


class ExrSink(FolderSink):
    """`<stem>_depths_exr/depth_NNNNN.exr`: one single-channel float32 EXR (channel `Z`,
    zip-compressed) per frame, the float depth exactly as the model gave it."""

    result_key = "exr"

    def name(self, info):
        return f"{info.stem}_depths_exr"

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


# Every output, with the setting that asks for it (None: always). depth.ndjson comes first,
# since the rendered outputs read it back when they close; the region plot reads the table.
SINKS = [
    (None, NdjsonSink),
    ("save_npz", NpzSink),
    ("save_exr", ExrSink),
    ("save_point_clouds", PointCloudSink),
    ("save_region_stats", RegionStatsSink),
    ("save_region_stats", RegionPlotSink),
    ("save_depth_video", DepthVideoSink),
    ("save_depth_frames", DepthFramesSink),
]


def build_sinks(info: RunInfo) -> list[Sink]:
    """The sinks the run's settings ask for."""
    return [cls() for setting, cls in SINKS if setting is None or getattr(info.settings, setting)]


def output_names(info: RunInfo) -> list[str]:
    """The names of every output a run of this video can write into its folder."""
    return [cls().name(info) for _, cls in SINKS]
