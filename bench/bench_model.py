"""The network on this machine: size, work per frame, speed, and how close to the cores it runs.

Prints, per encoder: parameters, FLOPs per frame (counted by torch's flop counter) at
518 x 518, forward seconds per frame over a window (32 frames for vits, fewer for the
larger encoders, to keep the run to minutes on a laptop CPU), and the achieved GFLOP/s as a share
of a large FP32 matrix product timed in the same process (the machine's practical peak).
Then the same for a 16:9 clip at 518 (the default input), and the error of bf16 autocast
against FP32 on the shared parity fixture.

Usage: python bench/bench_model.py [--encoders vits,vitb,vitl] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from parity_recipe import PARITY, recipe_state_dict  # noqa: E402

from annolid.depth.engine import autocast, streaming_depth  # noqa: E402
from annolid.depth.engine.device import cpu_runs_bf16  # noqa: E402
from annolid.depth.model import VideoDepthAnything  # noqa: E402


def matmul_gflops(n: int = 2048, dtype=torch.float32, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def model(encoder: str) -> VideoDepthAnything:
    net = VideoDepthAnything(encoder)
    net.load_state_dict(recipe_state_dict(encoder), strict=True)
    return net.eval()


def flops_per_frame(net, frames: int, h: int, w: int) -> float:
    x = torch.randn(1, frames, 3, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() / frames


def seconds_per_frame(net, frames: int, h: int, w: int, precision: str = "fp32") -> float:
    x = torch.randn(1, frames, 3, h, w)
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        net(x[:, :2])  # warm-up
        return _timed(lambda: net(x)) / frames


def bf16_error() -> str:
    fixture = PARITY / "vits_stream.npz"
    if not fixture.exists():
        return "skipped (no parity fixtures)"
    z = np.load(fixture)
    net = model("vits")
    frames = list(enumerate(z["frames"][:8]))
    exact = np.stack([d for _, _, d in streaming_depth(net, frames, int(z["input_size"]))])
    fast = np.stack([d for _, _, d in streaming_depth(net, frames, int(z["input_size"]), precision="bf16")])
    max_rel = np.abs(fast - exact).max() / (exact.max() - exact.min())
    rel_l2 = np.linalg.norm(fast - exact) / np.linalg.norm(exact)
    return f"max_rel {max_rel:.2e}, rel_l2 {rel_l2:.2e} (8 streamed fixture frames)"


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoders", default="vits,vitb,vitl")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_gflops()
    peak_bf16 = matmul_gflops(512, torch.bfloat16, repeats=2)
    print(f"torch {torch.__version__}, {args.threads} threads; matmul fp32 (2048^3) {peak:.0f} GFLOP/s, "
          f"bf16 (512^3) {peak_bf16:.1f} GFLOP/s; CPU bf16 arithmetic: {'yes' if cpu_runs_bf16() else 'no (emulated)'}\n")
    print(f"{'encoder':8} {'input':>9} {'frames':>6} {'params':>8} {'GFLOP/frame':>12} {'s/frame':>8} {'GFLOP/s':>8} {'of peak':>8}")
    cases = []
    for encoder in args.encoders.split(","):
        frames = {"vits": 32, "vitb": 16, "vitl": 4}.get(encoder, 8)  # shorter windows keep the run short
        cases.append((encoder, 518, 518, frames))
    cases.append(("vits", 518, 924, 16))  # the default input for a 16:9 video
    for encoder, h, w, frames in cases:
        net = model(encoder)
        params = sum(p.numel() for p in net.parameters())
        flops = flops_per_frame(net, min(frames, 4), h, w)  # per frame, near enough independent of T
        spf = seconds_per_frame(net, frames, h, w)
        rate = flops / spf / 1e9
        print(
            f"{encoder:8} {h:>4}x{w:<4} {frames:>6} {params / 1e6:>7.1f}M {flops / 1e9:>12.1f} {spf:>8.2f} {rate:>8.0f} {rate / peak:>8.0%}"
        )
    net = model("vits")
    frames = 8 if cpu_runs_bf16() else 2  # emulated bf16 is slow: time a short clip
    spf_bf16 = seconds_per_frame(net, frames, 252, 448, "bf16")
    spf = seconds_per_frame(net, frames, 252, 448)
    print(f"\nvits 252x448 bf16 autocast: {spf_bf16:.2f} s/frame, {spf / spf_bf16:.2f}x the fp32 speed")
    print(f"bf16 error against fp32: {bf16_error()}")


if __name__ == "__main__":
    main()
