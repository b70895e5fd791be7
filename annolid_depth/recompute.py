"""Outputs recomputed from a finished run's `depth.ndjson`, without the network.

`depth.ndjson` holds every processed frame's depth (to within one 16-bit quantisation
step) and its size, so the per-region table, the floor and the plots can be rebuilt after
the tracking was corrected, in seconds instead of a new depth run. This package's records
say what their values are; Annolid's own (the same format, without a depth kind) do not,
so for those the caller says it (`metric=`).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import OutputError
from .io.files import publish, remove
from .io.folder_lock import FolderLock
from .io.records import KINDS, METRIC_DEPTH, NDJSON, decode_depth, depth_kind, iter_records
from .io.run_folder import depth_of, read_record
from .io.sinks import SINKS, RunInfo, close_all, open_sinks
from .io.source import VideoSource
from .settings import DEFAULT, DepthSettings


def recompute_region_stats(
    output_dir: str | Path,
    video: str | Path | None = None,
    *,
    metric: bool | None = None,
    focal_length_x: float | None = None,
    focal_length_y: float | None = None,
) -> dict[str, str]:
    """Write `depth_regions.csv`, `depth_floor.json`, `depth_regions.png` and
    `depth_paths.png` into `output_dir` from its `depth.ndjson` and the video's current
    annotations, exactly as a run with `save_region_stats=True` does; returns their paths
    (`region_stats`, `region_floor`, `region_plot`, `region_paths`). A failure leaves the
    earlier outputs in place.

    `video` locates the annotations (`<video folder>/<stem>/`) and gives the frame rate for
    `time_s`; by default it is the video run.json names, else the record's video beside the
    output folder (where a run that chose no folder puts its outputs). A video other than
    the one whose depth the folder holds is refused: by run.json's fingerprint (size and
    first megabyte), or without run.json, by the records' video name. `metric` says what
    the records' values are when they do not (Annolid's files): True for metres, False for
    relative disparity; records that say it must agree. The focal lengths (for `x`, `y`,
    `z` and the floor) default to the run's, from its `run.json`.
    """
    out = Path(output_dir)
    ndjson = out / NDJSON
    if not ndjson.is_file():
        raise OutputError(f"{ndjson} not found: recomputing needs a finished depth run in {out}")
    records = iter_records(ndjson)
    first = next(records, None)
    if first is None:
        raise OutputError(f"{ndjson} holds no frames; run depth on the video again")
    record = read_record(out)
    video = the_video(out, record, first, video)
    run_settings = (record or {}).get("settings") or {}
    settings = DepthSettings(
        metric=records_metric(ndjson, first, metric),
        focal_length_x=focal_length_x or run_settings.get("focal_length_x", DEFAULT.focal_length_x),
        focal_length_y=focal_length_y or run_settings.get("focal_length_y", DEFAULT.focal_length_y),
        save_region_stats=True,
    )
    settings.validate()
    with VideoSource(video) as source:
        fps = source.fps
    size = first.get("imageWidth"), first.get("imageHeight")
    if not all(isinstance(side, int) and side > 0 for side in size):
        raise OutputError(f"the first record of {ndjson} gives no image size (imageWidth, imageHeight); run depth again")
    info = RunInfo(video, out, *size, fps, settings, source_fps=fps)
    with FolderLock(out):  # not while a run writes into the folder
        sinks = open_sinks([cls() for setting, cls in SINKS if setting == "save_region_stats"], info)
        completed = False
        try:
            for frame_index, depth in depth_maps(ndjson, itertools.chain([first], records)):
                for sink in sinks:
                    sink.put(frame_index, None, depth)
            completed = True
        finally:
            close_error = close_all(sinks, completed)
            if not completed or close_error is not None:  # nothing half made is left behind
                for sink in sinks:
                    remove(sink.tmp)
        if close_error is not None:
            raise close_error
        for sink in sinks:
            publish(sink.tmp, sink.final)
    return {sink.result_key: str(sink.final) for sink in sinks}


def the_video(out: Path, record: dict | None, first: dict, video: str | Path | None) -> Path:
    """The video whose depth `out` holds: `video` once checked, else the one run.json names
    or the records' video beside the folder."""
    if video is None:
        named = Path(((record or {}).get("video") or {}).get("path") or "")
        video = named if record is not None and named.is_file() else out.parent / str(first.get("video_name"))
        if not video.is_file():
            raise OutputError(f"the video of {out / NDJSON} is not at {video}; pass video= with its path")
    video = Path(video)
    if not video.is_file():
        raise OutputError(f"{video} is not a video file; pass the video whose depth {out} holds")
    try:
        found, _ = depth_of(out, video)
    except ValueError as exc:
        raise OutputError(f"{exc}; pass that video, or run depth on this one") from None
    if found != out / NDJSON:
        raise OutputError(f"the run in {out} is unfinished; finish it (resume) before recomputing its regions")
    return video


def records_metric(ndjson: Path, first: dict, metric: bool | None) -> bool:
    """Whether the records' values are metres: as they say, else as `metric` says."""
    kind = ((first.get("otherData") or {}).get("depth_map") or {}).get("kind")
    if kind is None:
        if metric is None:
            raise OutputError(f"the records of {ndjson} do not say what their values are (no depth kind, as in Annolid's "
                              "own files); say it: metric=True (--metric) for a metric model's metres, metric=False "
                              "(--relative) for a relative model's disparity")
        return metric
    if kind not in KINDS:
        raise OutputError(f"the records of {ndjson} hold depth of an unknown kind {kind!r}")
    if metric is not None and depth_kind(metric) != kind:
        raise OutputError(f"the records of {ndjson} hold {kind}, not {depth_kind(metric)}; leave metric out "
                          "(the records say what they hold)")
    return kind == METRIC_DEPTH


def depth_maps(ndjson: Path, records) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, depth) of each record; one that holds none is named with what to do."""
    done = 0
    try:
        for record in records:
            yield int(record["frame_index"]), decode_depth(record)
            done += 1
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OutputError(f"{ndjson}: record {done + 1} holds no readable depth ({type(exc).__name__}: {exc}); "
                          "run depth on the video again") from None
