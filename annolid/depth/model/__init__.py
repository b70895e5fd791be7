"""The Video Depth Anything network (pure torch, no I/O)."""
from .vda import ENCODERS, PATCH, TEMPORAL_LEN, EncoderConfig, StreamMemory, VideoDepthAnything, encoder_config

__all__ = ["ENCODERS", "PATCH", "TEMPORAL_LEN", "EncoderConfig", "StreamMemory", "VideoDepthAnything", "encoder_config"]
