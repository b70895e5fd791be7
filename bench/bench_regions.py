"""Depth per region on 1280x720 frames: what save_region_stats adds to a run.

Times, per frame, the region table (RegionStatsSink.prepare: label map, statistics, CSV rows)
against writing the frame's depth.ndjson record (the work every run does), and the one-off
index of an annotation store against reading every record of it with json.loads.

Usage: python bench/bench_regions.py
"""
from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path

import numpy as np
from bench_point_cloud import best_of  # the scripts run from bench/

from annolid_depth.io.annotations import VideoAnnotations
from annolid_depth.io.sinks import NdjsonSink, RegionStatsSink, RunInfo

W, H = 1280, 720
RECORDS = 20_000  # a store for about 11 minutes of 30 fps video


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


if __name__ == "__main__":
    main()
