"""`python -m annolid_depth.download_weights` (`annolid.depth.download_weights` where Annolid is
not installed): see which checkpoints are on disk, fetch them ahead of a run (for example
before going offline).

Exit status: 0 done, 1 a download failed, 2 bad usage. Annolid calls its downloader by this
module's name, `download_weights(argv)`, which this module answers as well.
"""
from __future__ import annotations

import argparse
import sys
import types

from .errors import WeightsError
from .weights import CHECKPOINTS, FOLDER_ENV, Checkpoint, checkpoint_dir, checkpoint_path, download_checkpoint, get_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m annolid_depth.download_weights",
        description="List and download the Video Depth Anything checkpoints from the Hugging Face Hub.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="show each checkpoint, where it is or would go, and whether it is present")
    action.add_argument(
        "-m", "--model", action="append", metavar="NAME",
        help=f"checkpoint to download; repeatable, case-insensitive: {', '.join(CHECKPOINTS)}",
    )
    action.add_argument("--all", action="store_true", help="download all six checkpoints")
    parser.add_argument(
        "--dest", metavar="DIR",
        help=f"checkpoint folder (default: ${FOLDER_ENV} if set, else the package's checkpoints folder when writable, else a per-user cache folder)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(format_table(args.dest))
        return 0
    try:
        entries = list(CHECKPOINTS.values()) if args.all else list(dict.fromkeys(map(get_checkpoint, args.model)))
    except ValueError as err:
        parser.error(str(err))
    for entry in entries:
        path = checkpoint_path(entry.key, args.dest)
        if path.is_file():
            print(f"{entry.key}: already present at {path}")
            continue
        print(f"{entry.key}: downloading about {_size(entry.size_mb)} from {entry.repo_id} into {path.parent}", flush=True)
        try:
            path = download_checkpoint(entry.key, args.dest)
        except WeightsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{entry.key}: saved {path}")
    return 0


def format_table(dest: str | None = None) -> str:
    """One row per checkpoint, with where it is (or would go) and whether it is there."""
    header = ("model", "encoder", "depth", "size", "status", "path")
    rows = [header] + [_row(entry, dest) for entry in CHECKPOINTS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]) for row in rows]
    lines += [
        "",
        f"download folder: {checkpoint_dir(dest)}",
        "depth: relative = disparity without a unit (larger is nearer); metric = metres",
    ]
    return "\n".join(lines)


def _row(entry: Checkpoint, dest: str | None) -> tuple[str, ...]:
    path = checkpoint_path(entry.key, dest)
    status = "present" if path.is_file() else "missing"
    return entry.key, entry.encoder, entry.depth_kind, f"~{_size(entry.size_mb)}", status, str(path)


def _size(megabytes: int) -> str:
    return f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes} MB"


class _Command(types.ModuleType):
    def __call__(self, argv: list[str] | None = None) -> int:
        return main(argv)


sys.modules[__name__].__class__ = _Command

if __name__ == "__main__":
    sys.exit(main())
