"""Frames in, depth out: the windowed (offline) and the streaming engine, and what they run on."""
from ..errors import require_opencv

require_opencv()  # before a module of this package imports cv2
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from .device import autocast, pick_device, pick_precision, reuse_freed_memory
from .offline import OfflineEngine
from .streaming import StreamingEngine
from .transform import FrameTransform


class Engine(Protocol):
    """What the runner relies on in an engine (`OfflineEngine`, `StreamingEngine`)."""

    STATE_KEYS: frozenset[str]  # what a `snapshot` holds, checked before a resume

    def run(self, frames: Iterable[tuple[int, np.ndarray]], state: dict | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(frame_index, rgb) in order -> (frame_index, rgb, depth float32 [h, w]) in order;
        with `state` (a `snapshot`), `frames` are those after it."""

    def snapshot(self) -> dict | None:
        """How to go on after the frames handed out so far (None between engine boundaries)."""

    def ready(self) -> int:
        """Frames computed but not yet handed out (a cancel finishes them)."""

    def finished(self) -> bool:
        """Whether every frame of the video has been handed out."""


__all__ = [
    "Engine",
    "FrameTransform",
    "OfflineEngine",
    "StreamingEngine",
    "autocast",
    "pick_device",
    "pick_precision",
    "reuse_freed_memory",
]
