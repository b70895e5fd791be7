"""The Video Depth Anything network (pure torch, no I/O).

The configurations (`config`: the encoders' names, the patch size) import without torch; the
network loads it when first named.
"""
from .config import ENCODERS, PATCH, EncoderConfig, encoder_config, image_tokens

__all__ = ["ENCODERS", "PATCH", "TEMPORAL_LEN", "EncoderConfig", "StreamMemory", "VideoDepthAnything", "encoder_config", "image_tokens"]


def __getattr__(name):
    if name in ("TEMPORAL_LEN", "StreamMemory", "VideoDepthAnything"):
        from . import vda

        return getattr(vda, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
