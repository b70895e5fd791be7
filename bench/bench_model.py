"""The network alone: how fast each engine turns decoded frames into depth on each backend
(torch and the installed compiled runtimes, side by side), how much work that is, how close
to the cores it runs, and what reduced precision costs in accuracy.

For each input size, mode and precision the engine runs on the shared clip's 16:9 frames
held in memory: no decoding and no writing, but the frame transform and the resize to frame
size, as in a run. Printed per case: frames/s; FLOPs per frame, counted by torch's flop
counter over the same frames (with CPU attention, which torch's table leaves out); the
achieved GFLOP/s and its share of the fastest large matrix product of the same precision
that any installed runtime (torch, OpenVINO) runs in this process; the same for the encoder
alone (8 images a call). With --reference DIR the reference implementation runs on the same frames, weights,
threads and precision, our frames/s is given as a ratio of its, and the share of the matrix
product's speed the network would need to reach twice the reference's frames/s. Last, the error of each
precision against the shared parity fixtures (made by the reference in fp32), as the parity
README defines it, per backend. A compiled backend exports its graphs on first use (a minute
or two, not timed).

Usage: python bench/bench_model.py [--sizes 252,518] [--frames 70] [--threads 2] [--backends torch,openvino]
                                   [--reference DIR]
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
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from parity_recipe import PARITY, SHARED, write_checkpoint  # noqa: E402
from reference import reference_fps  # noqa: E402

from annolid_depth.engine import OfflineEngine, StreamingEngine, autocast, reuse_freed_memory  # noqa: E402
from annolid_depth.engine.backends import RUNTIMES, installed, pick_backend  # noqa: E402
from annolid_depth.engine.device import DTYPES, cpu_runs_bf16  # noqa: E402
from annolid_depth.engine.fastest import best_seconds, cpu_name, openvino_config  # noqa: E402
from annolid_depth.engine.loading import load_model  # noqa: E402
from annolid_depth.engine.transform import network_shape  # noqa: E402
from annolid_depth.io.source import VideoSource  # noqa: E402

CLIP = SHARED / "media" / "davis_rollercoaster.mp4"
ENGINES = {"offline": OfflineEngine, "streaming": StreamingEngine}


def cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """scores (q k^T) and output (attention v), as torch counts its GPU attention kernels."""
    b, h, q_len, d = query
    return 2 * b * h * q_len * key[-2] * (d + value[-1])


def counted_flops(fn) -> int:
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops}
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return counter.get_total_flops()


def matmul_call(runtime: str, precision: str, n: int):
    """One n x n x n matrix product in `runtime`, as it runs the network's (`precision`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    if runtime == "torch":
        a, b = a.to(DTYPES.get(precision, torch.float32)), b.to(DTYPES.get(precision, torch.float32))
        return lambda: a @ b
    import openvino as ov

    x = ov.opset13.parameter([n, n], ov.Type.f32)
    graph = ov.Model([ov.opset13.matmul(x, ov.opset13.constant(b.numpy()), False, False)], [x])
    compiled = ov.Core().compile_model(graph, "CPU", openvino_config(precision))
    inputs = a.numpy()
    return lambda: compiled(inputs)


def matmul_peaks(precisions: list[str], runtimes: list[str], n: int = 2048) -> dict[tuple[str, str], float]:
    """GFLOP/s of a large matrix product in each runtime and precision: the most any of them
    gets from this CPU, the bound the network's speed is measured against."""
    calls = {(runtime, precision): matmul_call(runtime, precision, n) for precision in precisions for runtime in runtimes
             if runtime == "torch" or (runtime == "openvino" and installed(runtime))}
    return {case: 2 * n**3 / seconds / 1e9 for case, seconds in best_seconds(calls).items()}


def encoder_fps(model, size: int, frame_shape: tuple[int, int], precision: str, images: int = 8) -> float:
    """Images per second through the encoder alone, `images` at a time (as the engines call
    it), best of `best_seconds`'s rounds."""
    batch = torch.randn(images, 3, *network_shape(*frame_shape, size))

    def encode():
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            model.encode(batch)

    return images / best_seconds({"encoder": encode})["encoder"]


def run_engine(model, mode: str, frames: list, size: int, precision: str) -> np.ndarray:
    with torch.no_grad(), reuse_freed_memory():
        return np.stack([d for _, _, d in ENGINES[mode](model, size, torch.device("cpu"), precision).run(enumerate(frames))])


def model_for(checkpoint: Path, precision: str, backend: str = "torch"):
    return load_model(str(checkpoint), checkpoint.stat().st_mtime_ns, "vits", False, "cpu", precision, backend)


def backend_cases(backends: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """(precision, backend) pairs this machine runs: each backend in each precision it takes."""
    cases = []
    for precision in precisions:
        for backend in backends:
            try:
                if pick_backend(backend, torch.device("cpu"), precision) == backend:
                    cases.append((precision, backend))
            except ValueError:  # e.g. ONNX Runtime in bf16
                pass
    return cases


def errors(a: np.ndarray, b: np.ndarray) -> str:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    max_rel = np.abs(a64 - b64).max() / (b64.max() - b64.min())
    return f"max_rel {max_rel:.1e}, rel_l2 {np.linalg.norm(a64 - b64) / np.linalg.norm(b64):.1e}"


def fixture_errors(checkpoint: Path, cases: list[tuple[str, str]]) -> None:
    if not PARITY.is_dir():
        print("\nparity fixtures not found: error table skipped")
        return
    print("\nerror against the parity fixtures (the reference in fp32)")
    for precision, backend in cases:
        model = model_for(checkpoint, precision, backend)
        line = []
        if backend == "torch":  # a compiled backend has no whole-clip forward
            z = np.load(PARITY / "vits_forward.npz")
            with torch.no_grad(), autocast(torch.device("cpu"), precision):
                forward = model(torch.from_numpy(z["x"])).float().numpy()
            line.append(f"forward {errors(forward, z['depth'])}")
        for mode, name in (("offline", "windows"), ("streaming", "stream")):
            z = np.load(PARITY / f"vits_{'offline' if mode == 'offline' else 'stream'}.npz")
            depth = run_engine(model, mode, list(z["frames"]), int(z["input_size"]), precision)
            line.append(f"{name} {errors(depth, z['depth'])}")
        print(f"  {precision} {backend}: " + "; ".join(line))


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
    precisions = ["fp32", "bf16"] if cpu_runs_bf16() else ["fp32"]
    cases = backend_cases(args.backends.split(","), precisions)

    with VideoSource(CLIP, max_frames=args.frames, max_res=-1) as source:
        frames = [rgb for _, rgb in source]
    matmuls = matmul_peaks(precisions, sorted({"torch", *args.backends.split(",")}))
    peaks = {p: max(g for (_, q), g in matmuls.items() if q == p) for p in precisions}
    print(f"{cpu_name()}; vits, torch {torch.__version__}, {args.threads} threads, {len(frames)} frames of {CLIP.name} "
          f"({frames[0].shape[1]}x{frames[0].shape[0]}), network alone")
    print("matmul 2048^3, GFLOP/s: " + ", ".join(f"{r} {p} {g:.0f}" for (r, p), g in matmuls.items())
          + "; 'of peak' is of the best in the precision"
          + ("" if cpu_runs_bf16() else "; this CPU has no bf16 arithmetic (bf16 not run)"))
    print("'2x ref needs': the share of that peak the whole network would need to run at twice the reference's frames/s")
    print(f"\n{'size':>5} {'mode':10} {'prec':5} {'backend':12} {'frames/s':>9} {'GFLOP/frame':>12} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'encoder':>8} {'of peak':>8} {'reference':>10} {'ratio':>6} {'2x ref needs':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp) / "video_depth_anything_vits.pth")
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # graphs of this temporary checkpoint
        for size in map(int, args.sizes.split(",")):
            encoder = {}  # GFLOP/s of the encoder alone per (precision, backend), the same in both modes
            probe = torch.randn(1, 3, *network_shape(*frames[0].shape[:2], size))
            with torch.no_grad():
                encoder_flops = counted_flops(lambda: model_for(checkpoint, "fp32").encode(probe))  # noqa: B023 (called in this iteration)
            for mode in ENGINES:
                torch_model = model_for(checkpoint, "fp32")  # the same work in every precision and backend
                flops = counted_flops(lambda: run_engine(torch_model, mode, frames, size, "fp32")) / len(frames)  # noqa: B023 (called in this iteration)
                reference = {}
                for precision, backend in cases:
                    model = model_for(checkpoint, precision, backend)
                    run_engine(model, mode, frames[:2], size, precision)  # warm-up
                    start = time.perf_counter()
                    run_engine(model, mode, frames, size, precision)
                    fps = len(frames) / (time.perf_counter() - start)
                    rate = flops * fps / 1e9
                    if (precision, backend) not in encoder:
                        encoder[precision, backend] = encoder_flops * encoder_fps(model, size, frames[0].shape[:2], precision) / 1e9
                    ref = ratio = needs = ""
                    if args.reference:
                        if precision not in reference:
                            reference[precision] = reference_fps(args.reference, frames, size, mode == "streaming", fp32=precision == "fp32")
                        ref, ratio = f"{reference[precision]:.2f}", f"{fps / reference[precision]:.2f}x"
                        needs = f"{2 * reference[precision] * flops / 1e9 / peaks[precision]:.0%}"
                    print(f"{size:>5} {mode:10} {precision:5} {backend:12} {fps:>9.2f} {flops / 1e9:>12.1f} {rate:>8.0f} "
                          f"{rate / peaks[precision]:>8.0%} {encoder[precision, backend]:>8.0f} {encoder[precision, backend] / peaks[precision]:>8.0%} {ref:>10} {ratio:>6} {needs:>13}")
        fixture_errors(checkpoint, cases)


if __name__ == "__main__":
    main()
