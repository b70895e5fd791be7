"""Depth per region: what save_region_stats adds to a run.

On 1280x720 frames, times per frame the region table (RegionStatsSink.prepare: label map,
statistics, CSV rows) against writing the frame's depth.ndjson record (the work every run
does), and the one-off index of an annotation store against reading every record of it with
json.loads. On 960x540 frames of a metric arena (a floor 0.8 m away, tilted 15 degrees, two
mice on it), times the floor: sampling the first frames and fitting the plane once per run,
and the height columns per frame, against the record.

Usage: python bench/bench_regions.py
"""
from __future__ import annotations

import itertools
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
from bench_point_cloud import best_of  # the scripts run from bench/

from annolid_depth.io.annotations import VideoAnnotations
from annolid_depth.io.camera import pinhole_rays
from annolid_depth.io.floor import SAMPLE_FRAMES, FloorSample
from annolid_depth.io.records import METRIC_DEPTH, encode_record, record_line
from annolid_depth.io.regions import region_rows
from annolid_depth.io.sinks import NdjsonSink, RegionStatsSink, RunInfo

W, H = 1280, 720
RECORDS = 20_000  # a store for about 11 minutes of 30 fps video
FLOOR_W, FLOOR_H, FOCAL = 960, 540, 470.4
RUN_FRAMES = 900  # a minute of video at 15 processed frames a second


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    print(f"CPU: {cpu_model()}; one {W}x{H} frame with 3 regions; store of {RECORDS:,} records ({size / 1e6:.0f} MB)")
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


def floor_figures() -> None:
    depth, label_map, names, rays = arena()
    frames = itertools.cycle([depth, depth.copy()])  # two arrays: the record's quantisation is not reused

    def sampled():
        sample = FloorSample(rays, metric=True)
        for f in range(SAMPLE_FRAMES):
            sample.add(f, depth, label_map)
        return sample

    sample = sampled()
    floor, reason = sample.fit()
    assert floor is not None, reason
    record = best_of(lambda: record_line(encode_record(next(frames), 0, "v.mp4", "v", METRIC_DEPTH)), repeats=5)
    plain = best_of(lambda: region_rows(0, 0.0, label_map, names, depth, rays, True), repeats=5)
    heights = best_of(lambda: region_rows(0, 0.0, label_map, names, depth, rays, True, floor), repeats=5)
    adding = best_of(sampled, repeats=5)
    fitting = best_of(sample.fit, repeats=5)
    run = RUN_FRAMES * record
    print(f"\n{FLOOR_W}x{FLOOR_H}, metric arena, 2 regions; floor: {floor.points:,} points from {SAMPLE_FRAMES} frames, "
          f"{floor.inlier_share:.0%} inliers, rms {floor.rms * 1000:.2f} mm")
    print(f"{'per frame':34} {'ms':>8} {'vs record':>10}")
    for name, seconds in (("depth.ndjson record (baseline)", record), ("region rows, no floor", plain),
                          ("region rows with heights", heights), ("  the height columns alone", heights - plain)):
        print(f"{name:34} {seconds * 1000:>8.2f} {seconds / record:>9.2f}x")
    print(f"{'once per run':34} {'ms':>8} {f'vs {RUN_FRAMES} records':>10}")
    for name, seconds in ((f"sampling {SAMPLE_FRAMES} frames", adding), ("fitting the plane", fitting),
                          ("the floor, in all", adding + fitting)):
        print(f"{name:34} {seconds * 1000:>8.1f} {seconds / run:>9.2%}")


if __name__ == "__main__":
    main()
