"""The outputs of a run, one class per output, and their lifecycle: the sinks a run's settings
ask for, opened together (`open_sinks`) and closed together (`close_all`).

Add an output: a `Sink` subclass in a module here, and a row in `SINKS` with the setting that
asks for it. `depth.ndjson` comes first: the others may read it back when a run resumes, and
the floor and the plots come after the table they are written with or drawn from.
"""
from __future__ import annotations

import logging

from .base import ResumePoint, RunInfo, Sink
from .depth import ExrSink, NdjsonSink, NpzSink
from .point_clouds import PointCloudSink
from .regions import PATHS_PNG, REGIONS_CSV, REGIONS_PNG, FloorSink, PathPlotSink, RegionPlotSink, RegionStatsSink
from .rendered import RANGE_FRAMES, DepthFramesSink, DepthVideoSink, RenderedSink

__all__ = [
    "PATHS_PNG", "REGIONS_CSV", "REGIONS_PNG", "RANGE_FRAMES", "SINKS", "DepthFramesSink", "DepthVideoSink", "ExrSink",
    "FloorSink", "NdjsonSink", "NpzSink", "PathPlotSink", "PointCloudSink", "RegionPlotSink", "RegionStatsSink", "RenderedSink", "ResumePoint",
    "RunInfo", "Sink", "build_sinks", "close_all", "open_sinks", "output_names",
]
log = logging.getLogger(__name__)

# Every output, with the setting that asks for it (None: always).
SINKS = [
    (None, NdjsonSink),
    ("save_npz", NpzSink),
    ("save_exr", ExrSink),
    ("save_point_clouds", PointCloudSink),
    ("save_region_stats", RegionStatsSink),
    ("save_region_stats", FloorSink),
    ("save_region_stats", RegionPlotSink),
    ("save_region_stats", PathPlotSink),
    ("save_depth_video", DepthVideoSink),
    ("save_depth_frames", DepthFramesSink),
]


def build_sinks(info: RunInfo) -> list[Sink]:
    """The sinks the run's settings ask for."""
    return [cls() for setting, cls in SINKS if setting is None or getattr(info.settings, setting)]


def output_names(info: RunInfo) -> list[str]:
    """The names of every output a run of this video can write into its folder."""
    return [cls().name(info) for _, cls in SINKS]


def open_sinks(sinks: list[Sink], info: RunInfo) -> list[Sink]:
    """`sinks`, opened: this checks optional packages and folders before any inference, and cuts
    a resumed run's partial outputs back to its resume point. If one fails, those already open
    are closed (their partial files stay resumable) and the error is raised."""
    opened = []
    try:
        for sink in sinks:
            sink.open(info)
            opened.append(sink)
    except BaseException:
        close_all(opened, completed=False)
        raise
    return opened


def close_all(sinks: list[Sink], completed: bool) -> BaseException | None:
    """Close every sink, even after one fails (its partial files then stay resumable); the
    first error is returned."""
    first = None
    for sink in sinks:
        try:
            sink.close(completed)
        except Exception as exc:  # noqa: BLE001 - the rest must still close
            log.warning("closing %s failed: %s", type(sink).__name__, exc)
            first = first or exc
    return first
