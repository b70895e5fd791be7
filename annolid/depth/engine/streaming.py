"""Streaming inference: one frame in, one depth out, as the reference's streaming mode.

Each frame is encoded alone; its temporal attention looks back at 31 earlier frames through
cached states (the keys and values of every temporal attention block, kept from when that
frame was processed, so no earlier frame is ever projected again). The 31 are frame 0, the frame 41 back, and the 29 most recent, which
is the reference's cache rule written in closed form. Only those caches are kept, so memory
does not depend on the length of the video.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..model import VideoDepthAnything
from .device import autocast
from .transform import FrameTransform, to_frame_size

RECENT = 29  # most recent frames in the attention window
FAR = 41  # the second slot looks this many frames back


def context_frames(k: int) -> list[int]:
    """Positions (0-based, in processed frames) whose caches frame k attends to."""
    return [0, max(0, k - FAR)] + [max(0, k - RECENT + i) for i in range(RECENT)]


def streaming_depth(
    model: VideoDepthAnything,
    frames: Iterable[tuple[int, np.ndarray]],
    input_size: int = 518,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]), one for one."""
    transform = None
    caches: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # position -> 8 x (keys, values)
    for k, (frame_index, rgb) in enumerate(frames):
        if transform is None:
            transform = FrameTransform(*rgb.shape[:2], input_size)
        net_h, net_w = transform.net_shape
        with torch.no_grad(), autocast(device, precision):
            features = model.encode(transform.batch([rgb], device))
            past = None
            if k:
                window = [caches[p] for p in context_frames(k)]
                past = [
                    (torch.cat([c[i][0] for c in window], 1), torch.cat([c[i][1] for c in window], 1))
                    for i in range(len(window[0]))
                ]
            depth, cache = model.decode(features, 1, net_h, net_w, past)
            depth = to_frame_size(depth, transform.frame_shape)[0].cpu().numpy()
        caches[k] = cache
        oldest_needed = k + 1 - FAR  # the next frame's far slot
        for position in [p for p in caches if 0 < p < oldest_needed]:
            del caches[position]
        yield frame_index, rgb, depth
