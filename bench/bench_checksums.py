"""What checking the compiled-graph cache costs: the time to verify an export's graphs against
`export.json` (once per model load on a compiled backend) and OpenVINO's compiled blobs against
`verified.json` (once per compile), for an export of the recipe's weights (the files just
written, so read from the page cache, as a run that exported or compiled recently reads them);
and, at the rate measured, the estimate for a larger model (by default vitl) whose graphs are
only sized: its float32 weights times the exported model's ratio of graph bytes to weights.

Usage: python bench/bench_checksums.py [--encoder vits] [--estimate vitl] [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from bench_point_cloud import best_of  # noqa: E402  (this folder is the script's)
from parity_recipe import write_checkpoint  # noqa: E402

from annolid_depth.engine.artefacts import CompiledFiles, graph_digests, verify_graphs  # noqa: E402
from annolid_depth.engine.backends import RUNTIMES, installed  # noqa: E402
from annolid_depth.engine.graphs import export_onnx  # noqa: E402
from annolid_depth.engine.loading import load_model  # noqa: E402
from annolid_depth.model import VideoDepthAnything  # noqa: E402


def folder_bytes(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def weight_bytes(model) -> int:
    return sum(p.numel() * 4 for p in model.parameters())


def sha256_rate(repeat: int) -> float:
    """Bytes a second SHA-256 takes in, on 256 MB in memory."""
    data = bytes(256 << 20)
    return len(data) / best_of(lambda: hashlib.sha256(data).digest(), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="vits")
    parser.add_argument("--estimate", default="vitl")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp) / f"video_depth_anything_{args.encoder}.pth", args.encoder)
        model = load_model(str(checkpoint), checkpoint.stat().st_mtime_ns, args.encoder, False, "cpu")
        folder = Path(tmp) / "onnx"
        spec = export_onnx(model, folder, checkpoint)
        graphs = sorted(folder.glob("*.onnx"))
        seconds = best_of(lambda: verify_graphs(folder, spec, "export again"), args.repeat)
        size = folder_bytes(graphs)
        print(f"{args.encoder}: the four graphs, {size / 1e6:.0f} MB, verified in {seconds:.3f} s ({size / seconds / 1e9:.2f} GB/s)")
        if installed("openvino") and "openvino" in RUNTIMES:
            from annolid_depth.engine.backends import OpenVinoGraphs

            OpenVinoGraphs(folder, "fp32")  # compiles and seals
            compiled = CompiledFiles(folder / "openvino" / "fp32", graph_digests(folder))
            seconds = best_of(compiled.usable, args.repeat)
            size = folder_bytes(compiled.folder.glob("*.blob"))
            print(f"{args.encoder}: OpenVINO's fp32 blobs, {size / 1e6:.0f} MB, verified in {seconds:.3f} s")
        ratio = folder_bytes(graphs) / weight_bytes(model)
    rate = sha256_rate(args.repeat)
    estimated = weight_bytes(VideoDepthAnything(args.estimate)) * ratio
    print(f"SHA-256 in memory: {rate / 1e9:.2f} GB/s; {args.estimate}: graphs of about {estimated / 1e9:.2f} GB, "
          f"verified in about {estimated / rate:.1f} s, and about as long for its fp32 blobs")


if __name__ == "__main__":
    main()
