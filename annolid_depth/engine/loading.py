"""The network with its weights, ready to run: on its device, in its precision, by its backend."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from ..model import VideoDepthAnything
from ..weights import load_weights
from .backends import load_backend
from .device import DTYPES


@functools.lru_cache(maxsize=1)
def load_model(
    checkpoint: str, modified_ns: int, encoder: str, metric: bool, device: str, precision: str = "fp32",
    backend: str = "torch",
) -> VideoDepthAnything:
    """The network with its weights, on `device`, ready for `precision`, run by `backend` (as
    `pick_backend` chose it); kept for the next run in this process (`modified_ns` makes a
    replaced checkpoint file load afresh). Convolution weights are channels-last: the head runs
    faster on a CPU that way, with identical results."""
    model = VideoDepthAnything(encoder, metric)
    load_weights(model, Path(checkpoint))
    model = model.eval().to(device, memory_format=torch.channels_last)
    if backend != "torch":
        return load_backend(model, backend, Path(checkpoint), precision)
    return model if precision == "fp32" else model.hold_weights_in(DTYPES[precision])
