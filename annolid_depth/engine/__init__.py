"""Frames in, depth out: the windowed (offline) and the streaming engine."""
from ..errors import require_opencv

require_opencv()  # before a module of this package imports cv2
from .device import autocast, pick_device, pick_precision, reuse_freed_memory
from .offline import OfflineEngine, offline_depth
from .streaming import StreamingEngine, streaming_depth
from .transform import FrameTransform

__all__ = [
    "FrameTransform",
    "OfflineEngine",
    "StreamingEngine",
    "autocast",
    "offline_depth",
    "pick_device",
    "pick_precision",
    "reuse_freed_memory",
    "streaming_depth",
]
