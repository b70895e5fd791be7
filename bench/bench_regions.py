"""Depth per region: what save_region_stats adds to a run.

On 1280x720 frames, times per frame the region table (RegionStatsSink.prepare: label map,
statistics, CSV rows) against writing the frame's depth.ndjson record (the work every run
does), and the one-off index of an annotation store against reading every record of it with
json.loads. On 960x540 frames of a metric arena (a floor 0.8 m away, tilted 15 degrees, two
mice on it), times the floor: sampling the first frames and fitting the plane once per run,
the height columns per frame, and the region table's sink itself (its first 8 frames, which
wait for the floor, against any later frame), against the record.

Usage: python bench/bench_regions.py
"""
from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_point_cloud import best_of  # the scripts run from bench/

from annolid_depth.engine.fastest import cpu_name
from annolid_depth.io.annotations import VideoAnnotations
from annolid_depth.io.camera import pinhole_rays
from annolid_depth.io.floor import SAMPLE_FRAMES, FloorSample
from annolid_depth.io.regions import region_rows
from annolid_depth.io.sinks import NdjsonSink, RegionStatsSink, RunInfo
from annolid_depth.settings import DepthSettings

W, H = 1280, 720
RECORDS = 20_000  # a store for about 11 minutes of 30 fps video
FLOOR_W, FLOOR_H, FOCAL = 960, 540, 470.4
RUN_FRAMES = 900  # a minute of video at 15 processed frames a second


def blob(cx: float, cy: float, radius: float, points: int = 40) -> list[list[float]]:
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.column_stack([cx + radius * np.cos(angles), cy + radius * 0.6 * np.sin(angles)]).round(2).tolist()


def record(frame: int) -> dict:
    """Two mice and an arena, in the video's own pixels (twice the processed size)."""
    shapes = [{"label": f"mouse_{k}", "shape_type": "polygon", "points": blob(900 + 600 * k + frame % 50, 700, 120)}
              for k in (1, 2)]
    shapes.append({"label": "arena", "shape_type": "rectangle", "points": [[200, 100], [2400, 1400]]})
    return {"frame": frame, "imageWidth": 2 * W, "imageHeight": 2 * H, "shapes": shapes}


def main() -> None:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    depth = (0.5 + 4.0 * y / H + 3.0 * np.exp(-((x - 640) ** 2 + (y - 400) ** 2) / 20000)).astype(np.float32)
    rgb = np.zeros((H, W, 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "v").mkdir()
        store = tmp / "v" / "v_annotations.ndjson"
        with open(store, "w") as out:
            out.writelines(json.dumps(record(i), separators=(",", ":")) + "\n" for i in range(RECORDS))
        info = RunInfo(tmp / "v.mp4", tmp / "out", W, H, 30.0)
        (tmp / "out").mkdir()
        regions, ndjson = RegionStatsSink(), NdjsonSink()
        regions.open(info)
        ndjson.open(info)
        for f in range(SAMPLE_FRAMES):  # the floor's sample: every later frame is prepared whole
            regions.write(f, regions.prepare(f, rgb, depth))
        per_frame = [
            ("depth.ndjson record (baseline)", best_of(lambda: ndjson.prepare(0, rgb, depth))),
            ("label map alone", best_of(lambda: info.annotations.labels(0))),
            ("region table (labels + stats)", best_of(lambda: regions.prepare(0, rgb, depth))),
        ]
        index = best_of(lambda: VideoAnnotations(tmp / "v.mp4", W, H), repeats=3)
        load_all = best_of(lambda: [json.loads(line) for line in open(store, "rb")], repeats=3)
        size = store.stat().st_size
        regions.close(False)
        ndjson.close(False)
    print(f"CPU: {cpu_name()}; one {W}x{H} frame with 3 regions; store of {RECORDS:,} records ({size / 1e6:.0f} MB)")
    baseline = per_frame[0][1]
    print(f"{'per frame':34} {'ms':>8} {'vs record':>10}")
    for name, seconds in per_frame:
        print(f"{name:34} {seconds * 1000:>8.1f} {seconds / baseline:>9.2f}x")
    print(f"{'once per run':34} {'s':>8} {'vs json.loads':>10}")
    print(f"{'json.loads of every line (baseline)':34} {load_all:>8.2f} {1:>9.2f}x")
    print(f"{'store index (offsets only kept)':34} {index:>8.2f} {index / load_all:>9.2f}x")
    floor_figures()


def arena(tilt_deg: float = 15.0, distance: float = 0.8) -> tuple[np.ndarray, np.ndarray, list[str], tuple]:
    """(metric depth, label map, names, rays) at 960x540: a tilted floor with 1 mm of noise
    and two mice, their regions raised 3 and 6 cm towards the camera."""
    rays = pinhole_rays(FLOOR_W, FLOOR_H, FOCAL, FOCAL)
    t = np.radians(tilt_deg)
    towards = (-np.sin(t) * rays[1] + np.cos(t)).reshape(FLOOR_H, FLOOR_W)  # normal . ray
    label_map = np.zeros((FLOOR_H, FLOOR_W), np.int32)
    label_map[200:260, 300:400], label_map[300:380, 600:680] = 1, 2
    raised = np.choose(label_map, [0.0, 0.03, 0.06])
    depth = (distance - raised) / towards + np.random.default_rng(0).normal(0, 0.001, towards.shape)
    return depth.astype(np.float32), label_map, ["", "mouse_1", "mouse_2"], rays


def arena_sink(folder: Path) -> tuple[RegionStatsSink, RunInfo]:
    """A region table sink on the arena's 960x540 frames, the mice's rectangles in Annolid's store."""
    shapes = [{"label": "mouse_1", "shape_type": "rectangle", "points": [[300, 200], [399, 259]]},
              {"label": "mouse_2", "shape_type": "rectangle", "points": [[600, 300], [679, 379]]}]
    (folder / "v").mkdir(parents=True)
    with open(folder / "v" / "v_annotations.ndjson", "w") as out:
        out.writelines(json.dumps({"frame": f, "imageWidth": FLOOR_W, "imageHeight": FLOOR_H, "shapes": shapes}) + "\n"
                       for f in range(64))
    (folder / "out").mkdir()
    settings = DepthSettings(metric=True, focal_length_x=FOCAL, focal_length_y=FOCAL, save_region_stats=True)
    return RegionStatsSink(), RunInfo(folder / "v.mp4", folder / "out", FLOOR_W, FLOOR_H, 15.0, settings)


def floor_in_the_sink(depth: np.ndarray) -> tuple[float, float, float]:
    """(the first SAMPLE_FRAMES frames through the sink: sampled, the floor fitted, their rows
    written; any later frame; the record of a frame), in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        sink, info = arena_sink(Path(tmp))
        ndjson = NdjsonSink()
        ndjson.open(info)

        def first_frames() -> float:
            sink.open(info)  # not timed: any run opens it
            start = time.perf_counter()
            for f in range(SAMPLE_FRAMES):
                ndjson.prepare(f, None, depth)  # quantises the frame, which the sink then shares, as in a run
                sink.write(f, sink.prepare(f, None, depth))
            assert sink.floor is not None, sink.document
            return time.perf_counter() - start

        sampled = min(first_frames() for _ in range(5))
        later = best_of(lambda: sink.write(20, sink.prepare(20, None, depth)), repeats=10)
        frames = itertools.cycle([depth, depth.copy()])  # two arrays: the record's quantisation is not reused
        record = best_of(lambda: ndjson.prepare(0, None, next(frames)), repeats=10)
        sink.close(False)
        ndjson.close(False)
    return sampled, later, record


def floor_figures() -> None:
    depth, label_map, names, rays = arena()

    def sampled():
        sample = FloorSample(rays, metric=True)
        for f in range(SAMPLE_FRAMES):
            sample.add(f, depth, label_map)
        return sample

    sample = sampled()
    floor, reason = sample.fit()
    assert floor is not None, reason
    plain = best_of(lambda: region_rows(0, 0.0, label_map, names, depth, rays, True), repeats=10)
    heights = best_of(lambda: region_rows(0, 0.0, label_map, names, depth, rays, True, floor), repeats=10)
    adding = best_of(sampled, repeats=5)
    fitting = best_of(sample.fit, repeats=5)
    first, later, record = floor_in_the_sink(depth)
    run = RUN_FRAMES * record
    print(f"\n{FLOOR_W}x{FLOOR_H}, metric arena, 2 regions; floor: {floor.points:,} points from {SAMPLE_FRAMES} frames, "
          f"{floor.inlier_share:.0%} inliers, rms {floor.rms * 1000:.2f} mm")
    print(f"{'per frame':38} {'ms':>8} {'vs record':>10}")
    for name, seconds in (("depth.ndjson record (baseline)", record), ("region rows, no floor", plain),
                          ("region rows with heights", heights), ("  the height columns alone", heights - plain),
                          ("a frame through the table's sink", later)):
        print(f"{name:38} {seconds * 1000:>8.2f} {seconds / record:>9.2f}x")
    print(f"{'once per run':38} {'ms':>8} {f'vs {RUN_FRAMES} records':>10}")
    overhead = first - SAMPLE_FRAMES * later
    for name, seconds in ((f"sampling {SAMPLE_FRAMES} frames", adding), ("fitting the plane", fitting),
                          (f"the sink's first {SAMPLE_FRAMES} frames, beyond later ones", overhead)):
        print(f"{name:38} {seconds * 1000:>8.1f} {seconds / run:>9.2%}")
    print(f"(a run of {RUN_FRAMES} frames writes {RUN_FRAMES} records and runs the network on each: the floor's share "
          "of a run is below its share of the records)")


if __name__ == "__main__":
    main()
