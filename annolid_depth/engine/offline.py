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


class OfflineEngine:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]) in order."""

    def __init__(self, model: VideoDepthAnything, input_size: int = 518, device=torch.device("cpu"), precision="fp32"):
        self.model, self.input_size, self.device, self.precision = model, input_size, device, precision
        self.yielded = 0
        self._resume_point: tuple[int, dict] | None = None
        self._last_window = False

    def ready(self) -> int:
        """Frames computed but not yet handed out: the rest of the current window's."""
        if self._resume_point is None:
            return 0
        return max(0, self._resume_point[0] - self.yielded)

    def finished(self) -> bool:
        """Whether every frame of the video has been handed out (a cancel in the last window
        finishes the video)."""
        return self._last_window and self.ready() == 0

    def snapshot(self) -> dict | None:
        """How to go on after the frames yielded so far, or None between window ends: the
        aligner's depth maps and the keyframes' encoder features (on the CPU; encoding them
        again would change their last bits with the batch size)."""
        if self._resume_point is None or self._resume_point[0] != self.yielded:
            return None
        start, first_shape, aligner, features = self._resume_point[1]
        return {
            "frames": self.yielded, "start": start, "frame_shape": first_shape,
            "reference": [torch.from_numpy(d) for d in aligner.reference],
            "to_blend": [torch.from_numpy(d) for d in aligner.to_blend],
            "keyframe_features": [f.cpu() for f in features],
        }

    def run(self, frames: Iterable[tuple[int, np.ndarray]], state: dict | None = None) -> Iterator:
        """Depth for `frames`; with `state` (a `snapshot`), `frames` are those after it."""
        inputs = read_ahead(frames, self.input_size)
        try:
            yield from self._run(inputs, state)
        finally:
            inputs.close()

    def _run(self, inputs: Iterator, state: dict | None) -> Iterator:
        model, device = self.model, self.device
        aligner = Aligner(model.metric)
        pending: deque[tuple[int, np.ndarray]] = deque()  # received, not yet yielded
        new_slots: list[np.ndarray] = []  # network inputs of the slots the next window encodes
        start, keyframe_features = 0, None
        if state is not None:  # the frames after the snapshot: first those the next window blends into
            start = state["start"]
            aligner.reference = [d.numpy() for d in state["reference"]]
            aligner.to_blend = [d.numpy() for d in state["to_blend"]]
            keyframe_features = [f.to(device) for f in state["keyframe_features"]]
        for frame_index, rgb, x in islice(inputs, 1 if state is None else BLEND):
            pending.append((frame_index, rgb))
            if state is None:
                new_slots.append(x)
            last_input = x  # the reference pads the video with copies of its last frame
        if not pending:
            return
        self.yielded = state["frames"] if state else 0
        frame_shape = tuple(state["frame_shape"]) if state else pending[0][1].shape[:2]
        net_h, net_w = last_input.shape[1:]
        images_per_call = per_call(device, image_tokens(net_h, net_w))
        pixels_per_call = per_call(device, WINDOW)  # a pixel's sequence holds the window's frames
        network = FiniteDepth(model, device, self.precision)
        received = self.yielded + len(pending)
        exhausted = state is not None and len(pending) < BLEND

        while True:
            needed = WINDOW if keyframe_features is None else STEP
            while len(new_slots) < needed and not exhausted:
                item = next(inputs, None)
                if item is None:
                    exhausted = True
                else:
                    frame_index, rgb, last_input = item
                    pending.append((frame_index, rgb))
                    new_slots.append(last_input)
                    received += 1
            if start >= received:
                return
            real = len(new_slots)
            has_next = not exhausted or start + STEP < received
            # Past the end the window is filled with copies of the last frame: they encode alike,
            # and unless a next window blends into them, only slots up to the last real frame
            # give depth that is used (the copies still lend temporal context).
            used = WINDOW if has_next else WINDOW - needed + real

            images = batch(new_slots or [last_input], device)

            def run_window(images=images, needed=needed, real=real, used=used, keyframes=keyframe_features):
                features = model.encode(images, images_per_call)
                features = [torch.cat([f[:real], f[-1:].expand(needed - real, *f.shape[1:])]) for f in features]
                if keyframes is not None:
                    features = [torch.cat([k, f]) for k, f in zip(keyframes, features)]  # the wider dtype
                return model.decode(features, WINDOW, net_h, net_w, outputs=used, pixels_per_call=pixels_per_call), features

            depth, features = network(run_window, f"the window from processed frame {start}")
            depth = to_frame_size(depth, frame_shape)
            keyframe_features = [f[KEYFRAMES] for f in features]
            new_slots = []

            aligned, offset = aligner.align(depth, first=start == 0, has_next=has_next)
            # Frames the next window will blend stay pending; with no next window, all are final.
            final_through = start + STEP + 1 if has_next else received - 1
            # After the last window the resume point is the end: a cancel inside it finishes the video.
            self._resume_point = (final_through + 1, (start + STEP, frame_shape, aligner, keyframe_features))
            self._last_window = not has_next
            for position, d in enumerate(aligned, start=start + offset):
                if position > final_through or not pending:
                    break
                frame_index, rgb = pending.popleft()
                self.yielded += 1
                yield frame_index, rgb, d
            start += STEP


def offline_depth(
    model: VideoDepthAnything,
    frames: Iterable[tuple[int, np.ndarray]],
    input_size: int = 518,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]) in order."""
    return OfflineEngine(model, input_size, device, precision).run(frames)
