"""Windowed (offline) inference: the reference's algorithm as a generator.

The video is cut into 32-frame windows that start every 22 frames. The first 10 slots of
every later window are keyframes of the previous one (its slots 0, 12, 24..31), so the
temporal head sees context; the window's depth is then fitted to the previous window by
least squares (scale and shift, on slots 0 and 1) and blended over 8 frames.

Unlike the reference, nothing here holds the whole video: a depth frame is yielded as soon
as no later window can change it, and only the frames of about one window are kept. The
encoder runs once per frame: the keyframe slots reuse the previous window's features.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..model import VideoDepthAnything
from .device import FiniteDepth
from .transform import FrameTransform, to_frame_size

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


def offline_depth(
    model: VideoDepthAnything,
    frames: Iterable[tuple[int, np.ndarray]],
    input_size: int = 518,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]) in order."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    transform = FrameTransform(*first[1].shape[:2], input_size)
    net_h, net_w = transform.net_shape

    network = FiniteDepth(model, device, precision)
    pending: deque[tuple[int, np.ndarray]] = deque([first])  # received, not yet yielded
    new_slots: list[np.ndarray] = [first[1]]  # RGB of the slots the next window must encode
    last_rgb = first[1]  # the reference pads the video with copies of its last frame
    received, start, exhausted = 1, 0, False
    keyframe_features = None  # encoder features of the previous window's KEYFRAMES slots
    to_blend: list[np.ndarray] = []  # depth of the frames the next window blends into
    reference: list[np.ndarray] = []  # alignment targets: window 0's frame 0, last window's slot 12

    while True:
        needed = WINDOW if keyframe_features is None else STEP
        while len(new_slots) < needed and not exhausted:
            item = next(frames, None)
            if item is None:
                exhausted = True
            else:
                pending.append(item)
                new_slots.append(item[1])
                last_rgb = item[1]
                received += 1
        if start >= received:
            return
        real = len(new_slots)
        has_next = not exhausted or start + STEP < received
        # Past the end the window is filled with copies of the last frame: they encode alike,
        # and unless a next window blends into them, only slots up to the last real frame
        # give depth that is used (the copies still lend temporal context).
        used = WINDOW if has_next else WINDOW - needed + real

        images = transform.batch(new_slots or [last_rgb], device)

        def run_window(needed=needed, real=real, used=used, keyframes=keyframe_features):
            features = model.encode(images)
            features = [torch.cat([f[:real], f[-1:].expand(needed - real, *f.shape[1:])]) for f in features]
            if keyframes is not None:
                features = [torch.cat([k, f]) for k, f in zip(keyframes, features)]  # the wider dtype
            return model.decode(features, WINDOW, net_h, net_w, outputs=used), features

        depth, features = network(run_window, f"the window from processed frame {start}")
        with torch.no_grad():
            depth = to_frame_size(depth, transform.frame_shape).cpu().numpy()
        keyframe_features = [f[KEYFRAMES] for f in features]
        new_slots = []

        if start == 0:
            fitted = depth
            aligned, first_aligned = list(depth), start
        else:
            if model.metric:
                scale, shift = np.float32(1.0), np.float32(0.0)
            else:
                scale, shift = fit_scale_shift(np.concatenate(depth[:2]), np.concatenate(reference))
            fitted = np.maximum(depth * scale + shift, 0)
            blended = [old * (1 - w) + new * w for old, new, w in zip(to_blend, fitted[2:OVERLAP], BLEND_WEIGHTS)]
            aligned, first_aligned = blended + list(fitted[OVERLAP:]), start + OVERLAP - BLEND
        if has_next:  # it aligns to frame 0 and this window's slot 12, and blends into our last 8
            reference = [reference[0] if start else depth[0], fitted[12]]
            to_blend = aligned[-BLEND:]

        # Frames the next window will blend stay pending; with no next window, all are final.
        final_through = start + STEP + 1 if has_next else received - 1
        for position, d in enumerate(aligned, start=first_aligned):
            if position > final_through or not pending:
                break
            frame_index, rgb = pending.popleft()
            yield frame_index, rgb, d
        start += STEP
