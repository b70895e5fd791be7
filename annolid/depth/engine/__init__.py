"""Frames in, depth out: the windowed (offline) and the streaming engine."""
from .device import autocast, pick_device, pick_precision, reuse_freed_memory
from .offline import offline_depth
from .streaming import streaming_depth
from .transform import FrameTransform

__all__ = [
    "FrameTransform",
    "autocast",
    "offline_depth",
    "pick_device",
    "pick_precision",
    "reuse_freed_memory",
    "streaming_depth",
]
