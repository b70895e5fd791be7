"""The floor in a run's outputs: depth_floor.json, heights in depth_regions.csv and the path
plot, written by the run's sinks on arenas of known geometry (`scenes.py`), resumed at any
point, and rebuilt from depth.ndjson files, Annolid's included."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_video, read_table, write_json
from PIL import Image
from scenes import relative
from test_floor import ARENA, angle_deg, noisy_walk, walk

from annolid_depth.errors import OutputError
from annolid_depth.io.records import depth_kind, encode_record, record_line
from annolid_depth.io.sinks import ResumePoint, RunInfo, build_sinks
from annolid_depth.recompute import recompute_region_stats
from annolid_depth.settings import DepthSettings

FRAMES = 12  # more than the floor's sample of 8


def arena_info(root: Path, resume: ResumePoint | None = None, **settings) -> RunInfo:
    settings = {"metric": True, "focal_length_x": ARENA.focal, "focal_length_y": ARENA.focal, "save_region_stats": True,
                **settings}
    return RunInfo(root / "videos" / "mice.mp4", root / "out", ARENA.width, ARENA.height, 10.0,
                   DepthSettings(**settings), resume=resume)


def annotate(root: Path, frames=range(FRAMES)) -> None:
    """The two mice as Annolid's per-frame files."""
    for f in frames:
        write_json(root / "videos" / "mice" / f"mice_{f:09d}.json",
                   {"shapes": ARENA.shapes(walk(f)), "imageWidth": ARENA.width, "imageHeight": ARENA.height})


def scene_depths(metric: bool = True) -> list[np.ndarray]:
    depths = [noisy_walk(f)[0] for f in range(FRAMES)]
    return depths if metric else [relative(depth, 0.5, 0.1) for depth in depths]


def run_scene(root: Path, depths, frames=None, resume: ResumePoint | None = None, completed=True, **settings):
    """The frames `frames` (indices into `depths`) through every region sink as a run writes
    them; returns the marks after each frame, as run.json keeps them."""
    info = arena_info(root, resume, **settings)
    info.output_dir.mkdir(parents=True, exist_ok=True)
    sinks = build_sinks(info)
    for sink in sinks:
        sink.open(info)
    marks = []
    for f in range(len(depths)) if frames is None else frames:
        for sink in sinks:
            sink.put(f, None, depths[f])
        marks.append(json.loads(json.dumps({sink.result_key: sink.mark() for sink in sinks})))
    for sink in sinks:
        sink.close(completed)
    return marks


def partial_outputs(root: Path) -> tuple[str, dict]:
    out = root / "out"
    return (out / "depth_regions.csv.partial").read_text(), json.loads((out / "depth_floor.json.partial").read_text())


def test_a_run_writes_the_floor_heights_and_paths(tmp_path):
    annotate(tmp_path)
    run_scene(tmp_path, scene_depths())
    out = tmp_path / "out"
    floor = json.loads((out / "depth_floor.json.partial").read_text())
    assert angle_deg(floor["normal"], ARENA.normal) < 0.2 and floor["offset"] == pytest.approx(ARENA.distance, abs=0.002)
    assert floor["units"] == "m" and floor["frames"] == list(range(8)) and floor["inlier_share"] > 0.9
    assert floor["rms"] == pytest.approx(0.001, rel=0.2)  # the depth's noise (quantised in 16 bits)
    rows = read_table(out / "depth_regions.csv.partial")
    assert [(int(r["frame_index"]), r["label"]) for r in rows] == [(f, m) for f in range(FRAMES) for m in ("mouse_1", "mouse_2")]
    for row in rows:
        box = walk(int(row["frame_index"]))[row["label"] == "mouse_2"]
        assert float(row["height_median"]) == pytest.approx(box.height, abs=0.002)  # the outline adds a little floor
        assert float(row["height_max"]) == pytest.approx(box.height, abs=0.005)
        np.testing.assert_allclose([float(row["floor_x"]), float(row["floor_y"])], (box.x, box.y), atol=0.01)
    for one, two in zip(rows[::2], rows[1::2]):  # the distance between the mice on the floor
        f = int(one["frame_index"])
        truth = np.hypot(walk(f)[0].x - walk(f)[1].x, walk(f)[0].y - walk(f)[1].y)
        measured = np.hypot(float(one["floor_x"]) - float(two["floor_x"]), float(one["floor_y"]) - float(two["floor_y"]))
        assert measured == pytest.approx(truth, abs=0.006)  # mean points: the boxes' visible sides pull them a little
    assert Image.open(out / "depth_paths.png.partial").size == (650, 600)
    assert Image.open(out / "depth_regions.png.partial").size == (1300, 450)


@pytest.mark.parametrize("cut", [3, 10], ids=["before-the-floor", "after-the-floor"])
def test_a_resumed_run_writes_the_table_and_floor_of_an_uninterrupted_one(tmp_path, cut):
    depths = scene_depths()
    annotate(tmp_path / "whole")
    run_scene(tmp_path / "whole", depths)
    annotate(tmp_path / "cut")
    marks = run_scene(tmp_path / "cut", depths, frames=range(cut + 2), completed=False)  # killed 2 frames after its resume point
    mark = marks[cut - 1]
    assert ("held" in mark["region_stats"]) == (cut < 8) and ("floor" in mark["region_stats"]) == (cut >= 8)
    run_scene(tmp_path / "cut", depths, frames=range(cut, FRAMES), resume=ResumePoint(cut, cut - 1, mark))
    assert partial_outputs(tmp_path / "cut") == partial_outputs(tmp_path / "whole")


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.update(held=[{"frame": 0, "rows": [["0"]]}]), "lacks the rows of frame 0"),
    (lambda m: m.update(held=[]), "lacks the rows of frame 0"),
    (lambda m: m.update(held=[*m["held"], {"frame": 99, "rows": []}]), "does not match the frames of depth.ndjson"),
    (lambda m: m.pop("held"), "has neither a floor nor the rows waiting for one"),
    (lambda m: m.update(floor={"normal": "up"}), "the resume point's floor for"),
    (lambda m: m.update(floor={"floor": None, "reason": "none", "units": "1/disparity", "frames": []}), "the resume point's floor for"),
])
def test_a_damaged_floor_mark_starts_the_run_over(tmp_path, damage, message):
    depths = scene_depths()
    annotate(tmp_path)
    marks = run_scene(tmp_path, depths, frames=range(4), completed=False)
    mark = marks[2]
    damage(mark["region_stats"])
    with pytest.raises(ValueError, match=message):
        run_scene(tmp_path, depths, frames=range(3, FRAMES), resume=ResumePoint(3, 2, mark))


def test_relative_depth_gives_a_floor_in_its_own_unit(tmp_path):
    annotate(tmp_path)
    run_scene(tmp_path, scene_depths(metric=False), metric=False)
    table, floor = partial_outputs(tmp_path)
    assert floor["units"] == "1/disparity" and floor["inlier_share"] > 0.9
    rows = read_table(tmp_path / "out" / "depth_regions.csv.partial")
    assert {r["units"] for r in rows} == {"disparity"}
    for one, two in zip(rows[::2], rows[1::2]):  # 3 cm and 6 cm: in order, in a unit that is not metres
        assert 0 < float(one["height_median"]) < float(two["height_median"])


def test_without_a_floor_the_heights_are_empty_and_a_warning_says_why(tmp_path, caplog):
    annotate(tmp_path)
    rng = np.random.default_rng(0)
    clutter = [rng.uniform(0.5, 2.0, (ARENA.height, ARENA.width)).astype(np.float32) for _ in range(FRAMES)]
    with caplog.at_level(logging.WARNING):
        run_scene(tmp_path, clutter)
    _, floor = partial_outputs(tmp_path)
    assert floor["floor"] is None and floor["reason"].startswith("no dominant plane") and floor["frames"] == list(range(8))
    (warning,) = [r.getMessage() for r in caplog.records if "no floor" in r.getMessage()]
    assert warning.startswith(f"no floor under the tracked regions of {tmp_path / 'videos' / 'mice.mp4'} (frames 0-7): "
                              "no dominant plane")
    rows = read_table(tmp_path / "out" / "depth_regions.csv.partial")
    assert len(rows) == 2 * FRAMES and all(r["median"] and not r["height_median"] and not r["floor_x"] for r in rows)


def test_without_annotations_the_floor_comes_from_whole_frames(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run_scene(tmp_path, scene_depths())
    table, floor = partial_outputs(tmp_path)
    assert table.count("\n") == 1 and angle_deg(floor["normal"], ARENA.normal) < 0.2  # the mice are outliers
    assert any("the floor is fitted to whole frames" in r.getMessage() for r in caplog.records)


def test_a_run_shorter_than_the_sample_fits_the_floor_to_its_frames(tmp_path):
    annotate(tmp_path)
    run_scene(tmp_path, scene_depths()[:3])
    _, floor = partial_outputs(tmp_path)
    assert floor["frames"] == [0, 1, 2] and angle_deg(floor["normal"], ARENA.normal) < 0.2
    assert all(r["height_median"] for r in read_table(tmp_path / "out" / "depth_regions.csv.partial"))


# --------------------------------------------------------------------------- rebuilt from depth.ndjson


def annolid_folder(root: Path, metric: bool = True, kind: bool = False) -> Path:
    """A folder as Annolid's own depth run leaves it: depth.ndjson records without a depth
    kind (unless `kind`), no run.json, beside the video and its tracking."""
    video = make_video(root / "videos" / "mice.mp4", frames=2, size=(ARENA.width, ARENA.height))
    annotate(root)
    out = root / "videos" / "mice"
    lines = []
    for f, depth in enumerate(scene_depths(metric)):
        record = encode_record(depth, f, video.name, "mice", depth_kind(metric))
        if not kind:
            del record["otherData"]["depth_map"]["kind"], record["otherData"]["depth_map"]["unit"]
        lines.append(record_line(record))
    (out / "depth.ndjson").write_text("".join(lines), encoding="utf-8")
    return out


def test_annolid_records_without_a_kind_are_rebuilt_once_told_what_they_hold(tmp_path):
    out = annolid_folder(tmp_path)
    with pytest.raises(OutputError, match=r"do not say what their values are \(no depth kind, as in Annolid's own files\); "
                                          r"say it: metric=True \(--metric\)"):
        recompute_region_stats(out, focal_length_x=ARENA.focal, focal_length_y=ARENA.focal)
    assert not (out / "depth_regions.csv").exists()
    paths = recompute_region_stats(out, metric=True, focal_length_x=ARENA.focal, focal_length_y=ARENA.focal)
    assert paths == {key: str(out / name) for key, name in (("region_stats", "depth_regions.csv"), ("region_floor", "depth_floor.json"),
                                                          ("region_plot", "depth_regions.png"), ("region_paths", "depth_paths.png"))}
    floor = json.loads((out / "depth_floor.json").read_text())
    assert floor["units"] == "m" and angle_deg(floor["normal"], ARENA.normal) < 0.2
    assert floor["offset"] == pytest.approx(ARENA.distance, abs=0.002)
    rows = read_table(out / "depth_regions.csv")
    assert len(rows) == 2 * FRAMES and {r["units"] for r in rows} == {"m"}
    for row in rows:
        box = walk(int(row["frame_index"]))[row["label"] == "mouse_2"]
        assert float(row["height_median"]) == pytest.approx(box.height, abs=0.002)
    assert not list(out.glob("*.partial"))

    relative_out = annolid_folder(tmp_path / "relative", metric=False)
    recompute_region_stats(relative_out, metric=False, focal_length_x=ARENA.focal, focal_length_y=ARENA.focal)
    assert json.loads((relative_out / "depth_floor.json").read_text())["units"] == "1/disparity"
    assert {r["units"] for r in read_table(relative_out / "depth_regions.csv")} == {"disparity"}


def test_records_that_say_their_kind_must_agree_with_metric(tmp_path):
    out = annolid_folder(tmp_path, kind=True)
    with pytest.raises(OutputError, match=r"hold metric_depth, not relative_disparity; leave metric out"):
        recompute_region_stats(out, metric=False)
    assert recompute_region_stats(out, metric=True)["region_floor"] == str(out / "depth_floor.json")


def test_without_run_json_another_video_is_refused_by_its_name(tmp_path):
    out = annolid_folder(tmp_path)
    other = make_video(tmp_path / "videos" / "rats.mp4", frames=2)
    with pytest.raises(OutputError, match=rf"{out} holds depth of another video \(mice.mp4\), not of rats.mp4; pass that video"):
        recompute_region_stats(out, other, metric=True)
    (out / "depth.ndjson").write_text((out / "depth.ndjson").read_text().replace('"frame_index"', '"frame"', 1))
    with pytest.raises(OutputError, match=rf"{out / 'depth.ndjson'}: record 1 holds no readable depth \(KeyError"):
        recompute_region_stats(out, metric=True)
    assert not (out / "depth_regions.csv").exists() and not list(out.glob("*.partial"))


def regions_command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "annolid_depth", "regions", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_the_regions_command_rebuilds_a_folder_and_says_in_one_line_what_is_missing(tmp_path):
    out = annolid_folder(tmp_path)
    failed = regions_command(out)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith(f"annolid-depth: the records of {out / 'depth.ndjson'} "
                                                                       "do not say what their values are")
    assert "--metric" in failed.stderr and "--relative" in failed.stderr
    done = regions_command(out, "--metric", "--focal-length-x", ARENA.focal, "--focal-length-y", ARENA.focal,
                           "--video", tmp_path / "videos" / "mice.mp4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(out / name) for name in ("depth_regions.csv", "depth_floor.json",
                                                                     "depth_regions.png", "depth_paths.png")]
    assert json.loads((out / "depth_floor.json").read_text())["offset"] == pytest.approx(ARENA.distance, abs=0.002)
    assert regions_command(out, "--metric", "--relative").returncode == 2  # argparse: one or the other
    missing = regions_command(tmp_path / "nowhere")
    assert missing.returncode == 1 and missing.stderr == (f"annolid-depth: {tmp_path / 'nowhere' / 'depth.ndjson'} not found: "
                                                          f"recomputing needs a finished depth run in {tmp_path / 'nowhere'}\n")
