"""`annolid-depth VIDEO [VIDEO ...]`: depth for videos from the command line.

Defaults come from the `video_depth_anything` section of ~/.labelmerc, so the command
line, the GUI and the settings file agree; every flag is generated from the options'
declarations in `settings.py`. Exit codes: 0 done, 1 failed, 130 interrupted.

Ctrl-C (or SIGTERM, as sent by `timeout`, `docker stop` and job schedulers) stops after
the frames already computed and saves a resume point; a second one stops at once. Either
way `--resume` continues the run.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .errors import DepthError
from .settings import FIELDS, OPTIONS, DepthSettings, config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser(defaults: DepthSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annolid-depth",
        description="Per-frame depth for videos with Video Depth Anything. "
        f"Defaults come from the video_depth_anything section of {config_path()}.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to process")
    for name, option in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        kind, default = FIELDS[name], getattr(defaults, name)
        text = option.help.replace("%", "%%")
        if option.off:
            text += f"; 0 or -1: {option.off}"
        if name == "output_dir":
            default = None  # the runner applies the settings file's output_dir per video
        elif default not in ("", None):
            text += f" (default: {str(default).lower() if kind is bool else default})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            choices = [value for value, _ in option.choices if value] or None
            parser.add_argument(flag, type=kind, choices=choices, default=default, help=text)
    parser.add_argument("--resume", action="store_true",
                        help="continue an unfinished run in the output folder (a complete one is kept as is)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class ProgressBar:
    """A tqdm bar with frames/s and ETA, shown from the first processed frame on."""

    def __init__(self, video: Path, quiet: bool):
        self.video, self.quiet, self.bar = video, quiet, None

    def __call__(self, payload: dict) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.video.name, unit="frame", dynamic_ncols=True, initial=payload["frames_done"] - 1)
        total = payload["frames_total"]
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(payload["frames_done"] - self.bar.n)

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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        defaults = load_settings()
    except ValueError as exc:
        print(f"annolid-depth: {exc}", file=sys.stderr)
        return EXIT_FAILED
    args = build_parser(defaults).parse_args(argv)

    from .engine import reuse_freed_memory  # torch loads only once the arguments parse
    from .runner import run_video_depth_anything

    options = {name: getattr(args, name) for name in OPTIONS}
    output_root = options.pop("output_dir")
    options = {k: (v if v != "" else None) for k, v in options.items()}
    status = EXIT_OK
    with Interrupts() as interrupts, reuse_freed_memory():  # this process is ours: tune its allocator
        for name in args.videos:
            video = Path(name)
            out = None
            if output_root:
                out = Path(output_root) / video.stem if len(args.videos) > 1 else Path(output_root)
            bar = ProgressBar(video, args.quiet)
            try:
                result = run_video_depth_anything(video, out, frame_callback=bar, stop_event=interrupts.stop,
                                                  resume=args.resume, **options)
            except KeyboardInterrupt:
                bar.close()
                print("annolid-depth: interrupted; run again with --resume to go on", file=sys.stderr)
                return EXIT_INTERRUPTED
            except (DepthError, ValueError) as exc:
                bar.close()
                print(f"annolid-depth: {video}: {exc}", file=sys.stderr)
                status = EXIT_FAILED
                continue
            bar.close()
            where = result["output_dir"][0]
            if result["status"] == "cancelled":
                print(f"{video}: stopped after {result['frames']} frames -> {where}; run again with --resume to go on",
                      file=sys.stderr)
                return EXIT_INTERRUPTED
            rate = f" at {result['frames_per_second']:.2f} frames/s" if result.get("frames_per_second") else ""
            print(f"{video}: {result['frames']} frames{rate} -> {where}")
    return status


if __name__ == "__main__":
    sys.exit(main())
