"""`depth_regions.csv` and `depth_regions.png`: depth per tracked region (rows and plot in
`io/regions.py`)."""
from __future__ import annotations

import importlib.util
import logging

from ...errors import OutputError
from ..files import partial
from ..npz import crc32
from ..regions import PLOT_MISSING, header, plot_regions, region_rows
from .base import Sink, check_prefix
from .point_clouds import rays_of

log = logging.getLogger(__name__)
REGIONS_CSV = "depth_regions.csv"
REGIONS_PNG = "depth_regions.png"


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
        self.crc, self.annotated = 0, 0  # of every byte written, and the annotated frames among them
        if info.resume is None:
            self.file.truncate(0)
            self._add(header().encode())
            return
        mark = self.resume_mark("bytes", "crc32", "annotated")
        try:
            check_prefix(self.tmp, self.file, mark)
        except ValueError:
            self.file.close()
            raise
        self.crc, self.annotated = mark["crc32"], mark["annotated"]
        self.file.truncate(mark["bytes"])
        self.file.seek(mark["bytes"])

    def _add(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()
        self.crc = crc32(data, self.crc)

    def mark(self):
        return {"bytes": self.file.tell(), "crc32": self.crc, "annotated": self.annotated}

    def prepare(self, frame_index, rgb, depth):
        """The frame's CSV rows ("" without annotations)."""
        found = self.annotations.labels(frame_index)
        if found is None:
            return ""
        time_s = frame_index / (self.info.source_fps or self.info.fps)
        return region_rows(frame_index, time_s, *found, depth, self.rays, self.info.settings.metric)

    def write(self, frame_index, rows):
        self._add(rows.encode())
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
