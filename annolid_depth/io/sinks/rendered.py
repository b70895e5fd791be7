"""The depth drawn in colour: the depth video and the depth frames.

Both use one colour range, fixed by the first frames (`RenderedSink`), and are drawn and
encoded as frames arrive; a resumed run takes the range (and, for the video, which cannot be
continued, the frames so far) from `depth.ndjson`.
"""
from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
import cv2
import numpy as np

from ...errors import OutputError
from ..colour import colorize_levels, with_colour_bar
from ..files import partial
from ..pipeline import usable_cores
from ..records import NDJSON, Quantised, decode_levels, encode_png, iter_records, quantize
from .base import Sink

RANGE_FRAMES = 32  # frames whose depth fixes the colour range of the depth video and frames


class RenderedSink(Sink):
    """Base of the depth video and the depth frames: every frame drawn with one colour range,
    as it arrives, from its 16-bit levels, so a drawn frame shows what its record holds and
    a resumed run draws exactly what an uninterrupted one would. The range runs from the
    smallest to the largest depth of the first RANGE_FRAMES frames (the windowed engine's
    first window, about a second of video); those frames wait until it is known, and every
    later frame is drawn at once, in the pool, its values beyond the range drawn at the
    range's ends. (The range of the whole video is known only at the end: drawing then
    meant reading every record back after the run, about as long again as the run itself
    at 1280x720.)"""

    redraw_on_resume = False  # whether frames before a resume point are drawn again

    def open(self, info):
        super().open(info)
        self.range: tuple[float, float] | None = None
        self.waiting: list[tuple[int, Quantised]] = []
        self.start()
        if info.resume is not None:
            self.catch_up(info.resume.frames)

    def start(self) -> None:
        """Set up what `emit` needs, before any frame."""

    def catch_up(self, frames: int) -> None:
        """After a resume point: the range, and the frames still waiting for it, from the first
        `frames` records; for an output that cannot be continued (a video), every frame."""
        records = itertools.islice(iter_records(partial(self.info.output_dir / NDJSON)), frames)
        if frames >= RANGE_FRAMES and not self.redraw_on_resume:  # drawn before: only the range counts
            scales = [record["otherData"]["depth_map"]["scale"] for record in itertools.islice(records, RANGE_FRAMES)]
            self.range = min(scale["min"] for scale in scales), max(scale["max"] for scale in scales)
            return
        for record in records:
            self.accept(record["frame_index"], decode_levels(record))

    def render(self, frame_index: int, bgr: np.ndarray):
        """The CPU work for one drawn frame; its result goes to `emit` in frame order."""
        raise NotImplementedError

    def emit(self, frame_index: int, rendered) -> None:
        pass

    def draw(self, frame_index: int, quantised: Quantised, colour_range: tuple[float, float]):
        return self.render(frame_index, colorize_levels(quantised, *colour_range, self.info.settings.metric, self.info.settings.grayscale))

    def prepare(self, frame_index, rgb, depth):
        quantised = quantize(depth)
        colour_range = self.range  # read once: the writer thread sets it
        return quantised if colour_range is None else self.draw(frame_index, quantised, colour_range)

    def write(self, frame_index, payload):
        super().write(frame_index, payload)
        self.accept(frame_index, payload)

    def accept(self, frame_index: int, payload) -> None:
        if self.range is None:
            self.waiting.append((frame_index, payload))
            if len(self.waiting) == RANGE_FRAMES:
                self.draw_waiting()
        elif isinstance(payload, Quantised):  # prepared before the range was known
            self.emit(frame_index, self.draw(frame_index, payload, self.range))
        else:
            self.emit(frame_index, payload)

    def draw_waiting(self) -> None:
        """The frames that waited for the range, drawn on every core (on one thread they held
        up the writing) and emitted in order."""
        self.range = min(q.lo for _, q in self.waiting), max(q.hi for _, q in self.waiting)
        with ThreadPoolExecutor(usable_cores(), thread_name_prefix="draw") as pool:
            drawn = pool.map(lambda item: self.draw(*item, self.range), self.waiting)
            for (frame_index, _), rendered in zip(self.waiting, drawn):
                self.emit(frame_index, rendered)
        self.waiting = []

    def close(self, completed):
        if completed and self.waiting:  # a shorter run: its range is all of its frames'
            self.draw_waiting()
        super().close(completed)


# Visually lossless for both: x264 at CRF 18 with the "ultrafast" preset (the video is
# encoded during the run, beside the network: a fraction of the CPU of "veryfast" at about the
# same fidelity, for a file about twice as large); MPEG-4 with a fixed quantiser of 3 (given as a lambda, 3 * FF_QP2LAMBDA),
# since its default bit rate smears the colour bands.


VIDEO_QUALITY = {
    "libx264": {"crf": "18", "preset": "ultrafast"},
    "mpeg4": {"flags": "+qscale", "global_quality": str(3 * 118)},
}


class DepthVideoSink(RenderedSink):
    """`<stem>_vis.mp4` at the processed fps (a fractional rate kept exact), H.264 where
    PyAV has libx264, else MPEG-4 Part 2, encoded as frames arrive (a resumed run encodes
    the frames before its resume point again, from depth.ndjson), with the colour bar of the
    run's range at the right edge (`with_colour_bar`). yuv420p needs even sizes,
    so an odd width or height gains one replicated last column or row."""

    result_key = "depth_visualization"
    redraw_on_resume = True

    def __init__(self, codecs: tuple[str, ...] = ("libx264", "mpeg4")):
        self.codecs = codecs

    def name(self, info):
        return f"{info.stem}_vis.mp4"

    def open(self, info):
        available = [codec for codec in self.codecs if codec in av.codecs_available]
        if not available:
            raise OutputError(f"PyAV has none of the video encoders {', '.join(self.codecs)}; turn save_depth_video off")
        self.codec = available[0]
        super().open(info)

    def start(self):
        info = self.info
        self.container = av.open(str(self.tmp), "w", format="mp4")  # a resumed run starts the file again
        self.stream = self.container.add_stream(self.codec, rate=Fraction(info.fps).limit_denominator(1001))
        self.stream.width, self.stream.height = info.width + info.width % 2, info.height + info.height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = VIDEO_QUALITY.get(self.codec, {})
        self.pad = ((0, info.height % 2), (0, info.width % 2), (0, 0))
        self.encoded = 0

    def render(self, frame_index, bgr):
        bgr = with_colour_bar(bgr, *self.range, self.info.settings.metric, self.info.settings.grayscale)
        if any(after for _, after in self.pad):
            bgr = np.pad(bgr, self.pad, mode="edge")
        # the colour conversion here, in the pool: OpenCV's BT.601 limited range, as FFmpeg's
        # default (within 2 levels), faster than FFmpeg's scaler
        yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")

    def emit(self, frame_index, rendered):
        self.container.mux(self.stream.encode(rendered))
        self.encoded += 1

    def close(self, completed):
        super().close(completed)
        if self.encoded:
            self.container.mux(self.stream.encode())
        self.container.close()


class DepthFramesSink(RenderedSink):
    """`depth_frames/depth_NNNNN.png`, numbered by the frame's index in the video."""

    result_key = "depth_frames"
    folder = True

    def name(self, info):
        return "depth_frames"

    def render(self, frame_index, bgr):
        """Each frame is a file of its own, written whole here under a temporary name."""
        with self.saving(f"depth_{frame_index:05d}.png") as path:
            path.write_bytes(encode_png(bgr))
