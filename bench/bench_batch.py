"""What a batch costs over calling the runner video by video, here and on a local Ray instance.

Runs the same folder of short clips three ways: `run_video_depth_anything` in a loop (the
baseline; the model loads once, for the first video), `run_many` on this machine, and
`run_many` on a Ray instance started here (its start-up timed apart), with every core shared
between `--workers` actors. One untimed run first loads the model in this process. Prints
seconds and the ratio to the baseline. On a CPU, several single-thread actors can beat one
process using every core when the input is small (torch's threads scale poorly there).

Usage: python bench/bench_batch.py [--videos 6] [--frames 24] [--input-size 252] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from bench_regions import cpu_model  # noqa: E402 (the benches' one CPU-model helper)
from parity_recipe import SHARED, write_checkpoint  # noqa: E402
from test_pipeline import cut_clip  # noqa: E402

from annolid_depth import run_video_depth_anything  # noqa: E402
from annolid_depth.batch import run_many  # noqa: E402

CLIP = SHARED / "media" / "davis_rollercoaster.mp4"


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--input-size", type=int, default=252)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors sharing this machine's cores")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = write_checkpoint(tmp / "weights" / "video_depth_anything_vits.pth").parent
        clip = cut_clip(CLIP, tmp / "clip.mp4", args.frames)
        options = {"checkpoint_root": weights, "input_size": args.input_size, "max_res": 640}
        rows = []

        def folder(name: str) -> Path:
            videos = tmp / name
            videos.mkdir()
            for i in range(args.videos):
                (videos / f"session{i:02d}.mp4").write_bytes(clip.read_bytes())
            return videos

        run_video_depth_anything(clip, tmp / "warm-up", **options)  # model load and first-call costs, untimed
        loop = folder("loop")
        baseline = timed(lambda: [run_video_depth_anything(v, **options) for v in sorted(loop.glob("*.mp4"))])
        rows.append(("runner in a loop", baseline))
        local = folder("local")
        rows.append(("run_many, this machine", timed(lambda: run_many([local], **options))))

        import ray

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        rows.append(("Ray start-up (not a batch)", timed(lambda: ray.init(num_cpus=cores, include_dashboard=False,
                                                                          logging_level="WARNING"))))
        on_ray = folder("ray")
        per_worker = max(cores // args.workers, 1)
        rows.append((f"run_many, Ray, {args.workers} actors x {per_worker} CPUs",
                     timed(lambda: run_many([on_ray], ray_address="auto", cpus_per_worker=per_worker, **options))))
        ray.shutdown()

    print(f"{cpu_model()}, {cores} cores; {args.videos} videos x {args.frames} frames, input {args.input_size}, vits")
    print(f"{'way':<40} {'seconds':>8} {'x baseline':>10}")
    for name, seconds in rows:
        print(f"{name:<40} {seconds:>8.2f} {seconds / baseline:>10.2f}")


if __name__ == "__main__":
    main()
