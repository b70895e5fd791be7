"""Peak memory must not grow with video length.

Generates a short and a ten-times-longer video of the same size, runs the whole pipeline
(`run_video_depth_anything`, depth.ndjson and npz on) on each in a fresh process per run,
and prints the peak resident memory of each run and the long/short ratio per mode. The
ratio must stay under 1.2.

Usage: python bench/bench_memory.py [--frames 300] [--input-size 56]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make_video(path: Path, frames: int, width: int = 192, height: int = 108) -> Path:
    """A moving gradient with some texture, so the encoder has something to look at."""
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            r = (x * 2 + i) % 256
            g = (y * 3 + 2 * i) % 256
            b = ((x ^ y) + i) % 256
            rgb = np.stack([r, g, b], axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


CHILD = """
import json, resource, sys
from annolid_depth import run_video_depth_anything
video, out, ckpt, streaming, size = sys.argv[1:6]
result = run_video_depth_anything(video, out, checkpoint_root=ckpt, streaming=streaming == "1",
                                  input_size=int(size), max_res=-1, save_npz=True)
print(json.dumps({"frames": result["frames"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": result["elapsed_s"]}))
"""


def run(video: Path, out: Path, checkpoints: Path, streaming: bool, input_size: int) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(video), str(out), str(checkpoints), "1" if streaming else "0", str(input_size)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--input-size", type=int, default=56)
    args = parser.parse_args()
    from parity_recipe import write_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoints = tmp / "checkpoints"
        write_checkpoint(checkpoints / "video_depth_anything_vits.pth", "vits")
        videos = {n: make_video(tmp / f"clip_{n}.mp4", n) for n in (args.frames, args.frames * 10)}
        print(f"vits, input size {args.input_size}, 192x108 frames, depth.ndjson + npz written\n")
        print(f"{'mode':10} {'frames':>7} {'peak RSS MB':>12} {'seconds':>8} {'ratio':>6}")
        for streaming in (True, False):
            mode = "streaming" if streaming else "offline"
            peaks = []
            for n, video in videos.items():
                r = run(video, tmp / f"out_{mode}_{n}", checkpoints, streaming, args.input_size)
                peaks.append(r["peak_mb"])
                ratio = f"{peaks[-1] / peaks[0]:.3f}" if len(peaks) > 1 else ""
                print(f"{mode:10} {r['frames']:>7} {r['peak_mb']:>12.0f} {r['seconds']:>8.1f} {ratio:>6}")


if __name__ == "__main__":
    main()
