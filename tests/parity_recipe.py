"""Deterministic synthetic weights (recipe `vda-parity-recipe-v1` of the shared parity README).

The weights are a function of the official state_dict key list only, so the
project's model and the reference code can be compared without the published
checkpoints. Key lists come from `../shared/parity/keys_<encoder>.json` when
present, else from the project's own model (whose key list is tested against
those files).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from annolid_depth.model.vda import sinusoid_table  # checked against fixed_buffers.npz in test_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PARITY = SHARED / "parity"

_SPECIAL = {"pretrained.cls_token", "pretrained.pos_embed", "pretrained.mask_token"}


def official_keys(encoder: str) -> list[tuple[str, list[int]]]:
    path = PARITY / f"keys_{encoder}.json"
    if path.exists():
        return [(name, list(shape)) for name, shape in json.loads(path.read_text())]
    from annolid_depth.model import VideoDepthAnything

    with torch.device("meta"):
        model = VideoDepthAnything(encoder)
    return [(name, list(t.shape)) for name, t in model.state_dict().items()]


def _mean_std(name: str, shape: list[int]) -> tuple[float, float]:
    if name in _SPECIAL:
        return 0.0, 0.5
    if name.endswith(".gamma"):
        return 0.5, 0.1
    if name.endswith(".bias"):
        return 0.0, 0.02
    if len(shape) == 1:
        return 1.0, 0.1
    if name == "head.scratch.output_conv2.2.weight":
        return 1.0 / math.sqrt(32), 1.0 / math.sqrt(32)
    return 0.0, 1.0 / math.sqrt(math.prod(shape[1:]))


def recipe_state_dict(encoder: str = "vits") -> dict[str, torch.Tensor]:
    """The recipe's weights, keyed and ordered as the official state_dict."""
    state = {}
    for k, (name, shape) in enumerate(official_keys(encoder)):
        if name.endswith(".pos_encoder.pe"):
            state[name] = sinusoid_table(shape[-1], shape[1])
            continue
        mean, std = _mean_std(name, shape)
        gen = torch.Generator().manual_seed(k)
        state[name] = torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean
    return state


def write_checkpoint(path: Path, encoder: str = "vits") -> Path:
    """A `.pth` in the published layout (a plain state dict) with the recipe's weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(recipe_state_dict(encoder), path)
    return path


def errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The parity README's figures: max error over the range, and relative L2."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.abs(a64 - b64).max() / (b64.max() - b64.min())), float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))
