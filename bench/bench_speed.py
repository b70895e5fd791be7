"""End-to-end frames per second on the shared clip, and where the time goes.

For each input size, mode, precision (fp32; bf16 where the CPU has bf16 arithmetic) and
backend (torch and the installed compiled runtimes, side by side): frames/s of
`run_video_depth_anything` (decode, engine, depth.ndjson), the share of that
time spent decoding (a decode-only pass), in the network (encoder and head calls, timed
around them), in the rest (frame transform, resizing to frame size, alignment, writing), and
(part of the rest) on the network's thread for resume points (their files are written beside it).
With `--reference DIR` (a checkout of the reference implementation, which needs `einops`
and `easydict`) it also times the reference in FP32 on the same decoded frames, weights and
thread count, and prints our speed in each precision as a ratio of its. A reduced-precision
run's error is given against the FP32 run of the same backend (max_rel: the largest
difference over the FP32 depth range, per frame; rel_l2 over the whole depth).

Each case is timed on its second run in the process: the first, on the same frames, loads the
model, exports a compiled backend's graphs and lets a runtime prepare each input shape once
(OpenVINO's first call at a new shape takes a fraction of a second more).

Usage: python bench/bench_speed.py [--sizes 252,518] [--frames 70] [--threads 2] [--backends torch,openvino]
                                   [--precisions fp32,bf16] [--reference DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from bench_model import backend_cases  # noqa: E402
from parity_recipe import SHARED, write_checkpoint  # noqa: E402
from reference import reference_fps  # noqa: E402

from annolid_depth import runner  # noqa: E402
from annolid_depth.engine.backends import RUNTIMES, CompiledModel, installed, pick_backend  # noqa: E402
from annolid_depth.engine.device import cpu_runs_bf16, reuse_freed_memory  # noqa: E402
from annolid_depth.engine.fastest import cpu_name  # noqa: E402
from annolid_depth.io.records import decode_depth, iter_records  # noqa: E402
from annolid_depth.io.source import VideoSource  # noqa: E402
from annolid_depth.model import VideoDepthAnything  # noqa: E402

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


def depth_of(result: dict) -> np.ndarray:
    return np.stack([decode_depth(record) for record in iter_records(result["depth_ndjson"][0])])


def error(depth: np.ndarray, fp32: np.ndarray) -> str:
    a, b = depth.astype(np.float64), fp32.astype(np.float64)
    max_rel = (np.abs(a - b).max(axis=(1, 2)) / (b.max(axis=(1, 2)) - b.min(axis=(1, 2)))).max()
    return f"max_rel {max_rel:.1e}, rel_l2 {np.linalg.norm(a - b) / np.linalg.norm(b):.1e}"


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="252,518")
    parser.add_argument("--frames", type=int, default=70)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default=",".join(["torch", *(r for r in RUNTIMES if installed(r))]))
    parser.add_argument("--precisions", default="fp32,bf16", help="bf16 runs only where the CPU has bf16 arithmetic")
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp, reuse_freed_memory():  # as the CLI runs
        tmp = Path(tmp)
        checkpoint = write_checkpoint(tmp / "ckpt" / "video_depth_anything_vits.pth", "vits")
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # graphs of this temporary checkpoint
        timer = NetworkTimer()
        t_decode, decoded = decode_seconds(args.frames)
        precisions = [p for p in args.precisions.split(",") if p == "fp32" or cpu_runs_bf16()]
        cases = backend_cases(args.backends.split(","), precisions)
        print(f"{cpu_name()}; vits, {args.threads} threads, {len(decoded)} frames of {CLIP.name} ({decoded[0].shape[1]}x{decoded[0].shape[0]}), end to end")
        print("the default backend (auto) takes: " + ", ".join(f"{p} {pick_backend('auto', torch.device('cpu'), p)}" for p in precisions))
        print(f"{'size':>5} {'mode':10} {'prec':5} {'backend':12} {'frames/s':>9} {'decode':>7} {'network':>8} {'rest':>6} "
              f"{'resume':>7} {'ref fp32':>9} {'ratio':>6}  error against fp32")
        for size in map(int, args.sizes.split(",")):
            for streaming in (False, True):
                reference = reference_fps(args.reference, decoded, size, streaming) if args.reference else None
                fp32_depth = {}
                for precision, backend in cases:
                    run = dict(checkpoint_root=checkpoint.parent, input_size=size, max_res=-1, max_frames=args.frames,
                               streaming=streaming, precision=precision, device="cpu", backend=backend)
                    folder = tmp / f"out_{size}_{streaming}_{precision}_{backend}"
                    runner.run_video_depth_anything(CLIP, folder, **run)  # loads the model, prepares each shape
                    timer.seconds = 0.0
                    result = runner.run_video_depth_anything(CLIP, folder, **run)
                    total = result["elapsed_s"]
                    fps = result["frames"] / total
                    shares = (t_decode / total, timer.seconds / total)
                    resume = result["resume_points_s"] / total  # the network thread's time on resume points
                    ref = f"{reference:.2f}" if reference else ""
                    ratio = f"{fps / reference:.2f}x" if reference else ""
                    depth = depth_of(result)
                    if precision == "fp32":
                        fp32_depth[backend] = depth
                    off = error(depth, fp32_depth[backend]) if precision != "fp32" and backend in fp32_depth else ""
                    mode = "streaming" if streaming else "offline"
                    print(f"{size:>5} {mode:10} {precision:5} {backend:12} {fps:>9.2f} {shares[0]:>7.0%} {shares[1]:>8.0%} "
                          f"{1 - sum(shares):>6.0%} {resume:>7.1%} {ref:>9} {ratio:>6}  {off}")


if __name__ == "__main__":
    main()
