"""Frame -> network input, exactly as the reference prepares it.

Sizes follow the reference's rules to the rounding mode (numpy's half-to-even), since a
network input one patch larger or smaller changes every depth value.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..background import Relay
from ..model import PATCH

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SCALE, SHIFT = 1 / (255 * STD), -MEAN / STD  # uint8 levels -> normalised, in one multiply-add
READ_AHEAD = 8  # frames decoded and resized ahead of the network
WIDE_RATIO = 1.78  # wider videos get a smaller input size, as in the reference


def effective_input_size(height: int, width: int, input_size: int) -> int:
    """The short-side target after the reference's rule for videos wider than 16:9."""
    ratio = max(height, width) / min(height, width)
    if ratio > WIDE_RATIO:
        input_size = int(input_size * 1.777 / ratio)
        input_size = round(input_size / PATCH) * PATCH
    return input_size


def network_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W), multiples of PATCH, with the short side at least `size` and the aspect kept."""
    scale = max(size / height, size / width)

    def fit(v: float) -> int:
        y = int(np.round(v / PATCH) * PATCH)
        return y if y >= size else int(np.ceil(v / PATCH) * PATCH)

    return fit(scale * height), fit(scale * width)


class FrameTransform:
    """Turns RGB uint8 frames of one video into normalised network inputs, one thread at a
    time: each frame is converted to float in one buffer kept for the video. A fresh float
    frame each time cost more in page faults than in the conversion (new memory is zeroed
    by the kernel; 11 MB at 1280x720; bench/bench_pipeline.py measures it)."""

    def __init__(self, height: int, width: int, input_size: int):
        self.frame_shape = (height, width)
        self._float = np.empty((height, width, 3), np.float32)
        self.input_size = effective_input_size(height, width, input_size)
        self.net_shape = network_shape(height, width, self.input_size)
        if min(self.net_shape) < PATCH:
            raise ValueError(f"input_size {input_size} is too small for a {width}x{height} video; use at least {PATCH}")

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """[h, w, 3] uint8 -> [3, H, W] float32. The bicubic resize works on the float image,
        unclipped, as the reference's; scaling to [0, 1] and normalising are one linear map,
        applied after the resize, on the smaller image (equal to the reference's order within
        float rounding)."""
        if rgb.shape[:2] != self.frame_shape:
            raise ValueError(f"frame size changed mid-video: {rgb.shape[:2]} after {self.frame_shape}")
        h, w = self.net_shape
        np.copyto(self._float, rgb)
        img = cv2.resize(self._float, (w, h), interpolation=cv2.INTER_CUBIC)
        img *= SCALE
        img += SHIFT
        return np.ascontiguousarray(img.transpose(2, 0, 1))


def read_ahead(frames: Iterable[tuple[int, np.ndarray]], input_size: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame_index, rgb) -> (frame_index, rgb, network input), up to READ_AHEAD frames early
    on a thread of their own: decoding and resizing (FFmpeg, OpenCV and numpy release the
    GIL) run beside the network. Closing the iterator stops the thread."""

    def prepare():
        transform = None
        for frame_index, rgb in frames:
            transform = transform or FrameTransform(*rgb.shape[:2], input_size)
            yield frame_index, rgb, transform(rgb)

    return iter(Relay(READ_AHEAD, "read ahead", items=prepare()))


def batch(inputs: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Network inputs of a few frames -> [N, 3, H, W] on `device`."""
    return torch.from_numpy(np.stack(inputs)).to(device)


def to_frame_size(depth: torch.Tensor, frame_shape: tuple[int, int]) -> np.ndarray:
    """[N, H, W] network-size depth -> [N, h, w] float32 at the frame size (as the reference),
    resized on the depth's device and handed out as a numpy array."""
    with torch.no_grad():
        depth = F.interpolate(depth.float().unsqueeze(1), size=frame_shape, mode="bilinear", align_corners=True)
        return depth.squeeze(1).cpu().numpy()
