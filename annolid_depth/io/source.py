"""Video decoding for depth: `(frame_index, rgb)` at the processed size, shown upright.

PyAV decodes and OpenCV downscales. `VideoSource` streams a whole video once, front to
back, holding one frame at a time, so memory does not depend on the video's length.
`FrameReader` fetches single frames for a scrubber. Both open, measure and convert frames
through the same helpers, so a given index gives the same pixels from either.
"""
from __future__ import annotations

import itertools
import logging
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import VideoError
from ..settings import check_option

log = logging.getLogger(__name__)

FALLBACK_FPS = 30.0  # for the rare container that states no frame rate at all
DECODE_AHEAD_SECONDS = 2.0  # FrameReader decodes forward rather than seek within this span


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """The container and its first video stream, set up for threaded decoding."""
    if not path.exists():
        raise VideoError(f"video not found: {path}; check the path")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file; pass the path of a video inside it")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(
            f"cannot read {path} as a video ({_reason(exc)}); "
            "pass a video file FFmpeg can decode (mp4, avi, mov, mkv, ...)"
        ) from None
    demuxer = container.format.name
    if demuxer == "image2" or demuxer.endswith("_pipe"):  # FFmpeg opens still images as one-frame videos
        container.close()
        raise VideoError(f"{path} is a still image ({demuxer.removesuffix('_pipe')}), not a video; pass a video file")
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"{path} has no video stream ({', '.join(kinds)} only); pass a video file")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise VideoError(f"{path}: this FFmpeg build has no decoder for its video codec; re-encode it to H.264")
    stream.thread_type = "AUTO"
    return container, stream


def _decode(container, stream, path: Path) -> Iterator[av.VideoFrame | None]:
    """Frames in display order, with None standing for a packet the decoder rejected so
    that callers can keep counting indices past damage. Container data that cannot be read
    ends the stream with a warning: nothing after it can be located."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            log.warning("%s: unreadable from here on (%s); the rest of the video is skipped", path, _reason(exc))
            return
        try:
            frames = packet.decode()
        except av.FFmpegError:
            if packet.size:  # an empty packet only flushes the decoder; its failure is no frame
                yield None
            continue
        yield from frames


def _fit(width: int, height: int, max_res: int) -> tuple[int, int]:
    """The size whose longer side is at most `max_res` (<= 0: unchanged), aspect ratio kept."""
    longest = max(width, height)
    if max_res <= 0 or longest <= max_res:
        return width, height
    scale = max_res / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _quarter_turns(frame: av.VideoFrame, stream) -> int:
    """Counter-clockwise quarter turns that show decoded pictures upright.

    The display matrix arrives as frame side data; older files and builds only carry the
    legacy `rotate` tag, which counts clockwise."""
    degrees = getattr(frame, "rotation", 0)
    if not degrees:
        try:
            degrees = -float(stream.metadata.get("rotate", 0))
        except ValueError:
            degrees = 0
    return round(degrees / 90) % 4


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int], quarter_turns: int) -> np.ndarray:
    """H x W x 3 uint8, C-contiguous, at `size` (width, height) after turning upright.

    Any pixel format (gray, 10-bit, ...) goes through FFmpeg's rgb24 conversion; downscaling
    happens before the turn, on the smaller picture, with area interpolation."""
    rgb = frame.to_ndarray(format="rgb24")
    width, height = size if quarter_turns % 2 == 0 else size[::-1]
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns))


@dataclass(frozen=True)
class _Facts:
    """What a video says about itself, read once when it is opened."""

    fps: float
    frame_total: int | None  # frames in the file, when the container states or implies it
    stated_total: bool  # the header states the frame count (not estimated from the duration)
    quarter_turns: int
    source_size: tuple[int, int]  # as displayed, before max_res
    size: tuple[int, int]  # processed
    origin_pts: int | None  # timestamp of the first frame; None for streams without timestamps
    time_base: Fraction | None


def _fps(stream, path: Path) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    log.warning("%s states no frame rate; assuming %g fps", path, FALLBACK_FPS)
    return FALLBACK_FPS


def _frame_total(container, stream, fps: float) -> int | None:
    """Frames in the file per its header, else estimated from its duration; None if unknown."""
    if stream.frames > 0:
        return stream.frames
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    else:
        return None
    return max(1, round(seconds * fps)) if seconds > 0 else None


def _probe(path: Path, max_res: int) -> _Facts:
    """Open the video and decode its first frame: it proves the file decodes and carries
    the rotation and true size."""
    container, stream = _open(path)
    with container:
        first = next((frame for frame in _decode(container, stream, path) if frame is not None), None)
        if first is None:
            raise VideoError(
                f"no frame of {path} could be decoded: the file is empty or damaged; re-export or re-encode it"
            )
        fps = _fps(stream, path)
        turns = _quarter_turns(first, stream)
        width, height = (first.height, first.width) if turns % 2 else (first.width, first.height)
        return _Facts(
            fps=fps,
            frame_total=_frame_total(container, stream, fps),
            stated_total=stream.frames > 0,
            quarter_turns=turns,
            source_size=(width, height),
            size=_fit(width, height, max_res),
            origin_pts=first.pts,
            time_base=stream.time_base,
        )


class _Video:
    """Attributes shared by both readers, from the probe."""

    def __init__(self, path: str | Path, max_res: int):
        check_option("max_res", max_res)
        self.path = Path(path)
        self._facts = facts = _probe(self.path, max_res)
        self.fps = facts.fps
        self.rotation = facts.quarter_turns * 90  # counter-clockwise degrees applied to decoded pictures
        self.source_width, self.source_height = facts.source_size
        self.width, self.height = facts.size

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return _to_rgb(frame, (self.width, self.height), self._facts.quarter_turns)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def ordinal(n: int) -> str:
    """2nd, 3rd, 5th, 11th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class VideoSource(_Video):
    """A video as `(frame_index, rgb)` pairs for the depth engines, decoded on demand.

    `frame_index` counts the frames of the original video in the order the decoder returns
    them (not by timestamp, so a variable frame rate changes nothing). `target_fps` keeps
    every `stride`-th frame, stride = max(1, round(fps / target_fps)); `max_frames` stops
    after that many kept frames; `max_res` bounds the longer side (area downscaling, aspect
    kept). Frames come upright (rotation metadata applied) as H x W x 3 uint8 RGB at
    `width` x `height`. `fps` is the source's average rate (30 when it states none).

    The constructor opens the file and decodes one frame, so a bad path or argument fails
    before any work: VideoError for the file, ValueError for the arguments. Iterating
    (again) decodes from the start. A frame the decoder rejects is skipped with a warning
    and counted in `skipped_frames` (for the latest pass, kept positions only); the frames
    after it keep their original indices. Container data that cannot be read at all ends the
    video early, with a warning. `frame_count` is a progress hint, None when unknown.
    """

    def __init__(self, path: str | Path, target_fps: float = -1, max_frames: int = -1, max_res: int = -1):
        check_option("target_fps", target_fps)
        check_option("max_frames", max_frames)
        super().__init__(path, max_res)
        self.stride = 1 if target_fps <= 0 else max(1, round(self.fps / target_fps))
        self.output_fps = self.fps / self.stride
        self.sampling_note = None  # said with the first pass over the frames: a run that is skipped keeps quiet
        if target_fps > 0 and not math.isclose(self.output_fps, target_fps, rel_tol=0.01):
            self.sampling_note = (f"{self.path.name}: {target_fps:g} fps asked for; every {ordinal(self.stride)} frame "
                                  f"of the {self.fps:g} fps video gives {self.output_fps:g} fps")
        self.max_frames = max_frames if max_frames > 0 else -1
        total = self._facts.frame_total
        self.frame_count = None if total is None else math.ceil(total / self.stride)
        if self.frame_count is not None and max_frames > 0:
            self.frame_count = min(self.frame_count, max_frames)
        self.skipped_frames = 0
        self.warnings: list[str] = []  # what went wrong in the latest pass, in words
        self._passes: weakref.WeakSet = weakref.WeakSet()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.frames()

    def frames(self, skip: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """The processed frames after the first `skip` of them (decoded, not converted)."""
        frames = self._frames(skip)
        self._passes.add(frames)
        if self.sampling_note is not None:
            log.warning("%s", self.sampling_note)
            self.sampling_note = None
        return frames

    def _frames(self, skip: int) -> Iterator[tuple[int, np.ndarray]]:
        container, stream = _open(self.path)
        self.skipped_frames, self.warnings = 0, []
        kept = seen = 0
        first_size = None
        try:
            for frame_index, frame in enumerate(_decode(container, stream, self.path)):
                seen = frame_index + 1
                if frame is not None:
                    size = (frame.width, frame.height)
                    if first_size is None:
                        first_size = size
                    elif size != first_size:
                        self._warn(f"the frame size changes from {first_size[0]}x{first_size[1]} to {size[0]}x{size[1]} "
                                   f"at frame {frame_index}; depth stops there (split or re-encode the video to go on)")
                        return
                if frame_index % self.stride:
                    continue
                if frame is None:
                    self.skipped_frames += 1
                    log.warning("%s: frame %d could not be decoded; skipped", self.path, frame_index)
                    continue
                kept += 1
                if kept > skip:
                    yield frame_index, self._rgb(frame)
                if kept == self.max_frames:
                    return
            stated = self._facts.frame_total
            if self._facts.stated_total and stated is not None and seen < stated:
                self._warn(f"the video ends after {seen} frames although its header states {stated}; "
                           "the file may be truncated (the frames there were processed)")
        finally:
            container.close()

    def _warn(self, message: str) -> None:
        log.warning("%s: %s", self.path, message)
        self.warnings.append(message)

    def close(self) -> None:
        """Stop any pass still running and release its file."""
        for frames in list(self._passes):
            frames.close()


class FrameReader(_Video):
    """Single frames by index, for a scrubber: same indices, size and orientation as a
    `VideoSource` with the same `max_res`.

    Frame i is found by its timestamp, i / fps after the first frame: seek to the keyframe
    before it, then decode forward. That is exact on constant-frame-rate video; on variable
    frame rate it gives the first frame shown at or after that time. Reads a little ahead
    of the last one (the usual playback and step-forward case) decode forward without
    seeking. Streams without timestamps are counted from the start.
    """

    def __init__(self, path: str | Path, max_res: int = -1):
        super().__init__(path, max_res)
        self.frame_count = self._facts.frame_total
        self._ahead = max(1, round(self.fps * DECODE_AHEAD_SECONDS))
        self._container = None  # opened by the first read
        self._last_index: int | None = None
        self._last_rgb: np.ndarray | None = None

    def read(self, frame_index: int) -> np.ndarray:
        """The frame at `frame_index` (IndexError past the end of the video)."""
        if frame_index < 0:
            raise IndexError(f"frame index must be >= 0, got {frame_index}")
        if frame_index == self._last_index:
            return self._last_rgb.copy()
        if self._container is None:
            self._restart()
        if not self._next_index <= frame_index < self._next_index + self._ahead:
            self._seek(frame_index)
        for count, frame in self._frames:
            index = self._index_of(count, frame)
            if index is None or index < frame_index:
                continue
            self._next_index = index + 1
            self._last_index, self._last_rgb = index, self._rgb(frame)
            return self._last_rgb.copy()
        raise IndexError(f"{self.path} has no frame {frame_index}; it has about {self.frame_count} frames")

    def _index_of(self, count: int, frame: av.VideoFrame | None) -> int | None:
        """The frame's index from its timestamp (or from counting); None if it has none."""
        if frame is None:
            return None
        if self._facts.origin_pts is None:
            return count
        if frame.pts is None:
            return None
        return round((frame.pts - self._facts.origin_pts) * self._facts.time_base * self.fps)

    def _restart(self) -> None:
        """Reopen at the first frame: the one position every container can return to."""
        self.close()
        self._container, self._stream = _open(self.path)
        self._frames = enumerate(_decode(self._container, self._stream, self.path))
        self._next_index = 0

    def _seek(self, frame_index: int) -> None:
        facts = self._facts
        if facts.origin_pts is None or frame_index < self._ahead:
            if frame_index < self._next_index:  # without timestamps, only forward or from the start
                self._restart()
            return
        target = facts.origin_pts + round(frame_index / self.fps / facts.time_base)
        try:
            self._container.seek(target, stream=self._stream, backward=True)
        except av.FFmpegError:  # a container that cannot seek
            self._restart()
            return
        frames = _decode(self._container, self._stream, self.path)
        first = next((frame for frame in frames if frame is not None), None)
        landed = None if first is None else self._index_of(0, first)
        if landed is None or landed > frame_index:  # the index put no keyframe early enough
            self._restart()
            return
        self._frames = enumerate(itertools.chain([first], frames))
        self._next_index = landed

    def close(self) -> None:
        """Release the file; a later `read` reopens it."""
        if self._container is not None:
            self._container.close()
            self._container = None
