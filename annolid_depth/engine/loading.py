"""The network with its weights, ready to run: on its device, in its precision, by its backend."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import torch

from ..model import VideoDepthAnything
from ..weights import load_weights
from .backends import load_backend
from .device import DTYPES
from .offline import OfflineEngine
from .streaming import StreamingEngine

# A compiled backend runs only once it gives torch's depth on a small input, through both
# engines: within the parity tolerance in FP32 (max_rel, rel_l2; tests/parity_recipe.py), within
# bf16's own error (about 1.4e-2 of the range, README) in bf16.
SELF_CHECK_TOLERANCE = {"fp32": (3e-5, 1e-5), "bf16": (5e-2, 2e-2)}
SELF_CHECK_INPUT = 28


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
        compiled = load_backend(model, backend, Path(checkpoint), precision)
        if compiled is model:
            return model
        failure = self_check(compiled, model, precision)
        if failure is None:
            return compiled
        warnings.warn(f"backend {backend} gave depth different from torch's on a self-check ({failure}); running on torch",
                      stacklevel=2)
    return model if precision == "fp32" else model.hold_weights_in(DTYPES[precision])


def self_check_frames(count: int = 3) -> list[np.ndarray]:
    """Small frames with structure in them (gradients and a moving square), the same every run."""
    y, x = np.mgrid[0:SELF_CHECK_INPUT, 0:2 * SELF_CHECK_INPUT]
    frames = []
    for i in range(count):
        rgb = np.stack([x * 4, y * 8, (x + y + 20 * i) % 256], axis=-1).astype(np.uint8)
        rgb[6:16, 8 + 5 * i : 18 + 5 * i] = (230, 40, 90)
        frames.append(rgb)
    return frames


def self_check(compiled, model: VideoDepthAnything, precision: str) -> str | None:
    """None when `compiled` gives `model`'s FP32 depth (in `precision`'s tolerance) on a small
    input in both engines, else what differed."""
    limit_max, limit_l2 = SELF_CHECK_TOLERANCE[precision]
    frames = list(enumerate(self_check_frames()))
    for engine in (StreamingEngine, OfflineEngine):
        try:
            ours = np.stack([d for _, _, d in engine(compiled, SELF_CHECK_INPUT, precision=precision).run(frames)])
        except Exception as exc:  # a runtime that cannot run the graphs at all
            return f"{type(exc).__name__}: {exc}"
        truth = np.stack([d for _, _, d in engine(model, SELF_CHECK_INPUT).run(frames)]).astype(np.float64)
        max_rel = float(np.abs(ours - truth).max() / max(truth.max() - truth.min(), 1e-12)) if np.isfinite(ours).all() else float("inf")
        rel_l2 = float(np.linalg.norm(ours - truth) / max(np.linalg.norm(truth), 1e-12))
        if not (max_rel <= limit_max and rel_l2 <= limit_l2):
            return f"{engine.__name__}: max_rel {max_rel:.2g}, rel_l2 {rel_l2:.2g}"
    return None
