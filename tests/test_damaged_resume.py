"""A resumed run reuses a partial output only once it holds what its resume point recorded:
each output damaged (a flipped bit, a cut, garbage, missing, a link in its place) before a
resume gives one warning naming the file and the uninterrupted run's outputs, never a damaged
byte in a published file and never a traceback."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import MEDIA_CLIP, square, write_json

from annolid_depth import run_video_depth_anything
from annolid_depth.io.records import decode_depth, iter_records

FRAMES = 48  # the colour range of the depth frames is fixed after 32: frame files exist before the cancel
OPTIONS = {"input_size": 28, "max_res": 128, "max_frames": FRAMES, "streaming": True, "save_npz": True,
           "save_depth_frames": True, "save_region_stats": True}
CANCEL_AT = 34  # frames handed out before the cancel: the resume point is at a group's end after them


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if not MEDIA_CLIP.exists():
        pytest.skip(f"test clip not found at {MEDIA_CLIP}")
    folder = tmp_path_factory.mktemp("videos")
    target = folder / "mice.mp4"
    target.write_bytes(MEDIA_CLIP.read_bytes())
    for frame in range(0, FRAMES, 3):  # a tracked animal on every third frame
        shapes = [square("mouse_1", 10 + frame, 10, 40 + frame, 30), square("mouse_2", 60, 20, 90, 50)]
        write_json(folder / "mice" / f"mice_{frame:09d}.json", {"shapes": shapes})
    return target


@pytest.fixture(scope="module")
def whole(clip, weights_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    run_video_depth_anything(clip, out, checkpoint_root=weights_dir, **OPTIONS)
    return out


@pytest.fixture(scope="module")
def cancelled(clip, weights_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A run cancelled after CANCEL_AT frames, once: each test resumes a copy of its folder."""
    out, seen = tmp_path_factory.mktemp("cancelled") / "out", []
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, frame_callback=seen.append,
                                      should_cancel=lambda: len(seen) >= CANCEL_AT, **OPTIONS)
    assert result["status"] == "cancelled" and CANCEL_AT <= result["frames"] < FRAMES
    return out, result


def cancelled_run(cancelled, out: Path) -> dict:
    shutil.copytree(cancelled[0], out, symlinks=True)
    return cancelled[1]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def assert_same_as(out: Path, reference: Path) -> None:
    ours, theirs = list(iter_records(out / "depth.ndjson")), list(iter_records(reference / "depth.ndjson"))
    assert [r["frame_index"] for r in ours] == [r["frame_index"] for r in theirs] == list(range(FRAMES))
    for a, b in zip(ours, theirs):
        expected = decode_depth(b)
        assert np.abs(decode_depth(a) - expected).max() <= float(expected.max() - expected.min()) / 65535 * 1.01
    with np.load(out / "mice_depths.npz") as a, np.load(reference / "mice_depths.npz") as b:
        np.testing.assert_array_equal(a["frame_indices"], b["frame_indices"])
        np.testing.assert_allclose(a["depths"], b["depths"], rtol=0, atol=2e-5 * float(b["depths"].max()))
    assert (out / "depth_regions.csv").read_text().count("\n") == (reference / "depth_regions.csv").read_text().count("\n")
    assert sorted(os.listdir(out / "depth_frames")) == sorted(os.listdir(reference / "depth_frames"))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())


def damage_npz_data(out):
    flip(out / "mice_depths.npz.partial", 256 + 1000)
    return "mice_depths.npz.partial"


def damage_npz_indices(out):
    path = out / "mice_depths.npz.idx.partial"
    path.write_bytes(b"\xff" * 8 + path.read_bytes()[8:])
    return "mice_depths.npz.partial"


def cut_region_table(out):
    path = out / "depth_regions.csv.partial"
    path.write_bytes(path.read_bytes()[:-40])
    return "depth_regions.csv.partial"


def remove_region_table(out):
    (out / "depth_regions.csv.partial").unlink()
    return "depth_regions.csv.partial"


def damage_records(out):
    flip(out / "depth.ndjson.partial", 3000)
    return "depth.ndjson.partial"


def remove_a_frame_file(out):
    (out / "depth_frames.partial" / "depth_00003.png").unlink()
    return "depth_frames.partial"


def state_of(out) -> Path:
    return out / json.loads((out / "run.json").read_text())["resume_point"]["state"]


def damage_state(out):
    flip(state_of(out), 2000)
    return state_of(out).name


@pytest.mark.parametrize("damage", [damage_npz_data, damage_npz_indices, cut_region_table, remove_region_table,
                                    damage_records, remove_a_frame_file, damage_state])
def test_a_damaged_partial_output_starts_the_run_over_with_one_warning(clip, weights_dir, whole, cancelled, tmp_path, damage,
                                                                        caplog):
    out = tmp_path / "out"
    cancelled_run(cancelled, out)
    name = damage(out)
    seen = []
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, frame_callback=seen.append,
                                      **OPTIONS)
    assert result["status"] == "complete" and seen[0]["frame_index"] == 0  # started over
    said = [line for line in caplog.text.splitlines() if "starting over" in line]
    assert len(said) == 1 and name in said[0], caplog.text
    assert_same_as(out, whole)


def test_an_undamaged_resume_goes_on_from_its_resume_point(clip, weights_dir, whole, cancelled, tmp_path, caplog):
    out = tmp_path / "out"
    cancelled = cancelled_run(cancelled, out)
    seen = []
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, frame_callback=seen.append,
                                      **OPTIONS)
    assert result["status"] == "complete" and seen[0]["frame_index"] == cancelled["frames"]
    assert "starting over" not in caplog.text and not result["warnings"]
    assert_same_as(out, whole)


@pytest.mark.parametrize("marks", [{"depth_ndjson": 1000}, {"depth_ndjson": {"bytes": -5, "crc32": 0}},
                                   {"depth_ndjson": {"bytes": "x", "crc32": 0}},
                                   {"region_stats": {"bytes": 10**9, "crc32": 1, "annotated": 2}}])
def test_marks_of_the_wrong_type_or_range_start_the_run_over(clip, weights_dir, whole, cancelled, tmp_path, marks, caplog):
    out = tmp_path / "out"
    cancelled_run(cancelled, out)
    record = json.loads((out / "run.json").read_text())
    record["resume_point"]["marks"].update(marks)
    (out / "run.json").write_text(json.dumps(record))
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, **OPTIONS)
    assert result["status"] == "complete" and "starting over" in caplog.text
    assert_same_as(out, whole)


def test_a_resume_state_without_its_contents_starts_the_run_over(clip, weights_dir, whole, cancelled, tmp_path, caplog):
    import hashlib

    import torch

    out = tmp_path / "out"
    cancelled_run(cancelled, out)
    record = json.loads((out / "run.json").read_text())
    torch.save({"frames": record["resume_point"]["frames"]}, state_of(out))  # with a matching checksum
    record["resume_point"]["state_sha256"] = hashlib.sha256(state_of(out).read_bytes()).hexdigest()
    (out / "run.json").write_text(json.dumps(record))
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, **OPTIONS)
    assert result["status"] == "complete"
    assert "lacks memory, slots" in caplog.text and "starting over" in caplog.text
    assert_same_as(out, whole)
