"""`annolid-depth PATH [PATH ...]`: depth for videos and folders of videos from the command line;
`annolid-depth regions FOLDER`: a folder's region table, floor and plots rebuilt from its depth.ndjson.

Defaults come from the `video_depth_anything` section of ~/.labelmerc, so the command
line, the GUI and the settings file agree; every flag is generated from the options'
declarations in `settings.py`. The videos run as one batch (`batch.run_many`), here or on
a Ray cluster, and end with a summary table. Exit codes: 0 every video done, 1 any failed,
130 interrupted.

Ctrl-C (or SIGTERM, as sent by `timeout`, `docker stop` and job schedulers) stops after
the frames already computed and saves a resume point; a second one stops at once. Either
way `--resume` continues the run. On Ray, the first Ctrl-C stops the batch at once.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from .batch import CPUS_PER_WORKER, INSTALL_RAY, BatchInterrupted, read_list, run_many
from .errors import DepthError, require_opencv
from .io.run_folder import Status
from .progress import Rate, cost, expected, stage_text
from .settings import DEFAULT, FIELDS, OPTIONS, RUN_OPTIONS, DepthSettings, config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser(defaults: DepthSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annolid-depth",
        description="Per-frame depth for videos with Video Depth Anything. "
        f"Defaults come from the video_depth_anything section of {config_path()}.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="video files, or folders searched (with their subfolders) for video files")
    for name, option in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        kind, default = FIELDS[name], getattr(defaults, name)
        text = option.help.replace("%", "%%")
        if option.off:
            text += f"; 0 or -1: {option.off}"
        if name == "output_dir":
            default = None  # the runner applies the settings file's output_dir per video
            text = ("output folder: for a single video file, exactly this folder; for several, "
                    "<folder>/<video stem>/ (default: the settings file's output_dir/<stem>, else next to the video)")
        elif default not in ("", None):
            text += f" (default: {str(default).lower() if kind is bool else default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            choices = [value for value, _ in option.choices if value] or None
            parser.add_argument(flag, type=kind, choices=choices, default=default, help=text)
    parser.add_argument("--resume", action="store_true",
                        help="continue an unfinished run in the output folder; a complete one with the same "
                        "video and settings is kept as is and skipped without loading the model")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    batch = parser.add_argument_group("batches")
    batch.add_argument("--from-list", metavar="FILE", action="append", default=[],
                       help="a text file of video or folder paths, one a line (relative to the file's folder)")
    batch.add_argument("--report", metavar="FILE", help="append one JSON line per video to FILE as each ends")
    batch.add_argument("--ray", metavar="ADDRESS",
                       help="run the videos on a Ray cluster: auto, ray://HOST:PORT, HOST:PORT or local "
                       f"(needs {INSTALL_RAY}; every node must see the videos and output folders)")
    batch.add_argument("--gpus-per-worker", type=float, metavar="N", help="GPUs per Ray worker (default on GPU clusters: 1)")
    batch.add_argument("--cpus-per-worker", type=float, metavar="N",
                       help=f"CPUs per Ray worker (default on CPU clusters: {CPUS_PER_WORKER}, at most a node's CPUs)")
    return parser


def say(text: str) -> None:
    print(f"annolid-depth: {text}", file=sys.stderr, flush=True)


class ProgressBar:
    """One video's progress: on a CPU a line with what the run costs and what makes it
    faster, the model's load as a line of its own, then a tqdm bar from the first computed
    frame on, with frames/s and the time left from this run's frames after the first group
    (`progress.Rate`; a resumed run's earlier frames and the model's warm-up not counted)."""

    KNOWN = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
    UNKNOWN = "{desc}: {n_fmt} frames [{elapsed}{postfix}]"

    def __init__(self, video: Path, quiet: bool, clock=time.monotonic):
        self.video, self.quiet, self.bar = video, quiet, None
        self.rate, self.on_cpu, self.told = Rate(clock), False, False

    def __call__(self, payload: dict) -> None:
        if "stage" in payload:
            self.stage(payload)
            return
        self.rate.update(payload)
        if self.quiet:
            return
        total = payload["frames_total"]
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.video.name, unit="frame", dynamic_ncols=True, initial=payload["frames_done"] - 1,
                            total=total, bar_format=self.UNKNOWN if total is None else self.KNOWN, postfix=self.rate.text())
        if total is not None and self.bar.total != total:
            self.bar.total, self.bar.bar_format = total, self.KNOWN
        self.bar.set_postfix_str(self.rate.text(), refresh=False)
        self.bar.update(payload["frames_done"] - self.bar.n)
        if self.on_cpu and not self.told and (line := expected(self.rate)) is not None:
            self.told = True
            self.bar.write(f"annolid-depth: {self.video.name}: {line}", file=sys.stderr)

    def stage(self, payload: dict) -> None:
        """The model is about to load: say what the run costs (on a CPU) and that it loads."""
        self.on_cpu = payload["device"] == "cpu"
        if self.quiet or payload["stage"] != "loading":
            return
        line = cost(payload)
        if line is not None:
            say(f"{self.video.name}: {line}")
        say(f"{self.video.name}: {stage_text(payload)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Interrupts:
    """SIGINT and SIGTERM: the first asks the run to stop after the frames already computed,
    the second stops it at once (KeyboardInterrupt)."""

    def __init__(self):
        self.stop = threading.Event()

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, *_):
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        print("\nannolid-depth: stopping after the frames already computed (again to stop at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class BatchBars:
    """One progress bar per video of a batch, each closed when the next video starts."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar = quiet, None

    def __call__(self, number: int, video: Path, payload: dict | None) -> None:
        if payload is None:  # the next video starts
            self.close()
            self.bar = ProgressBar(video, self.quiet)
        else:
            self.bar(payload)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def summary(records: list[dict]) -> str:
    """The table printed after a batch: video, status, frames, seconds, output folder. A
    failure's error was printed as it happened (`announce`), so the table does not repeat
    it; the note of another status (a cancel's) is cut to its first line to keep the layout."""
    rows = [("video", "status", "frames", "seconds", "output folder")]
    for entry in records:
        where = "(error above)" if entry["status"] == Status.FAILED else entry["output_dir"] or ""
        if entry["error"] and entry["status"] != Status.FAILED:
            where = f"{where} ({first_line(entry['error'])})"
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


def announce(entry: dict, bars: BatchBars | None) -> None:
    """Failures on stderr as they happen; on Ray, which shows no bars, every video as it ends."""
    if entry["status"] == Status.FAILED:
        if bars is not None:
            bars.close()
        print(f"annolid-depth: {entry['path']}: {entry['error']}", file=sys.stderr)
    elif bars is None:
        print(f"annolid-depth: {entry['path']}: {entry['status']}, {entry['frames']} frames", file=sys.stderr)


def where_to_look(records: list[dict], depth_video: bool) -> str | None:
    """Where a completed run's depth is and how to see it (None when no video completed)."""
    done = [entry for entry in records if entry["status"] == Status.COMPLETE and entry["output_dir"]]
    if not done:
        return None
    if len(done) > 1:
        folder, video = "each output folder", "VIDEO"
    else:
        folder, video = done[0]["output_dir"], done[0]["path"]
    text = f"the depth is in {folder}/depth.ndjson (run.json describes the run); see it with annolid-depth-gui {video}"
    if depth_video:
        return f"{text}, or in the depth video {folder}/{Path(done[0]['path']).stem + '_vis.mp4' if len(done) == 1 else '<stem>_vis.mp4'}"
    return f"{text}, or add --save-depth-video for a depth video beside it"


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line for the user (the message says what and why), not Python's two
    lines with the source file and the code that raised it."""
    print(f"annolid-depth: warning: {message}", file=sys.stderr if file is None else file)


def regions_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annolid-depth regions",
        description="Rebuild depth_regions.csv, depth_floor.json, depth_regions.png and depth_paths.png in FOLDER from "
        "its depth.ndjson and the video's current annotations, without the network (a folder of this package's run, "
        "or of Annolid's own depth run). To run depth on a video or folder named 'regions', write ./regions.",
    )
    parser.add_argument("folder", metavar="FOLDER", help="the output folder holding depth.ndjson")
    parser.add_argument("--video", metavar="V", help="the video whose depth FOLDER holds (default: the one its run.json "
                        "names, else the records' video beside FOLDER); another video is refused")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--metric", dest="metric", action="store_const", const=True,
                      help="the records hold metres (a metric model); needed for records that do not say, as Annolid's")
    kind.add_argument("--relative", dest="metric", action="store_const", const=False,
                      help="the records hold relative disparity (a relative model)")
    for axis in "xy":
        parser.add_argument(f"--focal-length-{axis}", type=float, metavar="F",
                            help=f"focal length {axis} in pixels (default: the run's, else {getattr(DEFAULT, 'focal_length_' + axis)})")
    return parser


def regions_main(argv: list[str]) -> int:
    """`annolid-depth regions FOLDER`: the region outputs rebuilt; each path written, one a line."""
    args = regions_parser().parse_args(argv)
    from .recompute import recompute_region_stats

    try:
        paths = recompute_region_stats(args.folder, args.video, metric=args.metric,
                                       focal_length_x=args.focal_length_x, focal_length_y=args.focal_length_y)
    except (DepthError, ValueError, OSError) as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(paths.values()))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    warnings.showwarning = show_warning
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["regions"]:
        return regions_main(argv[1:])
    try:
        defaults = load_settings()
    except ValueError as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED
    args = build_parser(defaults).parse_args(argv)
    if not args.paths and not args.from_list:
        print("annolid-depth: give at least one video or folder (or --from-list FILE)", file=sys.stderr)
        return EXIT_USAGE
    try:
        require_opencv()
    except ImportError as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED

    from .engine import reuse_freed_memory  # torch loads only once the arguments parse

    options = {name: getattr(args, name) for name in RUN_OPTIONS}
    here = args.ray is None
    bars = BatchBars(args.quiet) if here else None
    interrupted = False
    # this process is ours: tune its allocator (on Ray, the workers do)
    with Interrupts() if here else contextlib.nullcontext() as interrupts, reuse_freed_memory():
        try:
            paths = [*args.paths, *(p for name in args.from_list for p in read_list(name))]
            records = run_many(
                paths, output_dir=args.output_dir, resume=args.resume, report=args.report, ray_address=args.ray,
                gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker, progress=bars,
                should_cancel=interrupts.stop.is_set if here else None,
                on_record=lambda entry: announce(entry, bars), **options,
            )
        except BatchInterrupted as stop:
            records, interrupted = stop.records, True
        except (DepthError, ValueError) as exc:
            print(f"annolid-depth: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            if bars is not None:
                bars.close()
    print(summary(records))
    if not args.quiet and (line := where_to_look(records, args.save_depth_video)) is not None:
        say(line)
    if interrupted or any(entry["status"] == Status.CANCELLED for entry in records):
        print("annolid-depth: interrupted; run again with --resume to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(entry["status"] in (Status.COMPLETE, Status.SKIPPED) for entry in records) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
