import copy
import itertools

import numpy as np
import pytest
import torch
from helpers import ENGINES, synthetic_frames
from parity_recipe import errors, recipe_state_dict

from annolid_depth.engine import (
    OfflineEngine,
    StreamingEngine,
    device,
    pick_device,
    pick_precision,
)
from annolid_depth.engine.device import cpu_runs_bf16, per_call
from annolid_depth.engine.streaming import MAX_AHEAD, SLOTS, context_frames, slot
from annolid_depth.engine.transform import READ_AHEAD, FrameTransform, effective_input_size, network_shape, to_frame_size
from annolid_depth.model import VideoDepthAnything


@pytest.fixture(scope="module")
def vits():
    model = VideoDepthAnything("vits")
    model.load_state_dict(recipe_state_dict("vits"), strict=True)
    return model.eval()


class CountingSource:
    """A frame source that records how far the engine has read."""

    def __init__(self, count):
        self.frames, self.taken = synthetic_frames(count), 0

    def __iter__(self):
        for item in self.frames:
            self.taken += 1
            yield item


@pytest.mark.parametrize("kind", ["offline", "stream"])
def test_engines_reproduce_reference(parity_dir, vits, kind):
    fixture = np.load(parity_dir / f"vits_{kind}.npz")
    out = list(ENGINES[kind](vits, input_size=int(fixture["input_size"])).run(enumerate(fixture["frames"])))
    assert [i for i, _, _ in out] == list(range(len(fixture["frames"])))
    depth = np.stack([d for _, _, d in out])
    max_rel, rel_l2 = errors(depth, fixture["depth"])
    assert max_rel <= 3e-5 and rel_l2 <= 1e-5, (max_rel, rel_l2)


def windows_as_the_reference(model, frames, input_size):
    """The reference's windowed algorithm, restated literally (parity README 3.3): padded
    video, full 32-frame forwards with keyframe slots, alignment at frame size."""
    transform = FrameTransform(*frames[0].shape[:2], input_size)
    n = len(frames)
    padded = list(frames) + [frames[-1]] * ((22 - n % 22) % 22 + 10)
    out, ref, prev = [], None, None
    for s in range(0, n, 22):
        inp = torch.from_numpy(np.stack([transform(f) for f in padded[s : s + 32]]))[None]
        if prev is not None:
            inp[:, :10] = prev[:, [0, 12, 24, 25, 26, 27, 28, 29, 30, 31]]
        with torch.no_grad():
            d = to_frame_size(model(inp)[0], transform.frame_shape)
        prev = inp
        if ref is None:
            out, ref = list(d), [d[0], d[12]]
            continue
        p, t = np.concatenate(d[:2]), np.concatenate(ref)
        a00, a01, a11, b0, b1 = np.sum(p * p), np.sum(p), np.float32(p.size), np.sum(p * t), np.sum(t)
        det = a00 * a11 - a01 * a01
        scale, shift = ((a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det) if det != 0 else (1.0, 0.0)
        fitted = np.maximum(d * scale + shift, 0)
        weights = [0.0] + [i * (1 / 7) for i in range(1, 7)] + [1.0]
        for i in range(8):
            out[-8 + i] = out[-8 + i] * (1 - weights[i]) + fitted[2 + i] * weights[i]
        out += list(fitted[10:])
        ref = [ref[0], fitted[12]]
    return np.stack(out[:n])


@pytest.mark.parametrize("count", [1, 12, 13, 31, 32, 33, 44, 45, 54, 55, 66, 67, 77])
def test_offline_matches_the_reference_windows_at_every_length(vits, count):
    """Clip ends are where the engine skips work (padding encoded once, unused slots not
    decoded): its depth must still be the reference's, frame for frame."""
    frames = [rgb for _, rgb in synthetic_frames(count, 28, 42)]
    expected = windows_as_the_reference(vits, frames, 28)
    depth = np.stack([d for _, _, d in OfflineEngine(vits, input_size=28).run(enumerate(frames))])
    max_rel, rel_l2 = errors(depth, expected)
    assert max_rel <= 3e-5 and rel_l2 <= 1e-5, (max_rel, rel_l2)


def test_network_input_matches_reference_transform(parity_dir):
    fixture = np.load(parity_dir / "vits_offline.npz")
    transform = FrameTransform(96, 170, int(fixture["input_size"]))
    assert transform.input_size == int(fixture["effective_input_size"])
    np.testing.assert_allclose(transform(fixture["frames"][0]), fixture["net_input_frame0"], atol=2e-5)


@pytest.mark.parametrize(
    "h,w,size,expected",
    [(96, 170, 112, (112, 196)), (540, 960, 518, (518, 924)), (48, 63, 48, (56, 56)), (160, 90, 112, (196, 112))],
)
def test_network_shape_follows_reference_rounding(h, w, size, expected):
    assert network_shape(h, w, size) == expected


def test_wide_videos_get_a_smaller_input_size():
    assert effective_input_size(100, 250, 518) == 364
    assert network_shape(100, 250, 364) == (364, 910)
    assert effective_input_size(540, 960, 518) == 518


@pytest.mark.parametrize("kind", ["offline", "stream"])
@pytest.mark.parametrize("count", [1, 5, 23, 45])
def test_every_frame_comes_out_once_in_order(vits, kind, count):
    out = list(ENGINES[kind](vits, input_size=14).run(synthetic_frames(count)))
    assert [i for i, _, _ in out] == [3 * i for i in range(count)]
    for _, rgb, depth in out:
        assert depth.shape == rgb.shape[:2] == (20, 28) and depth.dtype == np.float32


def test_offline_reads_about_one_window_ahead(vits):
    source = CountingSource(200)
    engine = OfflineEngine(vits, input_size=14).run(source)
    early = READ_AHEAD + 1  # decoded ahead on the reading thread: its queue and the frame in its hand
    next(engine)
    assert 32 <= source.taken <= 32 + early  # the first window, and what is read ahead
    for _ in range(23):
        next(engine)
    assert 32 <= source.taken <= 32 + early  # frames 0..23 are final after the first window
    next(engine)
    assert 32 + 22 <= source.taken <= 32 + 22 + early
    assert len(list(engine)) == 200 - 25


def test_streaming_reads_at_most_one_group_ahead(vits):
    source = CountingSource(60)
    for produced, _ in enumerate(StreamingEngine(vits, input_size=14).run(source), start=1):
        assert produced <= source.taken <= produced + MAX_AHEAD - 1 + READ_AHEAD + 1
    assert source.taken == 60


def test_streaming_groups_stay_whole_when_the_encoder_takes_fewer_images(vits, monkeypatch):
    """Large inputs: the encoder takes its `per_call` images at a time, but the head still
    runs the whole group, so the stored keys and values are read once per group, not per
    frame; the depth is that of the default run, to rounding."""
    frames = list(synthetic_frames(20))
    default = np.stack([d for _, _, d in StreamingEngine(vits, input_size=14).run(frames)])
    monkeypatch.setattr(device, "CPU_TOKENS", 1)  # one image a call, as at input 518
    encoder_calls, head_calls = [], []
    monkeypatch.setattr(vits.pretrained, "forward", _recorder(vits.pretrained.forward, encoder_calls))
    monkeypatch.setattr(vits.head, "forward", _recorder(vits.head.forward, head_calls))
    small_calls = np.stack([d for _, _, d in StreamingEngine(vits, input_size=14).run(frames)])
    assert encoder_calls == [1] * 20 and head_calls == [1, 8, 8, 3]
    max_rel, rel_l2 = errors(small_calls, default)  # matrix products of another size round differently
    assert max_rel <= 1e-4 and rel_l2 <= 1e-5, (max_rel, rel_l2)


def _recorder(forward, sizes):
    def call(x, *args, **kwargs):
        sizes.append(len(x) if isinstance(x, torch.Tensor) else len(x[0]))
        return forward(x, *args, **kwargs)

    return call


def test_a_cpu_call_takes_about_cpu_tokens_and_a_gpu_call_all():
    assert per_call(torch.device("cpu"), 145) == 28  # 4096 // 145: a 168 x 168 image's tokens
    assert per_call(torch.device("cpu"), 5000) == 1
    assert per_call(torch.device("cuda"), 145) is None


def test_streaming_window_is_the_reference_cache_rule():
    """Replays the reference's list bookkeeping and compares with the closed form."""
    ids = [0] * 32
    for k in range(1, 120):
        window = ids[0:2] + ids[-29:]
        assert window == context_frames(k)
        ids.append(k)
        if k + 32 > 42:
            del ids[1]


@pytest.mark.parametrize("group", range(1, MAX_AHEAD + 1))
def test_streaming_slots_hold_every_frame_a_window_needs(group):
    """A group of frames stores all its keys and values before any of them attends; no slot
    may be taken while a window of the group still needs its frame."""
    holder, k = {0: 0}, 1
    while k < 300:
        members = range(k, k + group)
        for f in members:
            holder[slot(f)] = f
        for f in members:
            assert all(holder[slot(g)] == g for g in context_frames(f) + [f])
        k += group
    assert max(holder) < SLOTS


def test_offline_metric_model_skips_alignment(vits):
    """Metric depth is absolute: later windows are not rescaled, so a metric run differs."""
    frames = list(synthetic_frames(40))
    relative = [d for _, _, d in OfflineEngine(vits, input_size=14).run(frames)]
    vits.metric = True
    try:
        metric = [d for _, _, d in OfflineEngine(vits, input_size=14).run(frames)]
    finally:
        vits.metric = False
    np.testing.assert_array_equal(relative[0], metric[0])  # first window: never scaled
    assert not np.allclose(relative[39], metric[39])


def test_bf16_on_cpu_is_close_to_fp32(vits):
    frames = list(synthetic_frames(6, 28, 42))
    exact = np.stack([d for _, _, d in StreamingEngine(vits, input_size=28).run(frames)])
    fast = np.stack([d for _, _, d in StreamingEngine(vits, input_size=28, precision="bf16").run(frames)])
    max_rel, _ = errors(fast, exact)
    assert 0 < max_rel < 0.05


@pytest.mark.skipif(not cpu_runs_bf16(), reason="this CPU has no bf16 arithmetic")
def test_weights_held_in_bf16_give_the_numbers_of_autocast(vits):
    frames = list(synthetic_frames(6, 28, 42))
    autocast_only = np.stack([d for _, _, d in StreamingEngine(vits, input_size=28, precision="bf16").run(frames)])
    held = copy.deepcopy(vits).hold_weights_in(torch.bfloat16)
    assert held.pretrained.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert held.head.scratch.output_conv2[0].weight.dtype == torch.float32
    assert held.pretrained.blocks[0].norm1.weight.dtype == torch.float32
    cast_once = np.stack([d for _, _, d in StreamingEngine(held, input_size=28, precision="bf16").run(frames)])
    np.testing.assert_array_equal(cast_once, autocast_only)


def test_device_and_precision_choice():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu9")
    cpu = torch.device("cpu")
    assert pick_precision(cpu) == "fp32"
    if cpu_runs_bf16():
        assert pick_precision(cpu, precision="bf16") == "bf16"
    else:
        with pytest.raises(ValueError, match="no bf16 arithmetic"):
            pick_precision(cpu, precision="bf16")
    with pytest.raises(ValueError, match="fp32, bf16"):
        pick_precision(cpu, precision="fp16")


@pytest.mark.parametrize("kind", ["offline", "stream"])
@pytest.mark.parametrize("stop_after", [1, 25, 31, 40])
def test_a_cancel_finishes_the_computed_frames_at_a_resume_point(vits, kind, stop_after):
    """As the runner cancels: after any frame, the frames already computed (`ready`) lead to
    a snapshot, also inside the last window."""
    engine = {"offline": OfflineEngine, "stream": StreamingEngine}[kind](vits, input_size=14)
    frames = engine.run(synthetic_frames(40))
    done = len(list(itertools.islice(frames, stop_after)))
    done += len(list(itertools.islice(frames, engine.ready())))
    state = engine.snapshot()
    assert state is not None and state["frames"] == done >= stop_after
    assert engine.finished() == (kind == "offline" and done == 40)  # offline: 40 frames are windows at 0 and 22


def test_frame_size_change_midway_is_an_error(vits):
    frames = [(0, np.zeros((20, 28, 3), np.uint8)), (1, np.zeros((28, 20, 3), np.uint8))]
    with pytest.raises(ValueError, match="frame size changed"):
        list(StreamingEngine(vits, input_size=14).run(frames))


@pytest.mark.parametrize("kind, count", [("offline", 49), ("offline", 47), ("stream", 50)])
def test_a_snapshot_resumes_to_the_same_depth(vits, kind, count, tmp_path):
    """Stop after each resumable point, save the state to disk, resume in a fresh engine from
    the frames after it: every depth equals the uninterrupted run's."""
    engines = {"offline": OfflineEngine, "stream": StreamingEngine}
    whole = [d for _, _, d in engines[kind](vits, input_size=28).run(synthetic_frames(count))]
    engine = engines[kind](vits, input_size=28)
    points = []
    for _, _, _ in engine.run(synthetic_frames(count)):
        if (state := engine.snapshot()) is not None:
            torch.save(state, tmp_path / f"{state['frames']}.pt")
            points.append(state["frames"])
    assert len(points) >= 3 and points[-1] == count  # the last follows the last frame: a cancel there finishes
    points = points[:-1]
    for done in {points[0], points[len(points) // 2], points[-1]}:
        state = torch.load(tmp_path / f"{done}.pt", weights_only=True)
        rest = list(engines[kind](vits, input_size=28).run(itertools.islice(synthetic_frames(count), done, None), state))
        assert [i for i, _, _ in rest] == [3 * i for i in range(done, count)]
        worst = max(float(np.abs(d - whole[done + j]).max() / (whole[done + j].max() - whole[done + j].min()))
                    for j, (_, _, d) in enumerate(rest))
        assert worst < 1e-5, (done, worst)
