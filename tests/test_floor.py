"""The floor plane, heights above it and paths across it, on arenas of known geometry (`scenes.py`)."""
import csv
import io
import json
import math

import numpy as np
import pytest
from helpers import write_json
from scenes import Arena, Box, relative

from annolid_depth.io.annotations import VideoAnnotations
from annolid_depth.io.camera import back_project, pinhole_rays
from annolid_depth.io.floor import MIN_POINTS, Floor, FloorSample, fit_floor, floor_document, read_floor_document
from annolid_depth.io.records import decode_depth, encode_record, quantize
from annolid_depth.io.regions import COLUMNS, header, region_rows

ARENA = Arena()  # 320 x 240, 0.8 m from a floor tilted 15 degrees (and 5 about the other axis)
RAYS = pinhole_rays(ARENA.width, ARENA.height, ARENA.focal, ARENA.focal)
CENTRE = ARENA.floor_point(ARENA.width / 2, ARENA.height / 2)
FRAMES = 10


def walk(frame: int) -> list[Box]:
    """Two mice crossing the arena, 3 cm and 6 cm tall: mouse_1 along floor x, mouse_2 along floor y."""
    x, y = CENTRE
    return [Box("mouse_1", x - 0.15 + 0.02 * frame, y, 0.03), Box("mouse_2", x + 0.1, y - 0.1 + 0.02 * frame, 0.06)]


def angle_deg(a, b) -> float:
    return math.degrees(math.acos(min(1.0, float(np.dot(a, b)))))


def fitted(frames, metric=True):
    """The floor of (frame_index, depth, label map) frames, through the run's sample."""
    sample = FloorSample(RAYS, metric)
    for frame_index, depth, label_map in frames:
        sample.add(frame_index, depth, label_map)
    return sample.fit()


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(header() + text)))


def noisy_walk(frame: int, noise=0.001):
    """A frame of the walk with 1 mm depth noise and an untracked 10 cm bottle in a corner."""
    bottle = Box("bottle", *ARENA.floor_point(40, 200), 0.10, (0.04, 0.04))
    depth, label_map, names = ARENA.render([*walk(frame), bottle], noise=noise, seed=frame)
    label_map[label_map == 3] = 0  # not tracked: part of the floor's sample, an outlier there
    return depth, label_map, names[:3]


# --------------------------------------------------------------------------- the plane


def test_tilted_floor_is_found_within_a_fraction_of_a_degree_and_a_millimetre():
    frames = [(f, *noisy_walk(f)[:2]) for f in range(FRAMES)]
    floor, reason = fitted(frames)
    assert reason == "" and floor.units == "m"
    assert angle_deg(floor.normal, ARENA.normal) < 0.1
    assert floor.offset == pytest.approx(ARENA.distance, abs=0.001)
    assert floor.frames == tuple(range(8)) and 8 * 3000 < floor.points <= 8 * 4096  # the first 8 frames, thinned
    assert 0.9 < floor.inlier_share < 1.0  # the bottle is not floor
    assert floor.rms == pytest.approx(0.001, rel=0.15) and floor.p90 < 0.002  # the depth's noise
    assert floor.tolerance == 0.02 and floor.min_inlier_share == 0.5
    np.testing.assert_allclose(floor.x_axis, ARENA.axes[0], atol=2e-3)
    np.testing.assert_allclose(floor.y_axis, ARENA.axes[1], atol=2e-3)
    assert fitted(frames) == (floor, "")  # seeded: the same points give the same floor


def test_floor_frame_follows_its_convention():
    floor, _ = fitted([(0, *ARENA.render([])[:2])])
    normal, x_axis, y_axis = map(np.array, (floor.normal, floor.x_axis, floor.y_axis))
    np.testing.assert_allclose([normal @ normal, x_axis @ x_axis, x_axis @ normal, y_axis @ normal], [1, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(np.cross(x_axis, y_axis), -normal, atol=1e-12)  # (x, y, height) right-handed
    assert floor.height(0.0, 0.0, 0.0) == floor.offset and normal[2] > 0  # the camera, above the floor it faces
    np.testing.assert_allclose(floor.floor_xy(*(floor.offset * normal)), (0, 0), atol=1e-12)  # the camera's foot
    (x0, y0), (x1, y1), (x2, y2) = (ARENA.floor_point(*pixel) for pixel in ((160, 120), (200, 120), (160, 80)))
    assert x1 - x0 > 0.1 and abs(y1 - y0) < 0.01  # right in the image: +x
    assert y2 - y0 > 0.1 and abs(x2 - x0) < 0.01  # up in the image: +y


def test_floor_survives_nan_zero_and_negative_depths():
    depth, label_map, _ = noisy_walk(0)
    clean, _ = fitted([(0, depth, label_map)])
    broken = depth.copy()
    rng = np.random.default_rng(1)
    broken[rng.random(depth.shape) < 0.2] = np.nan
    broken[rng.random(depth.shape) < 0.05] = 0.0
    broken[rng.random(depth.shape) < 0.01] = -1.0
    broken[:, :40] = np.nan  # and a whole band
    floor, reason = fitted([(0, broken, label_map)])
    assert reason == "" and angle_deg(floor.normal, clean.normal) < 0.05
    assert floor.offset == pytest.approx(clean.offset, abs=2e-4) and floor.inlier_share == pytest.approx(clean.inlier_share, abs=0.01)


def test_a_region_covering_most_of_the_frame_leaves_enough_floor():
    depth, _, _ = ARENA.render(walk(0), noise=0.001)
    label_map = np.ones(depth.shape, np.int32)
    label_map[12:-12, 12:-12] = 1
    label_map[:12] = label_map[-12:] = label_map[:, :12] = label_map[:, -12:] = 0  # a 12-pixel border is free
    floor, reason = fitted([(0, depth, label_map)])
    assert reason == "" and angle_deg(floor.normal, ARENA.normal) < 0.2
    assert floor.offset == pytest.approx(ARENA.distance, abs=0.001)
    (arena,) = rows_of(region_rows(0, 0.0, label_map, ["", "arena"], depth, RAYS, True, floor))
    assert abs(float(arena["height_median"])) < 0.001 and float(arena["height_max"]) == pytest.approx(0.06, abs=0.005)


def test_without_annotations_the_whole_frame_is_the_sample():
    frames = [(f, ARENA.render(walk(f), noise=0.001, seed=f)[0], None) for f in range(3)]  # the mice are outliers
    floor, reason = fitted(frames)
    assert reason == "" and angle_deg(floor.normal, ARENA.normal) < 0.1
    assert floor.offset == pytest.approx(ARENA.distance, abs=0.001) and 0.95 < floor.inlier_share < 1


def test_scenes_without_a_floor_give_none_and_say_why():
    rng = np.random.default_rng(0)
    clutter = rng.uniform(0.5, 2.0, (ARENA.height, ARENA.width)).astype(np.float32)
    floor, reason = fitted([(0, clutter, None)])
    assert floor is None and reason.startswith("no dominant plane: at best ") and "within 0.02 m" in reason
    assert "needs 50%" in reason

    # inside a bowl: a sphere of radius 0.8 m around a point 0.3 m in front of the camera
    rays = ARENA.directions
    centre, radius = np.array([0.0, 0.0, 0.3]), 0.8
    a, b, c = (rays * rays).sum(axis=1), -2 * rays @ centre, centre @ centre - radius**2
    bowl = ((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)).reshape(ARENA.height, ARENA.width).astype(np.float32)
    floor, reason = fitted([(0, bowl, None)])
    share = int(reason.split("at best ")[1].split("%")[0])
    assert floor is None and reason.startswith("no dominant plane") and 10 < share < 50


def test_a_plane_behind_the_camera_is_refused():
    normal = np.array([0.9, 0.0, -0.3]) / np.linalg.norm([0.9, 0.0, -0.3])  # a wall the camera looks away from
    towards = ARENA.directions @ normal
    wall = np.where(towards > 0, 0.5 / np.where(towards > 0, towards, 1), 0.0)  # 0: no depth where the ray misses it
    floor, reason = fitted([(0, wall.reshape(ARENA.height, ARENA.width).astype(np.float32), None)])
    assert floor is None and reason.startswith("the best plane is behind the camera or seen edge-on")
    assert "108 degrees from the view direction, at most 84" in reason


def test_too_few_points_or_a_thin_strip_fix_no_floor():
    depth, _, _ = ARENA.render([])
    covered = np.ones(depth.shape, np.int32)
    covered[0, :MIN_POINTS - 1] = 0
    floor, reason = fitted([(0, depth, covered)])
    assert floor is None and reason == f"too few points with a usable depth outside the tracked regions ({MIN_POINTS - 1}, needs 256)"
    floor, reason = fitted([(0, np.zeros_like(depth), None)])  # no usable depth at all
    assert floor is None and reason.startswith("too few points with a usable depth outside the tracked regions (0,")
    floor, reason = fit_floor(np.ones((MIN_POINTS, 3)), metric=True)
    assert floor is None and reason == "the points lie on a line or a point: no plane"

    strip = np.ones(depth.shape, np.int32)
    strip[100:102] = 0  # two rows: 640 points on one line of the floor, almost
    floor, reason = fitted([(0, depth, strip)])
    assert floor is None and reason == "the points on the best plane lie along a narrow strip: too thin to fix a floor"


def test_depth_floor_json_round_trips_and_records_a_missing_floor():
    floor, _ = fitted([(0, *noisy_walk(0)[:2])])
    document = json.loads(json.dumps(floor_document(floor, "", floor.units, floor.frames)))
    assert set(document) == {"normal", "offset", "units", "inlier_share", "rms", "p90", "points", "frames",
                             "tolerance", "min_inlier_share", "x_axis", "y_axis"}
    assert read_floor_document(document) == (floor, "") and Floor.from_dict(floor.to_dict()) == floor

    missing = json.loads(json.dumps(floor_document(None, "no dominant plane: ...", "m", [0, 2, 4])))
    assert missing == {"floor": None, "reason": "no dominant plane: ...", "units": "m", "frames": [0, 2, 4]}
    assert read_floor_document(missing) == (None, "no dominant plane: ...")


def test_the_floor_of_the_records_is_the_floor_of_the_quantised_run():
    """Sampling the depth as depth.ndjson holds it makes a rebuild fit the very same floor."""
    frames = [(f, *noisy_walk(f)[:2]) for f in range(3)]
    live = fitted([(f, quantize(depth).depth(), labels) for f, depth, labels in frames])
    rebuilt = fitted([(f, decode_depth(json.loads(json.dumps(encode_record(depth, f, "v.mp4", "v", "metric_depth")))), labels)
                      for f, depth, labels in frames])
    assert live == rebuilt and live[0] is not None
    exact, _ = fitted(frames)
    assert angle_deg(exact.normal, live[0].normal) < 0.01 and exact.offset == pytest.approx(live[0].offset, abs=1e-5)


def test_sample_memory_is_bounded_and_frames_past_the_sample_are_ignored():
    sample = FloorSample(RAYS, True, frames=3, points_per_frame=500)
    depth = ARENA.render([])[0]
    for f in range(10):
        sample.add(f, depth)
    assert sample.full and sample.frames == [0, 1, 2] and all(490 < len(c) <= 500 for c in sample.chunks)
    assert len({tuple(c[0]) for c in sample.chunks}) == 3  # each frame its own pixels


# --------------------------------------------------------------------------- heights and floor paths


def test_heights_and_floor_paths_of_walking_mice():
    frames = [(f, *noisy_walk(f)) for f in range(FRAMES)]
    floor, _ = fitted([(f, depth, labels) for f, depth, labels, _ in frames])
    rows = rows_of("".join(region_rows(f, f / 10, labels, names, depth, RAYS, True, floor) for f, depth, labels, names in frames))
    assert len(rows) == 2 * FRAMES and list(rows[0]) == list(COLUMNS)
    path, feet = {}, {}  # measured, and the truth of the mean points' feet
    for (f, *_), pair in zip(frames, zip(rows[::2], rows[1::2])):
        points, which = ARENA.surface(walk(f))
        for k, (row, box) in enumerate(zip(pair, walk(f)), start=1):
            assert row["label"] == box.label
            assert float(row["height_median"]) == pytest.approx(box.height, abs=0.001)  # the top: most of the region
            assert float(row["height_p90"]) == pytest.approx(box.height, abs=0.003)
            assert float(row["height_max"]) == pytest.approx(box.height, abs=0.005)  # 1 mm noise: its tail
            truth = ARENA.to_floor(points[which == k].mean(axis=0)[None])[0]
            measured = float(row["floor_x"]), float(row["floor_y"])
            np.testing.assert_allclose(measured, truth[:2], atol=0.0005)  # the mean point's foot, to half a millimetre
            np.testing.assert_allclose(measured, (box.x, box.y), atol=0.01)  # near the box's centre (its sides show)
            path.setdefault(row["label"], []).append(measured)
            feet.setdefault(row["label"], []).append(truth[:2])
    one, two = (np.array(path[label]) for label in ("mouse_1", "mouse_2"))
    apart = np.linalg.norm(one - two, axis=1)
    np.testing.assert_allclose(apart, np.linalg.norm(np.subtract(*feet.values()), axis=1), atol=0.0005)
    centres = np.array([[(b.x, b.y) for b in walk(f)] for f in range(FRAMES)])
    np.testing.assert_allclose(apart, np.linalg.norm(centres[:, 0] - centres[:, 1], axis=1), atol=0.005)
    # 9 steps of 2 cm, along floor x and along floor y; as a mouse moves, the camera sees more
    # or less of its sides, which moves its mean point by a few millimetres more
    walked = np.linalg.norm(np.diff(one, axis=0), axis=1).sum()
    assert walked == pytest.approx(0.18, abs=0.005) and np.ptp(one[:, 1]) < 0.002
    assert np.ptp(two[:, 1]) == pytest.approx(0.18, abs=0.005) and np.ptp(two[:, 0]) < 0.002


def test_relative_depth_gives_heights_in_its_own_unit_in_the_right_order():
    depth, label_map, names = ARENA.render(walk(4))
    disparity = relative(depth, scale=0.5, shift=0.1)  # a relative model's output, scale and shift unknown to us
    floor, reason = fitted([(0, disparity, label_map)], metric=False)
    assert reason == "" and floor.units == "1/disparity"
    _, xyz = back_project(disparity, np.flatnonzero(label_map == 0), RAYS, False)
    assert floor.tolerance == pytest.approx(0.02 * np.median(np.linalg.norm(xyz, axis=0)), rel=0.01)  # 2 % of the distance
    rows = rows_of(region_rows(4, 0.4, label_map, names, disparity, RAYS, False, floor))
    assert [r["units"] for r in rows] == ["disparity"] * 2
    low, high = (float(r["height_median"]) for r in rows)
    assert 0 < low < high and 1.5 < high / low < 2.5  # 3 cm and 6 cm: in order, not exactly in ratio
    assert np.abs(floor.height(*xyz)).max() < 0.01 * low  # the floor itself is still a plane


def test_without_a_floor_the_height_cells_are_empty():
    depth, label_map, names = ARENA.render(walk(0))
    rows = rows_of(region_rows(0, 0.0, label_map, names, depth, RAYS, True))
    assert [[r[c] for c in COLUMNS[-5:]] for r in rows] == [[""] * 5] * 2 and rows[0]["median"] != ""


def test_heights_from_annolid_files_and_store_scaled_to_the_processed_frames(tmp_path):
    """Annotations as Annolid writes them, in a video twice the processed size."""
    folder = tmp_path / "mice"
    for f in (0, 1, 2):
        write_json(folder / f"mice_{f:09d}.json", {"shapes": ARENA.shapes(walk(f), scale=2.0),
                                                   "imageWidth": 2 * ARENA.width, "imageHeight": 2 * ARENA.height})
    store = [{"frame": f, "shapes": ARENA.shapes(walk(f), scale=2.0), "imageWidth": 2 * ARENA.width,
              "imageHeight": 2 * ARENA.height} for f in (3, 4, 5)]
    (folder / "mice_annotations.ndjson").write_text("".join(json.dumps(r) + "\n" for r in store), encoding="utf-8")
    annotations = VideoAnnotations(tmp_path / "mice.mp4", ARENA.width, ARENA.height)
    frames = [(f, ARENA.render(walk(f), noise=0.001, seed=f)[0], *annotations.labels(f)) for f in range(6)]
    floor, _ = fitted([(f, depth, labels) for f, depth, labels, _ in frames])
    assert angle_deg(floor.normal, ARENA.normal) < 0.1 and floor.offset == pytest.approx(ARENA.distance, abs=0.001)
    for f, depth, labels, names in frames:
        assert names == ["", "mouse_1", "mouse_2"]
        for row, box in zip(rows_of(region_rows(f, 0.0, labels, names, depth, RAYS, True, floor)), walk(f)):
            assert float(row["height_median"]) == pytest.approx(box.height, abs=0.0015)  # the outline adds a little floor
            assert float(row["height_max"]) == pytest.approx(box.height, abs=0.005)
            np.testing.assert_allclose([float(row["floor_x"]), float(row["floor_y"])], (box.x, box.y), atol=0.01)
