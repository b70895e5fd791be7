"""Point cloud writing for one 1280x720 frame: CSV and PLY against np.savetxt.

Usage: python bench/bench_point_cloud.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from annolid.depth.io.sinks import PointCloudSink, RunInfo

W, H = 1280, 720


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    depth = (rng.random((H, W)) + 0.5).astype(np.float32)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {}
        for fmt in ("csv", "ply"):
            sink = PointCloudSink()
            sink.open(RunInfo(tmp / "v.mp4", tmp / fmt, "v", W, H, 30.0, point_cloud_format=fmt))
            rows[fmt] = best_of(lambda: sink.write(0, rgb, depth))
        table = np.column_stack([rng.random((H * W, 3)), rng.integers(0, 256, (H * W, 4))])
        baseline = best_of(lambda: np.savetxt(tmp / "b.csv", table, fmt="%.5f,%.5f,%.5f,%d,%d,%d,%d"), repeats=1)
    print(f"one {W}x{H} frame ({H * W:,} points)")
    print(f"{'writer':22} {'ms/frame':>9} {'vs np.savetxt':>14}")
    print(f"{'np.savetxt (baseline)':22} {baseline * 1000:>9.0f} {1:>13.1f}x")
    for fmt, seconds in rows.items():
        print(f"{'PointCloudSink ' + fmt:22} {seconds * 1000:>9.0f} {baseline / seconds:>13.1f}x")


if __name__ == "__main__":
    main()
