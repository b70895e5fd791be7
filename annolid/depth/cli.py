"""`annolid-depth VIDEO [VIDEO ...]`: depth for videos from the command line.

Defaults come from the `video_depth_anything` section of ~/.labelmerc, so the command
line, the GUI and the settings file agree. Exit codes: 0 done, 1 failed, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from .errors import DepthError
from .settings import BACKENDS, ENCODERS, POINT_CLOUD_FORMATS, PRECISIONS, DepthSettings, config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

HELP = {
    "encoder": "model size: vits (fast), vitb, vitl (best)",
    "metric": "use the metric checkpoints (depth in metres) instead of relative disparity",
    "input_size": "network input size for the short side, a multiple of 14",
    "max_res": "downscale frames so the longer side is at most this many pixels (-1: never)",
    "target_fps": "process this many frames per second of video (-1: every frame)",
    "max_frames": "stop after this many processed frames (-1: all)",
    "streaming": "streaming mode (one frame at a time) instead of 32-frame windows",
    "fp32": "force FP32 on GPUs (default there: FP16)",
    "precision": "fp32, bf16 (CPUs with AVX512-BF16 or AMX: about twice as fast, about 1%% of the depth "
    "range off) or fp16 (GPUs); default: fp32 on CPUs, fp16 on GPUs",
    "grayscale": "grayscale instead of the inferno colour map for the depth video and frames",
    "save_depth_video": "write <stem>_vis.mp4",
    "save_depth_frames": "write depth_frames/depth_NNNNN.png",
    "save_point_clouds": "write point_clouds/point_NNNN.csv (or .ply)",
    "point_cloud_format": "point cloud file format",
    "save_npz": "write <stem>_depths.npz",
    "save_exr": "write <stem>_depths_exr/ (needs the OpenEXR package)",
    "include_region_labels": "label point cloud points with LabelMe polygons from <video folder>/<stem>/",
    "output_dir": "output folder for one video; with several videos, one subfolder per video stem "
    "(default: next to the video, named after its stem, or <video_depth_anything.output_dir>/<stem>)",
    "focal_length_x": "focal length in pixels for point clouds",
    "focal_length_y": "focal length in pixels for point clouds",
    "checkpoint_root": "folder with the .pth checkpoints (default: the package's checkpoints folder)",
    "device": "cpu, cuda, cuda:N or mps (default: cuda, then mps, then cpu)",
    "backend": "what runs the network: torch, or on a CPU a compiled runtime (onnxruntime, openvino: "
    "pip install 'annolid-depth[onnx]' or '[openvino]'; exported once, then cached); auto: the fastest installed",
}
CHOICES = {"encoder": list(ENCODERS), "point_cloud_format": list(POINT_CLOUD_FORMATS), "precision": list(PRECISIONS), "backend": list(BACKENDS)}


def build_parser(defaults: DepthSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annolid-depth",
        description="Per-frame depth for videos with Video Depth Anything. "
        f"Defaults come from the video_depth_anything section of {config_path()}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to process")
    for field in fields(DepthSettings):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        kwargs = {"default": default, "help": HELP[field.name]}
        if field.name == "output_dir":
            kwargs["default"] = None  # the runner applies the settings file's output_dir per video
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            kind = {"target_fps": float, "focal_length_x": float, "focal_length_y": float}.get(field.name, type(default))
            parser.add_argument(flag, type=kind, choices=CHOICES.get(field.name), **kwargs)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def progress_bar(video: Path, quiet: bool):
    """A tqdm bar with frames/s and ETA, fed by the runner's progress callback."""
    from tqdm import tqdm

    bar = tqdm(desc=video.name, unit="frame", disable=quiet, dynamic_ncols=True)

    def update(done: int, total: int | None) -> None:
        if total is not None and bar.total != max(total, done):
            bar.total = max(total, done)
        bar.update(done - bar.n)

    return bar, update


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        defaults = load_settings()
    except ValueError as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED
    args = build_parser(defaults).parse_args(argv)

    from .runner import run_video_depth_anything  # torch loads only once the arguments parse

    options = {f.name: getattr(args, f.name) for f in fields(DepthSettings)}
    output_root = options.pop("output_dir")
    options = {k: (v if v != "" else None) for k, v in options.items()}
    status = EXIT_OK
    for name in args.videos:
        video = Path(name)
        out = None
        if output_root:
            out = Path(output_root) / video.stem if len(args.videos) > 1 else Path(output_root)
        bar, update = progress_bar(video, args.quiet)
        try:
            result = run_video_depth_anything(
                video, out, progress_callback=update, **options
            )
        except KeyboardInterrupt:
            bar.close()
            print("annolid-depth: interrupted; the frames written so far are kept", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (DepthError, ValueError) as exc:
            bar.close()
            print(f"annolid-depth: {video}: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        bar.close()
        print(f"{video}: {result['frames']} frames -> {result['output_dir']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
