"""Outputs recomputed from a finished run's `depth.ndjson`, without the network.

`depth.ndjson` holds every processed frame's depth (to within one 16-bit quantisation
step), its size and what its values are, so the per-region table can be rebuilt after the
tracking was corrected, in seconds instead of a new depth run.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from .errors import OutputError
from .io.records import METRIC_DEPTH, NDJSON, decode_depth, iter_records
from .io.run_folder import FolderLock, read_record
from .io.sinks import RegionPlotSink, RegionStatsSink, RunInfo, publish
from .io.source import VideoSource
from .settings import DepthSettings


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
    info = RunInfo(
        video_path=video,
        output_dir=out,
        stem=video.stem,
        width=int(first["imageWidth"]),
        height=int(first["imageHeight"]),
        fps=fps,
        source_fps=fps,
        settings=DepthSettings(
            metric=first["otherData"]["depth_map"].get("kind") == METRIC_DEPTH,
            focal_length_x=focal_length_x or run_settings.get("focal_length_x", 470.4),
            focal_length_y=focal_length_y or run_settings.get("focal_length_y", 470.4),
            save_region_stats=True,
        ),
    )
    info.settings.validate()
    sinks = [RegionStatsSink(), RegionPlotSink()]
    with FolderLock(out):  # not while a run writes into the folder
        for sink in sinks:
            sink.open(info)
        completed = False
        try:
            for record in itertools.chain([first], records):
                depth = decode_depth(record)
                for sink in sinks:
                    sink.put(record["frame_index"], None, depth)
            completed = True
        finally:
            for sink in sinks:
                sink.close(completed)
        for sink in sinks:
            publish(sink.tmp, sink.final)
    return {sink.result_key: str(sink.final) for sink in sinks}
