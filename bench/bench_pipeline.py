"""Pipeline ceiling: how many frames/s everything around the network can carry.

Runs `run_video_depth_anything` on a 120-frame 1280x720 H.264 clip (made here from the
shared clip, scaled up) with input size 14, so the network costs next to nothing, as it
would on a GPU. Two output sets: depth.ndjson alone, and depth.ndjson + depth video +
depth frames + npz; each with the process pinned to 1 and to 2 cores. torch gets one
thread (the network is negligible), so the remaining core is the writers' pool's.

Prints frames/s per case, the 1 -> 2 core scaling, and where the milliseconds go: thread
CPU time per frame of each stage (decode on its thread, resize to the network input,
network, resize back to frame size, the depth record's encoding, each sink's per-frame
work and its close), and the whole process's CPU time per frame (all threads, FFmpeg's
and torch's included): on a shared machine the frames/s move with the neighbours' load,
the CPU time much less, and cores / CPU time is the ceiling a quiet machine would reach.
The last column takes the network's own CPU time out of that ceiling (at input 14 the
network still costs ~5 ms per frame on one CPU thread, its matrix products bound by reading
the weights): what the pipeline around the network carries on these cores beside a GPU.

Usage: python bench/bench_pipeline.py [--frames 120] [--repeat 2] [--mode streaming|offline]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from annolid_depth.engine.fastest import cpu_name  # noqa: E402

CASES = {
    "ndjson": {},
    "ndjson+video+frames+npz": {"save_depth_video": True, "save_depth_frames": True, "save_npz": True},
}
SIZE = (1280, 720)


def make_clip(path: Path, frames: int) -> Path:
    """The shared clip scaled to 1280x720 (looped if short), as H.264."""
    import av
    from parity_recipe import SHARED

    source = SHARED / "media" / "davis_rollercoaster.mp4"
    with av.open(str(path), "w") as dst:
        stream = dst.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        written = 0
        while written < frames:
            with av.open(str(source)) as src:
                for frame in src.decode(video=0):
                    if written == frames:
                        break
                    scaled = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
                    scaled.pts, scaled.time_base = written, Fraction(1, 24)  # a loop restarts the source's
                    dst.mux(stream.encode(scaled))
                    written += 1
        dst.mux(stream.encode())
    return path


class Stages:
    """Thread CPU seconds per stage, gathered by wrapping the functions that do the work."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner, name: str, stage: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.thread_time() - start

        setattr(owner, name, timed)

    def wrap_iter(self, owner, name: str, stage: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            items = iter(fn(*args, **kwargs))
            while True:
                start = time.thread_time()
                item = next(items, None)
                self.seconds[stage] += time.thread_time() - start
                if item is None:
                    return
                yield item

        setattr(owner, name, timed)


def child(case: str, clip: Path, weights: Path, out: Path, frames: int, streaming: bool) -> dict:
    """One run in this (pinned) process; returns frames/s and the stage times."""
    import torch

    from annolid_depth import runner
    from annolid_depth.engine import offline as offline_engine
    from annolid_depth.engine import streaming as streaming_engine
    from annolid_depth.engine.transform import FrameTransform
    from annolid_depth.io import records, sinks
    from annolid_depth.io.source import VideoSource
    from annolid_depth.model import VideoDepthAnything

    torch.set_num_threads(1)
    stages = Stages()
    stages.wrap_iter(VideoSource, "frames", "decode")
    stages.wrap(FrameTransform, "__call__", "resize in")
    stages.wrap(VideoDepthAnything, "encode", "network")
    stages.wrap(VideoDepthAnything, "decode", "network")
    for module in (streaming_engine, offline_engine):
        stages.wrap(module, "to_frame_size", "resize out")
    stages.wrap(records, "quantize", "record: quantize")
    stages.wrap(records, "encode_png", "record: png")
    stages.wrap(sinks, "encode_png", "depth frames: png")
    for cls in (sinks.NdjsonSink, sinks.NpzSink, sinks.RenderedSink, sinks.DepthVideoSink, sinks.DepthFramesSink):
        for method in ("prepare", "write", "render", "emit", "close"):
            if method in vars(cls):
                stages.wrap(cls, method, f"{cls.__name__}.{method}")
    run = dict(checkpoint_root=weights, input_size=14, max_res=-1, device="cpu", streaming=streaming, **CASES[case])
    runner.run_video_depth_anything(clip, out / "warm", max_frames=4, **run)  # loads the model
    stages.seconds.clear()
    cpu = time.process_time()
    result = runner.run_video_depth_anything(clip, out / "run", max_frames=frames, **run)
    cpu = time.process_time() - cpu
    per_frame = {stage: 1000 * s / result["frames"] for stage, s in stages.seconds.items()}
    return {"fps": result["frames"] / result["elapsed_s"], "cpu_ms": 1000 * cpu / result["frames"], "ms": per_frame}


def preview_cost() -> str:
    """Annolid's preview overlay (run on the network's thread for every frame when Annolid
    asks for previews) on a 1280x720 map, against the same with numpy's percentile."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from annolid_depth import runner

    small = torch.from_numpy(np.random.default_rng(0).random((1, 1, 37, 66), dtype=np.float32))
    depth = F.interpolate(small, size=SIZE[::-1], mode="bilinear", align_corners=True)[0, 0].numpy()

    def ms_per_call():
        runner.preview_overlay(depth, False, False)
        start = time.perf_counter()
        for _ in range(40):
            runner.preview_overlay(depth, False, False)
        return (time.perf_counter() - start) / 40 * 1000

    now = ms_per_call()
    tails = runner.display_range
    runner.display_range = lambda values: tuple(float(v) for v in np.percentile(values, (1, 99)))
    whole = ms_per_call()
    runner.display_range = tails
    return (f"\nAnnolid's preview overlay at {SIZE[0]}x{SIZE[1]}: {now:.2f} ms a frame "
            f"({whole:.2f} with np.percentile over the whole map; {whole / now:.2f}x)")


def pinned(cores: int, case: str, clip: Path, weights: Path, out: Path, frames: int, mode: str) -> dict:
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    command = [sys.executable, __file__, "--child", case, str(clip), str(weights), str(out), str(frames), mode]
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, allowed)
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the fastest counts")
    parser.add_argument("--mode", choices=["streaming", "offline"], default="streaming",
                        help="the engine; offline runs the network on 32-frame windows, cheaper per frame at this size")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, clip, weights, out, frames, mode = args.child
        print(json.dumps(child(case, Path(clip), Path(weights), Path(out), int(frames), mode == "streaming")))
        return
    sys.stdout.reconfigure(line_buffering=True)
    from parity_recipe import write_checkpoint

    cores = len(os.sched_getaffinity(0))
    print(f"CPU: {cpu_name()}, {cores} cores usable; {args.frames} frames {SIZE[0]}x{SIZE[1]} H.264, "
          f"vits at input 14, fp32, {args.mode}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip.mp4", args.frames)
        weights = write_checkpoint(tmp / "w" / "video_depth_anything_vits.pth").parent
        results = {}
        for case in CASES:
            for n in (1, 2):
                runs = [pinned(n, case, clip, weights, tmp / f"{case}_{n}", args.frames, args.mode) for _ in range(args.repeat)]
                results[case, n] = max(runs, key=lambda r: r["fps"])
        print(f"\n{'outputs':26} {'1 core':>8} {'2 cores':>8} {'scaling':>8}   (frames/s)  CPU ms/frame, 1 core (2 cores)"
              "   network-free ceiling, 2 cores")
        for case in CASES:
            one, two = results[case, 1], results[case, 2]
            around = two["cpu_ms"] - two["ms"].get("network", 0.0)  # everything but the network's own CPU time
            print(f"{case:26} {one['fps']:>8.1f} {two['fps']:>8.1f} {two['fps'] / one['fps']:>7.2f}x"
                  f"   {one['cpu_ms']:>23.1f} ({two['cpu_ms']:.1f})   {2000 / around:>10.0f} frames/s")
        print("(network-free ceiling: 2 cores / the CPU time per frame outside the network, what a GPU host "
              "whose network is fast would be held to by this machine's cores)")
        print(preview_cost())
        for case in CASES:
            print(f"\nms of thread CPU time per frame, {case}, 1 core (2 cores):")
            one, two = results[case, 1]["ms"], results[case, 2]["ms"]
            for stage in sorted(one, key=one.get, reverse=True):
                print(f"  {stage:28} {one[stage]:7.2f} ({two.get(stage, 0.0):.2f})")


if __name__ == "__main__":
    main()
