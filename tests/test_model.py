import json

import numpy as np
import pytest
import torch
from parity_recipe import errors, recipe_state_dict

from annolid_depth.model import ENCODERS, VideoDepthAnything


@pytest.fixture(scope="module")
def vits():
    model = VideoDepthAnything("vits")
    model.load_state_dict(recipe_state_dict("vits"), strict=True)
    return model.eval()


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_state_dict_matches_published_checkpoint_keys(parity_dir, encoder):
    expected = [[name, shape] for name, shape in json.loads((parity_dir / f"keys_{encoder}.json").read_text())]
    with torch.device("meta"):
        model = VideoDepthAnything(encoder)
    assert [[name, list(t.shape)] for name, t in model.state_dict().items()] == expected


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_fixed_position_tables_equal_the_reference(parity_dir, encoder):
    fixed = np.load(parity_dir / "fixed_buffers.npz")
    state = VideoDepthAnything(encoder).state_dict()
    names = [k.split("/", 1)[1] for k in fixed.files if k.startswith(encoder + "/")]
    assert len(names) == 8
    for name in names:
        # exp, sin and cos are vectorised differently per instruction set (AVX2, AVX512): the
        # angle (up to 31 rad, where one float32 step is 1.9e-6) may differ in its last bits.
        # The published checkpoints carry the table itself, so this only checks the formula.
        np.testing.assert_allclose(state[name].numpy(), fixed[f"{encoder}/{name}"], rtol=0, atol=1e-5)


def test_forward_reproduces_reference(parity_dir, vits):
    fixture = np.load(parity_dir / "vits_forward.npz")
    with torch.no_grad():
        depth = vits(torch.from_numpy(fixture["x"])).numpy()
    assert depth.shape == fixture["depth"].shape
    max_rel, rel_l2 = errors(depth, fixture["depth"])
    assert max_rel <= 3e-5 and rel_l2 <= 1e-5, (max_rel, rel_l2)


def test_parameter_counts_grow_with_encoder():
    counts = {}
    for encoder in ENCODERS:
        with torch.device("meta"):
            counts[encoder] = sum(p.numel() for p in VideoDepthAnything(encoder).parameters())
    # Published sizes: about 28M, 113M and 382M parameters.
    assert 25e6 < counts["vits"] < 32e6
    assert 100e6 < counts["vitb"] < 125e6
    assert 370e6 < counts["vitl"] < 400e6


@pytest.mark.parametrize("frames,height,width", [(1, 14, 14), (3, 28, 42), (32, 42, 28), (5, 70, 98)])
def test_any_multiple_of_14_and_1_to_32_frames(vits, frames, height, width):
    x = torch.randn(1, frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        depth = vits(x)
    assert depth.shape == (1, frames, height, width)
    assert torch.isfinite(depth).all() and (depth >= 0).all()


def test_forward_is_deterministic_and_batch_independent(vits):
    x = torch.randn(2, 4, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        both, again = vits(x), vits(x)
        second_alone = vits(x[1:])
    torch.testing.assert_close(both, again, rtol=0, atol=0)
    torch.testing.assert_close(both[1:], second_alone, rtol=1e-5, atol=1e-5)


def test_calls_of_fewer_images_or_pixels_give_the_same_depth(vits):
    x = torch.randn(1, 5, 3, 28, 42, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole, split = vits(x), vits(x, images_per_call=2, pixels_per_call=3)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)


def test_temporal_modules_mix_frames(vits):
    """Changing one frame changes the depth of the others: the head really looks across time."""
    x = torch.randn(1, 4, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    y = x.clone()
    y[0, 3] = torch.randn(3, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert not torch.allclose(vits(x)[0, 0], vits(y)[0, 0])


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ValueError, match="vits, vitb, vitl"):
        VideoDepthAnything("vitg")


@pytest.mark.parametrize(
    "shape,message",
    [((1, 2, 3, 30, 28), "multiples of 14"), ((2, 3, 28, 28), r"\[batch, time, 3, height, width\]"), ((1, 33, 3, 14, 14), "1 to 32 frames")],
)
def test_bad_inputs_get_clear_errors(vits, shape, message):
    with pytest.raises(ValueError, match=message):
        vits(torch.zeros(shape))
