"""Non-finite depth: recomputed in FP32 after a reduced-precision overflow, a clear stop in FP32."""
import logging

import numpy as np
import pytest
import torch
from parity_recipe import recipe_state_dict

from annolid_depth import run_video_depth_anything
from annolid_depth.engine import OfflineEngine, StreamingEngine
from annolid_depth.errors import NonFiniteDepthError
from annolid_depth.model import VideoDepthAnything

CPU = torch.device("cpu")
FRAMES = [(i, np.random.default_rng(i).integers(0, 256, (42, 56, 3), dtype=np.uint8)) for i in range(10)]


@pytest.fixture(scope="module")
def recipe():
    return recipe_state_dict("vits")


def network(state, precision="fp32"):
    model = VideoDepthAnything("vits")
    model.load_state_dict(state)
    model.eval()
    return model if precision == "fp32" else model.hold_weights_in(torch.float16)


@pytest.mark.parametrize("engine, windows", [(StreamingEngine, 3), (OfflineEngine, 1)])
def test_a_half_precision_overflow_is_recomputed_in_fp32(recipe, engine, windows, caplog):
    # The head's next-to-last convolution scaled up: its outputs pass 65504, fp16's largest value.
    state = {**recipe, "head.scratch.output_conv1.weight": recipe["head.scratch.output_conv1.weight"] * 1e4}
    expected = np.stack([d for _, _, d in engine(network(state), 28).run(FRAMES)])
    assert np.abs(expected).max() > 65504
    with caplog.at_level(logging.WARNING):
        half = np.stack([d for _, _, d in engine(network(state, "fp16"), 28, CPU, "fp16").run(FRAMES)])
    assert np.isfinite(half).all()
    assert np.abs(half - expected).max() <= 0.01 * np.abs(expected).max()  # fp16-rounded weights, fp32 sums
    warnings = [r.getMessage() for r in caplog.records if "recomputed in FP32" in r.getMessage()]
    assert len(warnings) == windows and warnings[-1].endswith(f"({windows} time{'s' if windows > 1 else ''} in this run so far)")


@pytest.mark.parametrize("engine", [StreamingEngine, OfflineEngine])
def test_non_finite_depth_in_fp32_stops_with_advice(recipe, engine):
    bias = recipe["head.scratch.output_conv1.bias"].clone()
    bias[0] = float("nan")
    with pytest.raises(NonFiniteDepthError, match="in FP32. The checkpoint is damaged .* download it again"):
        list(engine(network({**recipe, "head.scratch.output_conv1.bias": bias}), 28).run(FRAMES))


def test_a_run_with_broken_weights_writes_nothing(recipe, video, tmp_path):
    state = {**recipe, "head.scratch.output_conv1.bias": recipe["head.scratch.output_conv1.bias"] * float("inf")}
    torch.save(state, tmp_path / "video_depth_anything_vits.pth")
    with pytest.raises(NonFiniteDepthError, match="frame 0: the network gave NaN or infinite depth in FP32"):
        run_video_depth_anything(video, tmp_path / "out", checkpoint_root=tmp_path, input_size=28, max_res=160, max_frames=4)
    assert not (tmp_path / "out" / "depth.ndjson").exists()
