"""End-to-end frames per second on the shared clip, and where the time goes.

For each input size and mode: frames/s of `run_video_depth_anything` (decode, engine,
depth.ndjson), the share of that time spent decoding (a decode-only pass), in the network
(encoder and head calls, timed around them) and in the rest (frame transform, resizing to
frame size, alignment, writing). With `--reference DIR` (a checkout of the reference
implementation, which needs `einops` and `easydict`) it also times the reference on the
same decoded frames, weights and thread count, and prints our speed as a ratio of its.

Usage: python bench/bench_speed.py [--sizes 252,518] [--frames 70] [--threads 2] [--reference DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from parity_recipe import SHARED, recipe_state_dict, write_checkpoint  # noqa: E402

from annolid.depth import runner  # noqa: E402
from annolid.depth.io.source import VideoSource  # noqa: E402

CLIP = SHARED / "media" / "davis_rollercoaster.mp4"


class NetworkTimer:
    """Accumulates the seconds spent inside the model's encode and decode calls."""

    def __init__(self, model):
        self.seconds = 0.0
        for name in ("encode", "decode"):
            setattr(model, name, self._timed(getattr(model, name)))

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


def reference_fps(reference: Path, frames: list, size: int, streaming: bool) -> float:
    """The reference implementation on the same frames (its own I/O excluded)."""
    if "torchvision" not in sys.modules:  # it imports only Compose from torchvision
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")

        def compose(steps):
            def apply(sample):
                for step in steps:
                    sample = step(sample)
                return sample

            return apply

        tv.transforms.Compose = compose
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms})
    sys.path.insert(0, str(reference))
    module = "video_depth_anything.video_depth_stream" if streaming else "video_depth_anything.video_depth"
    cls = __import__(module, fromlist=["VideoDepthAnything"]).VideoDepthAnything
    model = cls(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
    model.load_state_dict(recipe_state_dict("vits"), strict=True)
    model.eval()
    start = time.perf_counter()
    if streaming:
        for frame in frames:
            model.infer_video_depth_one(frame, input_size=size, device="cpu", fp32=True)
    else:
        model.infer_video_depth(np.stack(frames), 24, input_size=size, device="cpu", fp32=True)
    return len(frames) / (time.perf_counter() - start)


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="252,518")
    parser.add_argument("--frames", type=int, default=70)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = write_checkpoint(tmp / "ckpt" / "video_depth_anything_vits.pth", "vits")
        model = runner.load_model(str(checkpoint), checkpoint.stat().st_mtime_ns, "vits", False, "cpu")
        timer = NetworkTimer(model)  # the runner's cached instance, so its calls are timed too
        t_decode, decoded = decode_seconds(args.frames)
        print(f"vits fp32, {args.threads} threads, {len(decoded)} frames of {CLIP.name} ({decoded[0].shape[1]}x{decoded[0].shape[0]})")
        print(f"{'size':>5} {'mode':10} {'frames/s':>9} {'decode':>7} {'network':>8} {'rest':>6} {'reference':>10} {'ratio':>6}")
        for size in map(int, args.sizes.split(",")):
            for streaming in (False, True):
                timer.seconds = 0.0
                result = runner.run_video_depth_anything(
                    CLIP, tmp / f"out_{size}_{streaming}", checkpoint_root=checkpoint.parent, input_size=size,
                    max_res=-1, max_frames=args.frames, streaming=streaming, fp32=True, device="cpu",
                )
                total = result["elapsed_s"]
                fps = result["frames"] / total
                shares = (t_decode / total, timer.seconds / total)
                ref = ratio = ""
                if args.reference:
                    ref_fps = reference_fps(args.reference, decoded, size, streaming)
                    ref, ratio = f"{ref_fps:.2f}", f"{fps / ref_fps:.2f}x"
                mode = "streaming" if streaming else "offline"
                print(
                    f"{size:>5} {mode:10} {fps:>9.2f} {shares[0]:>7.0%} {shares[1]:>8.0%} {1 - sum(shares):>6.0%} {ref:>10} {ratio:>6}"
                )


if __name__ == "__main__":
    main()
