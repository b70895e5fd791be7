"""Writing one 1280x720 point cloud frame (921,600 points): CSV and PLY against np.savetxt.

Usage: python bench/bench_point_cloud.py
"""
from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from annolid_depth.io.sinks import PointCloudSink, RunInfo

W, H = 1280, 720


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def frame() -> tuple[np.ndarray, np.ndarray]:
    """A relative disparity map shaped like a scene (a floor receding, an object in front) and an image."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    disparity = 0.5 + 4.0 * y / H + 3.0 * np.exp(-((x - 640) ** 2 + (y - 400) ** 2) / 20000)
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return disparity.astype(np.float32), rgb


def main() -> None:
    depth, rgb = frame()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = tmp / "v"
        labels.mkdir()
        shapes = [{"label": "arena", "shape_type": "rectangle", "points": [[100, 50], [1180, 700]]},
                  {"label": "mouse", "shape_type": "polygon", "points": [[600, 300], [700, 320], [650, 420]]}]
        (labels / "v_000000000.json").write_text(json.dumps({"shapes": shapes}))
        for fmt, regions in (("csv", False), ("csv", True), ("ply", False)):
            sink = PointCloudSink()
            sink.open(RunInfo(tmp / "v.mp4", tmp / f"{fmt}{regions}", W, H, 30.0,
                              point_cloud_format=fmt, include_region_labels=regions))
            seconds = best_of(functools.partial(sink.put, 0, rgb, depth))
            size = (sink.tmp / f"point_0000.{fmt}").stat().st_size
            rows.append((f"PointCloudSink {fmt}" + (" + regions" if regions else ""), seconds, size))
        z = 1.0 / depth.ravel()
        table = np.column_stack([z, z, z, rgb.reshape(-1, 3)[:, :1], rgb.reshape(-1, 3)])
        baseline = best_of(lambda: np.savetxt(tmp / "b.csv", table, fmt="%.5f,%.5f,%.5f,%d,%d,%d,%d"), repeats=1)
        baseline_size = (tmp / "b.csv").stat().st_size
    print(f"one {W}x{H} frame ({H * W:,} points)")
    print(f"{'writer':32} {'ms/frame':>9} {'MB':>6} {'vs np.savetxt':>14}")
    print(f"{'np.savetxt (baseline)':32} {baseline * 1000:>9.0f} {baseline_size / 1e6:>6.1f} {1:>13.1f}x")
    for name, seconds, size in rows:
        print(f"{name:32} {seconds * 1000:>9.0f} {size / 1e6:>6.1f} {baseline / seconds:>13.1f}x")


if __name__ == "__main__":
    main()
