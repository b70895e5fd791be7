"""Streaming inference: one frame in, one depth out, as the reference's streaming mode.

Each frame is encoded alone; its temporal attention looks back at 31 earlier frames: frame 0,
the frame 41 back, and the 29 most recent, which is the reference's cache rule written in
closed form. Every temporal attention block keeps each frame's keys and values from when
that frame was processed, in a ring of slots (frame 0 and the 42 most recent frames), so no
earlier frame is projected or copied again, and memory does not depend on the video's length.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np
import torch

from ..model import StreamMemory, VideoDepthAnything
from .device import autocast
from .transform import FrameTransform, to_frame_size

RECENT = 29  # most recent frames in the attention window
FAR = 41  # the second slot looks this many frames back
SLOTS = 1 + FAR + 1  # frame 0, and frames k - 41 .. k for the current frame k
MAX_AHEAD = 8  # most frames read ahead to be encoded together


def context_frames(k: int) -> list[int]:
    """Positions (0-based, in processed frames) of the earlier frames frame k attends to."""
    return [0, max(0, k - FAR)] + [max(0, k - RECENT + i) for i in range(RECENT)]


def slot(frame: int) -> int:
    """Frame 0 keeps slot 0; the others take turns in the rest, each lasting 42 frames."""
    return 0 if frame == 0 else 1 + (frame - 1) % (SLOTS - 1)


def streaming_depth(
    model: VideoDepthAnything,
    frames: Iterable[tuple[int, np.ndarray]],
    input_size: int = 518,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]), one for one.

    The encoder sees each frame alone, so a few frames are read ahead and encoded in one
    call (larger matrix products run faster); the head then runs frame by frame.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    transform = FrameTransform(*first[1].shape[:2], input_size)
    net_h, net_w = transform.net_shape
    ahead = model.images_per_call(net_h, net_w, device, MAX_AHEAD)
    memory = StreamMemory(SLOTS)
    group, k = [first, *islice(frames, ahead - 1)], 0
    while group:
        with torch.no_grad(), autocast(device, precision):
            features = model.encode(transform.batch([rgb for _, rgb in group], device))
        for j, (frame_index, rgb) in enumerate(group):
            window = context_frames(k) + [k] if k else [0]
            memory.window = torch.tensor([slot(f) for f in window], device=device)
            with torch.no_grad(), autocast(device, precision):
                depth = model.decode([f[j : j + 1] for f in features], 1, net_h, net_w, memory)
                depth = to_frame_size(depth, transform.frame_shape)[0].cpu().numpy()
            yield frame_index, rgb, depth
            k += 1
        group = list(islice(frames, ahead))
