"""What a sink is given (`RunInfo`, `ResumePoint`) and what a sink is (`Sink`).

`open` checks the target before any inference (a file where a folder goes, a folder that
takes no files, a missing optional package) and raises `OutputError` naming the path.
Everything is written under `<final name>.partial` (`files.py`); the run folder renames them
all into place once the run completes. A resumed run reopens the partial outputs and cuts them
back to the frames its resume point covers.
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...settings import DepthSettings
from ..annotations import VideoAnnotations
from ..files import claim_file, claim_folder, partial, remove
from ..npz import CHUNK, crc32
from ..records import depth_kind
from ..run_folder import is_count

FRAME_NUMBER = re.compile(r"_(\d+)\.[^.]+$")  # depth_00012.png, point_0012.csv


@dataclass
class ResumePoint:
    """Where a resumed run goes on: after `frames` frames, the last of index `last_index`.
    `marks` holds, per sink, what it reported (`Sink.mark`) to cut its output back there."""

    frames: int
    last_index: int
    marks: dict = field(default_factory=dict)


@dataclass
class RunInfo:
    """What every sink needs to know about the run before the first frame."""

    video_path: Path
    output_dir: Path
    width: int  # of the processed frames
    height: int
    fps: float  # of the processed frames
    settings: DepthSettings = field(default_factory=DepthSettings)
    resume: ResumePoint | None = None
    source_fps: float | None = None  # of the video itself, for timestamps (None: fps)

    @property
    def stem(self) -> str:
        return self.video_path.stem

    @property
    def kind(self) -> str:
        return depth_kind(self.settings.metric)

    @functools.cached_property
    def annotations(self) -> VideoAnnotations:
        """The video's tracked shapes, indexed once for all the sinks that use them."""
        return VideoAnnotations(self.video_path, self.width, self.height)


class Sink:
    """One output. `prepare` does a frame's CPU work (quantise, colourise, encode, format) and
    may run in a pool of workers, in any order; `write` then takes its result on one thread, in
    frame order, and does only ordered appends. A sink with nothing heavy to do keeps the
    default `prepare`, which hands the frame itself to `write`.

    A sink with `folder = True` writes a folder of one file per frame (`saving`), built under
    a temporary name and swapped in whole at the end, so no file of an earlier run survives
    beside the new ones."""

    result_key = ""  # the entry of the run's result that names this output
    folder = False

    def name(self, info: RunInfo) -> str:
        """The output's name in the output folder."""
        raise NotImplementedError

    def open(self, info: RunInfo) -> None:
        self.info = info
        self.final = info.output_dir / self.name(info)
        self.count = info.resume.frames if info.resume else 0  # frames in the output
        self.tmp = self.claim()

    def claim(self) -> Path:
        resumed = self.info.resume is not None
        if not self.folder:
            return claim_file(self.final, keep=resumed)
        tmp = claim_folder(self.final, keep=resumed)
        if resumed:  # drop files of frames after the resume point, then check what is left
            for path in tmp.iterdir():
                number = FRAME_NUMBER.search(path.name)
                if (path.name.endswith(".partial") or path.is_symlink() or number is None
                        or int(number.group(1)) > self.info.resume.last_index):
                    remove(path)
            expected, found = self.resume_mark("files", "bytes"), folder_tally(tmp)
            if found != expected:
                raise ValueError(f"{tmp} holds {found['files']} files ({found['bytes']} bytes) up to its resume point, "
                                 f"not the {expected['files']} ({expected['bytes']} bytes) written by then")
        return tmp

    def resume_mark(self, *keys: str) -> dict:
        """This sink's mark at the resume point, once it has the counts `keys` (whole numbers
        >= 0); else ValueError (a run.json damaged or from another version): the run starts over."""
        mark = self.info.resume.marks.get(self.result_key)
        if not isinstance(mark, dict) or not all(is_count(mark.get(key)) for key in keys):
            raise ValueError(f"the resume point's mark for {self.tmp if hasattr(self, 'tmp') else self.final} "
                             f"is {mark!r}, not one this version writes")
        return mark

    @contextmanager
    def saving(self, name: str) -> Iterator[Path]:
        """The temporary path to write one file of a folder output to; renamed once written,
        so even the folder a killed run leaves holds only complete files."""
        tmp = partial(self.tmp / name)
        yield tmp
        os.replace(tmp, self.tmp / name)

    def mark(self):
        """Flush what is written so far and return what this sink needs to check its output and
        cut it back to here on resume (a folder's: how many files and bytes it holds; None:
        nothing)."""
        return folder_tally(self.tmp) if self.folder else None

    def prepare(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray):
        return rgb, depth

    def write(self, frame_index: int, payload) -> None:
        self.count += 1

    def put(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        """`prepare` then `write`, for a caller that writes one frame at a time."""
        self.write(frame_index, self.prepare(frame_index, rgb, depth))

    def close(self, completed: bool) -> None:
        """Finish the partial output when `completed`; else only release it (it stays
        resumable: every part written so far is valid)."""


def folder_tally(folder: Path) -> dict:
    """How many complete files (no links, no `.partial` ones) a folder output holds, and their bytes."""
    files = total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and not entry.name.endswith(".partial"):
                files, total = files + 1, total + entry.stat(follow_symlinks=False).st_size
    return {"files": files, "bytes": total}


def check_prefix(path: Path, stream, mark: dict) -> None:
    """That the open file `stream` (at `path`) starts with the `mark["bytes"]` bytes whose CRC-32
    is `mark["crc32"]`, as its resume point recorded; else ValueError naming it."""
    size, crc = mark["bytes"], 0
    stream.seek(0)
    left = size
    while left:
        chunk = stream.read(min(left, CHUNK))
        if not chunk:
            raise ValueError(f"{path} is shorter than at its resume point ({size - left} of {size} bytes)")
        crc, left = crc32(chunk, crc), left - len(chunk)
    if crc != mark["crc32"]:
        raise ValueError(f"{path} differs from what was written up to its resume point (damaged)")
