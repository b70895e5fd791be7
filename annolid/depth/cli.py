"""`annolid-depth PATH [PATH ...]`: depth for videos and folders of videos from the command line.

Defaults come from the `video_depth_anything` section of ~/.labelmerc, so the command
line, the GUI and the settings file agree. The videos run as one batch (`batch.run_many`),
here or on a Ray cluster, and end with a summary table. Exit codes: 0 every video done,
1 any failed, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from .batch import COMPLETE, CPUS_PER_WORKER, FAILED, INSTALL_RAY, SKIPPED, BatchInterrupted, read_list, run_many
from .errors import DepthError
from .settings import ENCODERS, POINT_CLOUD_FORMATS, PRECISIONS, DepthSettings, config_path, load_settings

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
}
CHOICES = {"encoder": list(ENCODERS), "point_cloud_format": list(POINT_CLOUD_FORMATS), "precision": list(PRECISIONS)}


def build_parser(defaults: DepthSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annolid-depth",
        description="Per-frame depth for videos with Video Depth Anything. "
        f"Defaults come from the video_depth_anything section of {config_path()}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="video files, or folders searched (with their subfolders) for video files")
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
    batch = parser.add_argument_group("batches")
    batch.add_argument("--from-list", metavar="FILE", action="append", default=[],
                       help="a text file of video or folder paths, one a line (relative to the file's folder)")
    batch.add_argument("--report", metavar="FILE", help="append one JSON line per video to FILE as each ends")
    batch.add_argument("--resume", action="store_true",
                       help="skip videos whose folder holds a complete run with these settings; continue unfinished ones")
    batch.add_argument("--ray", metavar="ADDRESS",
                       help="run the videos on a Ray cluster: auto, ray://HOST:PORT, HOST:PORT or local "
                       f"(needs {INSTALL_RAY}; every node must see the videos and output folders)")
    batch.add_argument("--gpus-per-worker", type=float, metavar="N", help="GPUs per Ray worker (default on GPU clusters: 1)")
    batch.add_argument("--cpus-per-worker", type=float, metavar="N",
                       help=f"CPUs per Ray worker (default on CPU clusters: {CPUS_PER_WORKER}, at most a node's CPUs)")
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


class BatchBars:
    """One progress bar per video of a batch, each closed when the next video starts."""

    def __init__(self, quiet: bool):
        self.quiet, self.number, self.bar, self.update = quiet, None, None, None

    def __call__(self, number: int, video: Path, done: int, total: int | None) -> None:
        if number != self.number:
            self.close()
            self.number = number
            self.bar, self.update = progress_bar(video, self.quiet)
        self.update(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def summary(records: list[dict]) -> str:
    """The table printed after a batch: video, status, frames, seconds, output folder or error."""
    rows = [("video", "status", "frames", "seconds", "output folder or error")]
    for entry in records:
        where = entry["error"] if entry["status"] == FAILED else entry["output_dir"] or ""
        if entry["error"] and entry["status"] != FAILED:
            where = f"{where} ({entry['error']})"
        frames = "" if entry["frames"] is None else str(entry["frames"])
        seconds = "" if entry["seconds"] is None else f"{entry['seconds']:.1f}"
        rows.append((entry["path"], entry["status"], frames, seconds, where))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}  {row[4]}"
        for row in rows
    ]
    counts: dict[str, int] = {}
    for entry in records:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        defaults = load_settings()
    except ValueError as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED
    args = build_parser(defaults).parse_args(argv)

    if not args.paths and not args.from_list:
        print("annolid-depth: give at least one video or folder (or --from-list FILE)", file=sys.stderr)
        return EXIT_USAGE
    options = {f.name: getattr(args, f.name) for f in fields(DepthSettings)}
    output_root = options.pop("output_dir")
    options = {k: (v if v != "" else None) for k, v in options.items()}
    bars = BatchBars(args.quiet) if args.ray is None else None
    try:
        paths = [*args.paths, *(p for name in args.from_list for p in read_list(name))]
        records = run_many(
            paths, output_dir=output_root, resume=args.resume, report=args.report, ray_address=args.ray,
            gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker, progress=bars,
            on_record=lambda entry: announce(entry, bars), **options,
        )
    except BatchInterrupted as stop:
        if bars is not None:
            bars.close()
        print(summary(stop.records))
        print("annolid-depth: interrupted; the frames written so far are kept (--resume continues)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (DepthError, ValueError) as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if bars is not None:
            bars.close()
    print(summary(records))
    return EXIT_OK if all(entry["status"] in (COMPLETE, SKIPPED) for entry in records) else EXIT_FAILED


def announce(entry: dict, bars: BatchBars | None) -> None:
    """Failures on stderr as they happen; on Ray, which shows no bars, every video as it ends."""
    if entry["status"] == FAILED:
        if bars is not None:
            bars.close()
        print(f"annolid-depth: {entry['path']}: {entry['error']}", file=sys.stderr)
    elif bars is None:
        print(f"annolid-depth: {entry['path']}: {entry['status']}, {entry['frames']} frames", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
