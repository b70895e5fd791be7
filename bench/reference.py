"""The reference implementation, timed on the same frames, weights and threads as ours.

The benches take a checkout of it (`--reference DIR`); it needs `einops` and `easydict`
beside torch. Its only torchvision import is `Compose`, provided here, since PyPI's
torchvision does not install beside the CPU build of torch.
"""
from __future__ import annotations

import contextlib
import io
import sys
import time
import types
from pathlib import Path

import numpy as np
from parity_recipe import recipe_state_dict


def _compose_only_torchvision() -> None:
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")

    def compose(steps):
        def apply(sample):
            for step in steps:
                sample = step(sample)
            return sample

        return apply

    tv.transforms.Compose = compose
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms})


def reference_fps(reference: Path, frames: list[np.ndarray], size: int, streaming: bool, fp32: bool = True) -> float:
    """Frames per second of the reference's own inference call on `frames` (RGB uint8), with
    the parity recipe's vits weights; its I/O is not counted."""
    _compose_only_torchvision()
    if str(reference) not in sys.path:
        sys.path.insert(0, str(reference))
    module = "video_depth_anything.video_depth_stream" if streaming else "video_depth_anything.video_depth"
    with quiet():  # it prints a notice on import and a progress bar per window
        cls = __import__(module, fromlist=["VideoDepthAnything"]).VideoDepthAnything
        model = cls(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
        model.load_state_dict(recipe_state_dict("vits"), strict=True)
        model.eval()
        start = time.perf_counter()
        if streaming:
            for frame in frames:
                model.infer_video_depth_one(frame, input_size=size, device="cpu", fp32=fp32)
        else:
            model.infer_video_depth(np.stack(frames), 24, input_size=size, device="cpu", fp32=fp32)
        return len(frames) / (time.perf_counter() - start)


def quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack
