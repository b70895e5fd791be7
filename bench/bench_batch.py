"""What a batch costs over calling the runner video by video, here and on a local Ray instance.

Runs the same folder of short clips three ways: `run_video_depth_anything` in a loop (the
baseline; the model loads once, for the first video), `run_many` on this machine, and
`run_many` on a Ray instance started here (its start-up timed apart), with every core shared
between `--workers` actors. One untimed run first loads the model in this process. Prints
seconds and the ratio to the baseline. On a CPU, several single-thread actors can beat one
process using every core when the input is small (torch's threads scale poorly there).

With `--tiny N` it measures instead what a batch costs per video beyond the network, on N
tiny videos (a few 64x48 frames each, input 14, so the network is a small part): seconds per
video on this machine and on a local Ray instance, the network's share, and the batch
process's memory after a tenth and after all of the videos (it must not grow with them).

Usage: python bench/bench_batch.py [--videos 6] [--frames 24] [--input-size 252] [--workers 2]
       python bench/bench_batch.py --tiny 1000 [--frames 3]
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
from parity_recipe import SHARED, write_checkpoint  # noqa: E402
from test_pipeline import cut_clip  # noqa: E402

from annolid_depth import run_video_depth_anything  # noqa: E402
from annolid_depth.batch import run_many  # noqa: E402
from annolid_depth.engine.fastest import cpu_name  # noqa: E402

CLIP = SHARED / "media" / "davis_rollercoaster.mp4"


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def rss_mb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class NetworkSeconds:
    """Seconds inside the network's calls in this process (a batch here runs them in it)."""

    def __init__(self):
        from annolid_depth.engine.backends import CompiledModel
        from annolid_depth.model import VideoDepthAnything

        self.seconds = 0.0
        for cls in (VideoDepthAnything, CompiledModel):  # torch's network or a compiled runtime's
            for name in ("encode", "decode"):
                method = getattr(cls, name)

                def timed_call(*args, _method=method, **kwargs):
                    began = time.perf_counter()
                    try:
                        return _method(*args, **kwargs)
                    finally:
                        self.seconds += time.perf_counter() - began

                setattr(cls, name, timed_call)


def tiny_batches(count: int, frames: int) -> None:
    """Per-video cost of a batch of `count` tiny videos, here and on a local Ray instance."""
    from helpers import make_video

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = write_checkpoint(tmp / "weights" / "video_depth_anything_vits.pth").parent
        clip = make_video(tmp / "tiny.mp4", frames=frames)
        options = {"checkpoint_root": weights, "input_size": 14, "max_res": 64}
        network = NetworkSeconds()
        run_video_depth_anything(clip, tmp / "warm-up", **options)  # model load, untimed
        rows = []
        for way in ("this machine", "Ray, local"):
            videos = tmp / way.replace(" ", "_").replace(",", "")
            videos.mkdir()
            for i in range(count):
                (videos / f"v{i:04d}.mp4").write_bytes(clip.read_bytes())
            memory = {}

            def on_record(entry, memory=memory):
                memory[len(memory) + 1] = rss_mb()

            network.seconds = 0.0
            extra = {"ray_address": "local", "cpus_per_worker": 1} if way.startswith("Ray") else {}
            seconds = timed(lambda: run_many([videos], on_record=on_record, **options, **extra))  # noqa: B023
            rows.append((way, seconds / count, network.seconds / seconds, memory[max(1, count // 10)], memory[count]))
    print(f"{cpu_name()}; {count} videos x {frames} frames of 64x48, input 14, vits")
    print(f"{'batch':<16} {'s/video':>8} {'network':>8} {'beyond it':>10} {'MB after 1/10':>14} {'MB after all':>13}")
    for way, per_video, share, tenth, last in rows:
        print(f"{way:<16} {per_video:>8.3f} {share:>8.0%} {per_video * (1 - share):>10.3f} {tenth:>14.0f} {last:>13.0f}")
    print("(Ray: the network runs in the actors, so its share reads 0 here; its start-up is inside the time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--input-size", type=int, default=252)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors sharing this machine's cores")
    parser.add_argument("--tiny", type=int, metavar="N", help="measure the per-video cost on N tiny videos")
    args = parser.parse_args()
    if args.tiny:
        return tiny_batches(args.tiny, 3 if args.frames == 24 else args.frames)

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

    print(f"{cpu_name()}, {cores} cores; {args.videos} videos x {args.frames} frames, input {args.input_size}, vits")
    print(f"{'way':<40} {'seconds':>8} {'x baseline':>10}")
    for name, seconds in rows:
        print(f"{name:<40} {seconds:>8.2f} {seconds / baseline:>10.2f}")


if __name__ == "__main__":
    main()
