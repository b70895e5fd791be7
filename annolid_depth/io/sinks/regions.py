"""`depth_regions.csv` with `depth_floor.json`, and the plots drawn from them,
`depth_regions.png` and `depth_paths.png`: depth, height above the floor and floor path per
tracked region (rows and plots in `io/regions.py`, the floor in `io/floor.py`)."""
from __future__ import annotations

import importlib.util
import itertools
import logging
from dataclasses import dataclass

import numpy as np

from ...errors import OutputError
from ..files import partial
from ..floor import FLOOR_JSON, Floor, FloorSample, floor_document, floor_units, read_floor_document
from ..npz import crc32
from ..records import NDJSON, Quantised, decode_levels, iter_records, quantize
from ..regions import COLUMNS, PLOT_MISSING, header, plot_paths, plot_regions, region_cells, rows_text, with_heights
from ..run_folder import write_json_atomically
from .base import Sink, check_prefix
from .point_clouds import rays_of

log = logging.getLogger(__name__)
REGIONS_CSV = "depth_regions.csv"
REGIONS_PNG = "depth_regions.png"
PATHS_PNG = "depth_paths.png"


@dataclass
class Pending:
    """A frame prepared before the floor was known: its rows without heights (from the
    depth itself), its levels as depth.ndjson holds them, and the depth, should the floor
    be known by the time it is written."""

    found: tuple[np.ndarray, list[str]] | None
    levels: Quantised
    rows: list[list[str]]
    depth: np.ndarray


@dataclass
class Held:
    """A sampled frame's rows, waiting for the floor to give them heights."""

    frame_index: int
    found: tuple[np.ndarray, list[str]]
    levels: Quantised
    rows: list[list[str]]


class RegionStatsSink(Sink):
    """`depth_regions.csv`: depth statistics, height above the floor and floor position per
    tracked region and frame (columns in `regions.py`), a row per label of each annotated
    frame, streamed as frames arrive and cut back to the resume point on resume. Frames
    without annotations give no rows. Annotations of frames the run did not process are
    ignored and counted in one warning at the end.

    The floor is fitted to the first SAMPLE_FRAMES processed frames (their points outside
    every region; a frame without annotations whole); their rows wait for it, and only
    theirs, then every row is written with heights. The sample and the waiting rows' heights
    are measured on the depth as depth.ndjson holds it, so a run resumed before the floor
    was fitted reads them back from there and writes the table an uninterrupted run writes.
    The floor's document goes to `depth_floor.json` (FloorSink's output) when the run completes."""

    result_key = "region_stats"

    def name(self, info):
        return REGIONS_CSV

    def open(self, info):
        super().open(info)
        self.annotations = info.annotations
        self.rays = rays_of(info)
        self.metric = info.settings.metric
        if not self.annotations.frames:
            log.warning(
                "no annotations for %s: neither %s_NNNNNNNNN.json files nor %s exist; depth_regions.csv will have no rows "
                "(the floor is fitted to whole frames)",
                info.video_path, self.annotations.folder / info.stem, self.annotations.store_path,
            )
        self.sample: FloorSample | None = FloorSample(self.rays, self.metric)
        self.held: list[Held] = []
        self.document: dict | None = None  # depth_floor.json's content, once the floor is settled
        self.floor: Floor | None = None
        self.file = open(self.tmp, "r+b")  # noqa: SIM115 (closed in close())
        self.crc, self.annotated = 0, 0  # of every byte written, and the annotated frames among them
        if info.resume is None:
            self.file.truncate(0)
            self._add(header().encode())
            return
        mark = self.resume_mark("bytes", "crc32", "annotated")
        try:
            check_prefix(self.tmp, self.file, mark)
            self.resume_floor(mark)
        except ValueError:
            self.file.close()
            raise
        self.crc, self.annotated = mark["crc32"], mark["annotated"]
        self.file.truncate(mark["bytes"])
        self.file.seek(mark["bytes"])

    def resume_floor(self, mark: dict) -> None:
        """The floor from the resume point's mark, or the sample and the waiting rows again
        from depth.ndjson's records before the resume point; ValueError if they disagree."""
        if "floor" in mark:
            try:
                self.settle_as(mark["floor"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ValueError(f"the resume point's floor for {self.tmp} is {mark['floor']!r}, not one this version writes") from None
            return
        held = mark.get("held")
        if not isinstance(held, list) or not all(isinstance(entry, dict) for entry in held):
            raise ValueError(f"the resume point's mark for {self.tmp} has neither a floor nor the rows waiting for one")
        if self.info.resume.frames >= self.sample.max_frames:
            raise ValueError(f"the resume point's mark for {self.tmp} has no floor after {self.info.resume.frames} frames")
        waiting = {entry.get("frame"): entry.get("rows") for entry in held}
        ndjson = partial(self.info.output_dir / NDJSON)
        try:
            for record in itertools.islice(iter_records(ndjson), self.info.resume.frames):
                frame_index = record["frame_index"]
                found = self.annotations.labels(frame_index)
                rows = waiting.pop(frame_index, None) if found is not None else None
                if found is not None and not are_rows(rows, len(found[1]) - 1):
                    raise ValueError(f"the resume point's mark for {self.tmp} lacks the rows of frame {frame_index}")
                self.take_sample(frame_index, found, decode_levels(record), rows)
        except (OSError, KeyError, TypeError) as exc:
            raise ValueError(f"{ndjson} cannot give the floor's sample back ({exc})") from None
        if waiting or len(self.sample.frames) != self.info.resume.frames:
            raise ValueError(f"the resume point's mark for {self.tmp} does not match the frames of {NDJSON}")

    def _add(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()
        self.crc = crc32(data, self.crc)

    def add_rows(self, frame_index: int, rows: str) -> None:
        self._add(rows.encode())
        self.annotated += frame_index in self.annotations.frames

    def mark(self):
        mark = {"bytes": self.file.tell(), "crc32": self.crc, "annotated": self.annotated}
        if self.document is not None:
            return {**mark, "floor": self.document}
        return {**mark, "held": [{"frame": item.frame_index, "rows": item.rows} for item in self.held]}

    def cells(self, frame_index: int, found, depth: np.ndarray, floor: Floor | None) -> list[list[str]]:
        time_s = frame_index / (self.info.source_fps or self.info.fps)
        return region_cells(frame_index, time_s, *found, depth, self.rays, self.metric, floor)

    def prepare(self, frame_index, rgb, depth):
        """The frame's CSV rows ("" without annotations); a Pending frame while the floor is unknown."""
        found = self.annotations.labels(frame_index)
        if self.document is not None:
            return "" if found is None else rows_text(self.cells(frame_index, found, depth, self.floor))
        return Pending(found, quantize(depth), [] if found is None else self.cells(frame_index, found, depth, None), depth)

    def write(self, frame_index, payload):
        super().write(frame_index, payload)
        if isinstance(payload, str):
            self.add_rows(frame_index, payload)
        elif self.document is not None:  # prepared while the floor was being fitted, written after
            self.add_rows(frame_index, "" if payload.found is None else
                          rows_text(self.cells(frame_index, payload.found, payload.depth, self.floor)))
        else:
            self.take_sample(frame_index, payload.found, payload.levels, payload.rows)

    def take_sample(self, frame_index: int, found, levels: Quantised, rows) -> None:
        """A frame into the floor's sample, its rows (if any) waiting; the floor fitted once the sample is full."""
        self.sample.add(frame_index, levels.depth(), None if found is None else found[0])
        if found is not None:
            self.held.append(Held(frame_index, found, levels, rows))
        if self.sample.full:
            self.settle()

    def settle(self) -> None:
        """Fit the floor to the sample and write the rows that waited for it."""
        floor, reason = self.sample.fit()
        if floor is None:
            frames = self.sample.frames
            log.warning("no floor under the tracked regions of %s (frames %s): %s; the height and floor columns of %s "
                        "are empty", self.info.video_path, describe_frames(frames), reason, REGIONS_CSV)
        self.settle_as(floor_document(floor, reason, floor_units(self.metric), self.sample.frames))
        for item in self.held:
            heights = self.cells(item.frame_index, item.found, item.levels.depth(), self.floor)
            self.add_rows(item.frame_index, rows_text(with_heights(item.rows, heights)))
        self.held = []

    def settle_as(self, document: dict) -> None:
        floor, _ = read_floor_document(document)
        if document["units"] != floor_units(self.metric):
            raise ValueError(f"a floor in {document['units']}, not {floor_units(self.metric)}")
        self.floor, self.document, self.sample = floor, document, None

    def close(self, completed):
        try:
            if completed and self.document is None:  # a run shorter than the sample
                self.settle()
        finally:
            self.file.close()
        if completed:
            write_json_atomically(partial(self.info.output_dir / FLOOR_JSON), self.document)
        missed = len(self.annotations.frames) - self.annotated
        if completed and missed:
            log.warning(
                "%d annotated frames in %s were not processed by this run (target_fps, max_frames or the end of "
                "the video); their annotations are ignored",
                missed, self.annotations.folder,
            )


def are_rows(rows, count: int) -> bool:
    """Whether a mark's `rows` are `count` rows of the table's cells."""
    return (isinstance(rows, list) and len(rows) == count
            and all(isinstance(row, list) and len(row) == len(COLUMNS) and all(isinstance(c, str) for c in row) for row in rows))


def describe_frames(frames: list[int]) -> str:
    return f"{frames[0]}-{frames[-1]}" if len(frames) > 1 else ", ".join(map(str, frames)) or "none"


class FloorSink(Sink):
    """`depth_floor.json`: the floor the heights of `depth_regions.csv` are measured on, or
    why there is none (fields in `floor.py`). RegionStatsSink, before it, fits the floor and
    writes the partial file when the run completes; this sink gives it its place among the
    run's outputs, published with them."""

    result_key = "region_floor"

    def name(self, info):
        return FLOOR_JSON


class RegionPlotSink(Sink):
    """`depth_regions.png`: each label's median depth and median height over time, drawn
    when the run completes from its `depth_regions.csv` (so it comes after RegionStatsSink).
    Needs matplotlib."""

    result_key = "region_plot"
    draw = staticmethod(plot_regions)

    def name(self, info):
        return REGIONS_PNG

    def open(self, info):
        if importlib.util.find_spec("matplotlib") is None:
            raise OutputError(f"{PLOT_MISSING} (or turn save_region_stats off)")
        super().open(info)

    def close(self, completed):
        if completed and self.count:
            self.draw(partial(self.info.output_dir / REGIONS_CSV), self.tmp, title=self.info.stem)


class PathPlotSink(RegionPlotSink):
    """`depth_paths.png`: each label's path on the floor, seen from above."""

    result_key = "region_paths"
    draw = staticmethod(plot_paths)

    def name(self, info):
        return PATHS_PNG
