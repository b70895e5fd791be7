"""Outputs recomputed from a finished run's `depth.ndjson`, without the network.

`depth.ndjson` holds every processed frame's depth (to within one 16-bit quantisation
step), its size and what its values are, so the per-region table can be rebuilt after the
tracking was corrected, in seconds instead of a new depth run.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from .errors import OutputError
from .io.files import publish
from .io.records import METRIC_DEPTH, NDJSON, decode_depth, iter_records
from .io.run_folder import FolderLock, read_record
from .io.sinks import RegionPlotSink, RegionStatsSink, RunInfo, close_all, open_sinks
from .io.source import VideoSource
from .settings import DEFAULT, DepthSettings


def recompute_region_stats(
    output_dir: str | Path,
    video: str | Path | None = None,
    *,
    focal_length_x: float | None = None,
    focal_length_y: float | None = None,
) -> dict[str, str]:
    """Write `depth_regions.csv` and `depth_regions.png` into `output_dir` from its
    `depth.ndjson` and the video's current annotations, exactly as a run with
    `save_region_stats=True` does; returns their paths (`region_stats`, `region_plot`).
    A failure leaves the earlier table and plot in place.

    `video` locates the annotations (`<video folder>/<stem>/`) and gives the frame rate for
    `time_s`; by default it is the record's video beside the output folder, where a run
    that chose no folder puts its outputs. The focal lengths (for `x`, `y`, `z`) default to
    the run's, from its `run.json`.
    """
    out = Path(output_dir)
    ndjson = out / NDJSON
    if not ndjson.is_file():
        raise OutputError(f"{ndjson} not found: recomputing needs a finished depth run in {out}")
    records = iter_records(ndjson)
    first = next(records, None)
    if first is None:
        raise OutputError(f"{ndjson} holds no frames; run depth on the video again")
    if video is None:
        video = out.parent / first["video_name"]
        if not video.exists():
            raise OutputError(f"the video of {ndjson} is not at {video}; pass video= with its path")
    video = Path(video)
    with VideoSource(video) as source:
        fps = source.fps
    run_settings = (read_record(out) or {}).get("settings") or {}
    settings = DepthSettings(
        metric=first["otherData"]["depth_map"].get("kind") == METRIC_DEPTH,
        focal_length_x=focal_length_x or run_settings.get("focal_length_x", DEFAULT.focal_length_x),
        focal_length_y=focal_length_y or run_settings.get("focal_length_y", DEFAULT.focal_length_y),
        save_region_stats=True,
    )
    settings.validate()
    info = RunInfo(video, out, int(first["imageWidth"]), int(first["imageHeight"]), fps, settings, source_fps=fps)
    with FolderLock(out):  # not while a run writes into the folder
        sinks = open_sinks([RegionStatsSink(), RegionPlotSink()], info)
        completed = False
        try:
            for record in itertools.chain([first], records):
                depth = decode_depth(record)
                for sink in sinks:
                    sink.put(record["frame_index"], None, depth)
            completed = True
        finally:
            close_error = close_all(sinks, completed)
        if close_error is not None:
            raise close_error
        for sink in sinks:
            publish(sink.tmp, sink.final)
    return {sink.result_key: str(sink.final) for sink in sinks}
