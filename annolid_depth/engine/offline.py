"""Windowed (offline) inference: the reference's algorithm as a generator.

The video is cut into 32-frame windows that start every 22 frames. The first 10 slots of
every later window are keyframes of the previous one (its slots 0, 12, 24..31), so the
temporal head sees context; the window's depth is then fitted to the previous window by
least squares (scale and shift, on slots 0 and 1) and blended over 8 frames.

The engine reads as the reference's two phases: a window of frames goes through the network
(`OfflineEngine.run`), then an `Aligner`, which carries the alignment state from window to
window, fits and blends it. Unlike the reference, nothing here holds the whole video: a depth
frame is yielded as soon as no later window can change it, and only the frames of about one
window are kept. The encoder runs once per frame: the keyframe slots reuse the previous
window's features. After each window the engine can say how to go on from there
(`snapshot`), so an interrupted run resumes with at most one window of work redone.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from ..model import VideoDepthAnything, image_tokens
from .device import FiniteDepth, per_call
from .transform import batch, read_ahead, to_frame_size

WINDOW = 32
OVERLAP = 10
STEP = WINDOW - OVERLAP  # 22
KEYFRAMES = [0, 12] + list(range(24, 32))  # previous-window slots that open the next window
BLEND = 8  # frames blended between consecutive windows (slots 2..9)
BLEND_WEIGHTS = [0.0] + [i * (1.0 / (BLEND - 1)) for i in range(1, BLEND - 1)] + [1.0]


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple[np.float32, np.float32]:
    """Least-squares scale and shift mapping pred onto target, in float32 as the reference."""
    a00, a01, a11 = np.sum(pred * pred), np.sum(pred), np.float32(pred.size)
    b0, b1 = np.sum(pred * target), np.sum(target)
    det = a00 * a11 - a01 * a01
    if det == 0:
        return np.float32(1.0), np.float32(0.0)
    return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


class Aligner:
    """Scale/shift alignment between windows. It holds the depth the next window is fitted
    to (window 0's frame 0 and the last window's slot 12) and the depth of the last 8
    frames, which the next window blends into."""

    def __init__(self, metric: bool):
        self.metric = metric
        self.reference: list[np.ndarray] = []
        self.to_blend: list[np.ndarray] = []

    def align(self, depth: np.ndarray, first: bool, has_next: bool) -> tuple[list[np.ndarray], int]:
        """A window's raw depth -> (final depth of its frames from slot `offset` on, offset)."""
        if first:
            fitted, aligned, offset = depth, list(depth), 0
        else:
            if self.metric:  # metres are absolute: never rescaled
                scale, shift = np.float32(1.0), np.float32(0.0)
            else:
                scale, shift = fit_scale_shift(np.concatenate(depth[:2]), np.concatenate(self.reference))
            fitted = np.maximum(depth * scale + shift, 0)
            blended = [old * (1 - w) + new * w for old, new, w in zip(self.to_blend, fitted[2:OVERLAP], BLEND_WEIGHTS)]
            aligned, offset = blended + list(fitted[OVERLAP:]), OVERLAP - BLEND
        if has_next:
            self.reference = [depth[0] if first else self.reference[0], fitted[12]]
            self.to_blend = aligned[-BLEND:]
        return aligned, offset


@dataclass
class WindowEnd:
    """Where the last window left the run: `frames` frames are final once handed out (a resume
    point then), the next window starts at processed frame `start` with the aligner's state
    and the keyframes' features; `last`: no window follows."""

    frames: int
    start: int
    frame_shape: tuple[int, int]
    aligner: Aligner
    keyframe_features: list[torch.Tensor]
    last: bool


class Slots:
    """The frames windows are cut from: those received and not yet handed out (`pending`), and
    the network inputs of the slots the next window encodes (`new`). The reference pads the
    video with copies of its last frame (`last_input`)."""

    def __init__(self, inputs: Iterator, first: int):
        self.inputs, self.pending, self.new = inputs, deque(), []
        self.exhausted, self.last_input = False, None
        for frame_index, rgb, x in islice(inputs, first):
            self.pending.append((frame_index, rgb))
            self.last_input = x
        self.received = len(self.pending)

    def fill(self, needed: int) -> None:
        """Read until `needed` slots wait to be encoded, or the video ends."""
        while len(self.new) < needed and not self.exhausted:
            item = next(self.inputs, None)
            if item is None:
                self.exhausted = True
            else:
                frame_index, rgb, self.last_input = item
                self.pending.append((frame_index, rgb))
                self.new.append(self.last_input)
                self.received += 1


class OfflineEngine:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]) in order."""

    def __init__(self, model: VideoDepthAnything, input_size: int = 518, device=torch.device("cpu"), precision="fp32"):
        self.model, self.input_size, self.device, self.precision = model, input_size, device, precision
        self.yielded = 0
        self.window_end: WindowEnd | None = None

    def ready(self) -> int:
        """Frames computed but not yet handed out: the rest of the current window's."""
        return 0 if self.window_end is None else max(0, self.window_end.frames - self.yielded)

    def finished(self) -> bool:
        """Whether every frame of the video has been handed out (a cancel in the last window
        finishes the video)."""
        return self.window_end is not None and self.window_end.last and self.ready() == 0

    STATE_KEYS = frozenset({"frames", "start", "frame_shape", "reference", "to_blend", "keyframe_features"})

    def snapshot(self) -> dict | None:
        """How to go on after the frames yielded so far, or None between window ends: the
        aligner's depth maps and the keyframes' encoder features (on the CPU; encoding them
        again would change their last bits with the batch size)."""
        end = self.window_end
        if end is None or end.frames != self.yielded:
            return None
        return {
            "frames": self.yielded, "start": end.start, "frame_shape": end.frame_shape,
            "reference": [torch.from_numpy(d.copy()) for d in end.aligner.reference],  # copies: written while
            "to_blend": [torch.from_numpy(d.copy()) for d in end.aligner.to_blend],  # the engine goes on
            "keyframe_features": [f.detach().to("cpu", copy=True) for f in end.keyframe_features],
        }

    def run(self, frames: Iterable[tuple[int, np.ndarray]], state: dict | None = None) -> Iterator:
        """Depth for `frames`; with `state` (a `snapshot`), `frames` are those after it."""
        inputs = read_ahead(frames, self.input_size)
        try:
            yield from self._run(inputs, state)
        finally:
            inputs.close()

    def _run(self, inputs: Iterator, state: dict | None) -> Iterator:
        aligner, start, keyframe_features = Aligner(self.model.metric), 0, None
        slots = Slots(inputs, 1 if state is None else BLEND)  # resumed: first the frames the next window blends into
        if state is None:
            slots.new = [slots.last_input] if slots.pending else []
        else:
            start = state["start"]
            aligner.reference = [d.numpy() for d in state["reference"]]
            aligner.to_blend = [d.numpy() for d in state["to_blend"]]
            keyframe_features = [f.to(self.device) for f in state["keyframe_features"]]
            slots.exhausted = len(slots.pending) < BLEND
        if not slots.pending:
            return
        self.yielded = state["frames"] if state else 0
        slots.received += self.yielded
        frame_shape = tuple(state["frame_shape"]) if state else slots.pending[0][1].shape[:2]
        network = FiniteDepth(self.model, self.device, self.precision)
        while True:
            slots.fill(WINDOW if keyframe_features is None else STEP)
            if start >= slots.received:
                return
            has_next = not slots.exhausted or start + STEP < slots.received
            depth, features = self.window(network, slots, keyframe_features, start, has_next)
            keyframe_features = [f[KEYFRAMES] for f in features]
            aligned, offset = aligner.align(to_frame_size(depth, frame_shape), first=start == 0, has_next=has_next)
            # Frames the next window will blend stay pending; with no next window, all are final.
            final_through = start + STEP + 1 if has_next else slots.received - 1
            # After the last window the resume point is the end: a cancel inside it finishes the video.
            self.window_end = WindowEnd(final_through + 1, start + STEP, frame_shape, aligner, keyframe_features, not has_next)
            for position, d in enumerate(aligned, start=start + offset):
                if position > final_through or not slots.pending:
                    break
                frame_index, rgb = slots.pending.popleft()
                self.yielded += 1
                yield frame_index, rgb, d
            start += STEP

    def window(self, network: FiniteDepth, slots: Slots, keyframes: list[torch.Tensor] | None, start: int, has_next: bool):
        """One window's depth at network size and its slots' features: the new slots encoded,
        after the previous window's keyframes. Past the end the window is filled with copies of
        the last frame: they encode alike, and unless a next window blends into them, only
        slots up to the last real frame give depth that is used (the copies still lend
        temporal context)."""
        model, needed, real = self.model, WINDOW if keyframes is None else STEP, len(slots.new)
        used = WINDOW if has_next else WINDOW - needed + real
        images = batch(slots.new or [slots.last_input], self.device)
        slots.new = []
        net_h, net_w = images.shape[2:]
        images_per_call = per_call(self.device, image_tokens(net_h, net_w))
        pixels_per_call = per_call(self.device, WINDOW)  # a pixel's sequence holds the window's frames

        def run_window():
            features = model.encode(images, images_per_call)
            features = [torch.cat([f[:real], f[-1:].expand(needed - real, *f.shape[1:])]) for f in features]
            if keyframes is not None:
                features = [torch.cat([k, f]) for k, f in zip(keyframes, features)]  # the wider dtype
            return model.decode(features, WINDOW, net_h, net_w, outputs=used, pixels_per_call=pixels_per_call), features

        return network(run_window, f"the window from processed frame {start}")
