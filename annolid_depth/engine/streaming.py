"""Streaming inference: depth for each frame from it and the frames before it, as the
reference's streaming mode.

Each frame's temporal attention looks back at 31 earlier frames: frame 0, the frame 41 back,
and the 29 most recent, which is the reference's cache rule written in closed form. Every
temporal attention block keeps each frame's keys and values from when that frame was
processed, in a ring of slots, so no earlier frame is projected or copied again, and memory
does not depend on the video's length. That store is the whole state of the stream: an
interrupted run saves it (`snapshot`) and resumes exactly where it stopped.

Frames go through the network a few at a time (the frames read ahead): the encoder sees each
frame alone, and in the head each frame attends only to frames at or before it, whose keys
and values are stored before anyone attends, so a group gives exactly the depth of one frame
after another, with larger matrix products and one read of the stored keys for the group.
A group is MAX_AHEAD frames at any input size; the encoder takes them `per_call` images at a
time (one at 518 on a CPU). Reading the stored keys once per frame instead made the head
slower at every size, at the price of a larger peak memory at 518, about windows mode's
(bench/bench_speed.py and bench/bench_memory.py measure both).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np
import torch

from ..model import StreamMemory, VideoDepthAnything, image_tokens
from .device import FiniteDepth, per_call
from .transform import batch, read_ahead, to_frame_size

RECENT = 29  # most recent frames in the attention window
FAR = 41  # the second slot looks this many frames back
MAX_AHEAD = 8  # frames read ahead and run together through the head
SLOTS = 1 + FAR + MAX_AHEAD  # frame 0, and frames k - 41 .. k + 7 for a group starting at frame k


def context_frames(k: int) -> list[int]:
    """Positions (0-based, in processed frames) of the earlier frames frame k attends to."""
    return [0, max(0, k - FAR)] + [max(0, k - RECENT + i) for i in range(RECENT)]


def slot(frame: int) -> int:
    """Frame 0 keeps slot 0; the others take turns in the rest, each staying 49 frames."""
    return 0 if frame == 0 else 1 + (frame - 1) % (SLOTS - 1)


class StreamingEngine:
    """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]), one for one."""

    def __init__(self, model: VideoDepthAnything, input_size: int = 518, device=torch.device("cpu"), precision="fp32"):
        self.model, self.input_size, self.device, self.precision = model, input_size, device, precision
        self.memory = StreamMemory(SLOTS)
        self.yielded = 0
        self._group_end = 0

    def ready(self) -> int:
        """Frames computed but not yet handed out: the rest of the current group."""
        return self._group_end - self.yielded

    def finished(self) -> bool:
        """Whether every frame has been handed out: a stream learns of its end only by
        reading on, which a cancel does not do."""
        return False

    STATE_KEYS = frozenset({"frames", "slots", "memory"})  # of a snapshot

    def snapshot(self) -> dict | None:
        """How to go on after the frames yielded so far: every temporal block's keys and values
        of the frames later frames attend to (frame 0 and the last 41, on the CPU), or None
        in the middle of a group. A copy: it may be written while the stream goes on."""
        if self.yielded != self._group_end or not self.yielded:
            return None
        k = self.yielded
        slots = sorted({slot(f) for f in [0, *range(max(1, k - FAR), k)]})  # what frames from k on attend to
        return {"frames": k, "slots": slots, "memory": self.memory.export(self.model, slots)}

    def run(self, frames: Iterable[tuple[int, np.ndarray]], state: dict | None = None) -> Iterator:
        """Depth for `frames`; with `state` (a `snapshot`), `frames` are those after it."""
        k = 0
        if state is not None:
            k = self.yielded = self._group_end = state["frames"]
            self.memory.restore(self.model, state["memory"], state["slots"], self.device)
        inputs = read_ahead(frames, self.input_size)
        try:
            yield from self._run(inputs, k)
        finally:
            inputs.close()

    def _run(self, inputs: Iterator, k: int) -> Iterator:
        model, device = self.model, self.device
        first = next(inputs, None)
        if first is None:
            return
        frame_shape, (net_h, net_w) = first[1].shape[:2], first[2].shape[1:]
        images_per_call = per_call(device, image_tokens(net_h, net_w))
        network = FiniteDepth(model, device, self.precision)
        group = [first]  # frame 0 sees only itself, a window of another length: alone
        if k:
            group += islice(inputs, MAX_AHEAD - 1)
        while group:
            windows = [context_frames(k + i) + [k + i] if k + i else [0] for i in range(len(group))]
            self.memory.window = torch.tensor([[slot(f) for f in window] for window in windows], device=device)
            images = batch([x for _, _, x in group], device)

            def run_group(images=images, frames=len(group)):  # a rerun overwrites the group's own keys and values
                return model.decode(model.encode(images, images_per_call), frames, net_h, net_w, self.memory), None

            low, high = group[0][0], group[-1][0]
            depth, _ = network(run_group, f"frames {low}-{high}" if high != low else f"frame {low}")
            depth = to_frame_size(depth, frame_shape)
            k += len(group)
            self._group_end = k
            for (frame_index, rgb, _), d in zip(group, depth):
                self.yielded += 1
                yield frame_index, rgb, d
            group = list(islice(inputs, MAX_AHEAD))
