"""The family's configurations: the encoders by name, and the patch size.

Plain Python, without torch, so the options, the command line and the weight registry can
name the encoders without loading the network.
"""
from __future__ import annotations

from dataclasses import dataclass

PATCH = 14  # pixels a side of the square each encoder token sees


@dataclass(frozen=True)
class EncoderConfig:
    embed_dim: int
    depth: int
    heads: int
    features: int
    out_channels: tuple[int, int, int, int]
    layers: tuple[int, int, int, int]  # blocks whose outputs feed the head


ENCODERS = {
    "vits": EncoderConfig(384, 12, 6, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": EncoderConfig(768, 12, 12, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": EncoderConfig(1024, 24, 16, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}


def encoder_config(encoder: str) -> EncoderConfig:
    try:
        return ENCODERS[encoder]
    except KeyError:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}") from None


def image_tokens(h: int, w: int) -> int:
    """The encoder's tokens for an h x w image: its patches and the class token."""
    return (h // PATCH) * (w // PATCH) + 1
