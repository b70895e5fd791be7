"""End-to-end frames per second on the shared clip, and where the time goes.

For each input size, mode, precision (fp32; bf16 where the CPU has bf16 arithmetic) and
backend (torch and the installed compiled runtimes, side by side): frames/s of
`run_video_depth_anything` (decode, engine, depth.ndjson), the share of that
time spent decoding (a decode-only pass), in the network (encoder and head calls, timed
around them) and in the rest (frame transform, resizing to frame size, alignment, writing).
With `--reference DIR` (a checkout of the reference implementation, which needs `einops`
and `easydict`) it also times the reference on the same decoded frames, weights, thread
count and precision, and prints our speed as a ratio of its.

A compiled backend exports its graphs on first use (not timed: a warm-up run loads the model).

Usage: python bench/bench_speed.py [--sizes 252,518] [--frames 70] [--threads 2] [--backends torch,openvino]
                                   [--reference DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from bench_model import backend_cases  # noqa: E402
from parity_recipe import SHARED, write_checkpoint  # noqa: E402
from reference import reference_fps  # noqa: E402

from annolid.depth import runner  # noqa: E402
from annolid.depth.engine.backends import RUNTIMES, CompiledModel, installed  # noqa: E402
from annolid.depth.engine.device import cpu_runs_bf16, reuse_freed_memory  # noqa: E402
from annolid.depth.io.source import VideoSource  # noqa: E402
from annolid.depth.model import VideoDepthAnything  # noqa: E402

CLIP = SHARED / "media" / "davis_rollercoaster.mp4"


class NetworkTimer:
    """Accumulates the seconds spent inside the network's encode and decode calls, on any backend."""

    def __init__(self):
        self.seconds = 0.0
        for cls in (VideoDepthAnything, CompiledModel):
            for name in ("encode", "decode"):
                setattr(cls, name, self._timed(getattr(cls, name)))

    def _timed(self, fn):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return call


def decode_seconds(frames: int) -> tuple[float, list]:
    start = time.perf_counter()
    with VideoSource(CLIP, max_frames=frames, max_res=-1) as source:
        decoded = [rgb for _, rgb in source]
    return time.perf_counter() - start, decoded


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="252,518")
    parser.add_argument("--frames", type=int, default=70)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default=",".join(["torch", *(r for r in RUNTIMES if installed(r))]))
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp, reuse_freed_memory():  # as the CLI runs
        tmp = Path(tmp)
        checkpoint = write_checkpoint(tmp / "ckpt" / "video_depth_anything_vits.pth", "vits")
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # graphs of this temporary checkpoint
        timer = NetworkTimer()
        t_decode, decoded = decode_seconds(args.frames)
        cases = backend_cases(args.backends.split(","), ["fp32", "bf16"] if cpu_runs_bf16() else ["fp32"])
        print(f"vits, {args.threads} threads, {len(decoded)} frames of {CLIP.name} ({decoded[0].shape[1]}x{decoded[0].shape[0]}), end to end")
        print(f"{'size':>5} {'mode':10} {'prec':5} {'backend':12} {'frames/s':>9} {'decode':>7} {'network':>8} {'rest':>6} {'reference':>10} {'ratio':>6}")
        for size in map(int, args.sizes.split(",")):
            for streaming in (False, True):
                reference = {}
                for precision, backend in cases:
                    run = dict(checkpoint_root=checkpoint.parent, input_size=size, max_res=-1, max_frames=args.frames,
                               streaming=streaming, precision=precision, device="cpu", backend=backend)
                    runner.run_video_depth_anything(CLIP, tmp / "warm", **{**run, "max_frames": 2})  # loads the model
                    timer.seconds = 0.0
                    result = runner.run_video_depth_anything(CLIP, tmp / f"out_{size}_{streaming}", **run)
                    total = result["elapsed_s"]
                    fps = result["frames"] / total
                    shares = (t_decode / total, timer.seconds / total)
                    ref = ratio = ""
                    if args.reference:
                        if precision not in reference:
                            reference[precision] = reference_fps(args.reference, decoded, size, streaming, fp32=precision == "fp32")
                        ref, ratio = f"{reference[precision]:.2f}", f"{fps / reference[precision]:.2f}x"
                    mode = "streaming" if streaming else "offline"
                    print(f"{size:>5} {mode:10} {precision:5} {backend:12} {fps:>9.2f} {shares[0]:>7.0%} {shares[1]:>8.0%} "
                          f"{1 - sum(shares):>6.0%} {ref:>10} {ratio:>6}")


if __name__ == "__main__":
    main()
