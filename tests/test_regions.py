"""Region labels from Annolid's tracking output and the per-region depth table built on them."""
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import H, W, make_video, read_table, run_info, run_sinks, square, write_json
from PIL import Image
from scenes import Arena, Box

from annolid_depth.errors import OutputError
from annolid_depth.io.annotations import VideoAnnotations
from annolid_depth.io.camera import pinhole_rays
from annolid_depth.io.floor import FloorSample
from annolid_depth.io.records import RecordIndex
from annolid_depth.io.regions import (
    COLUMNS,
    header,
    plot_paths,
    plot_regions,
    read_heights,
    read_medians,
    read_series,
    region_rows,
    rows_text,
)
from annolid_depth.io.sinks import NdjsonSink, RegionStatsSink, ResumePoint
from annolid_depth.recompute import recompute_region_stats
from annolid_depth.runner import run_video_depth_anything

FOCAL = 470.4


def store_line(record: dict) -> str:
    """A store record as Annolid appends it."""
    return json.dumps(record, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------- reading annotations


def test_store_index_keeps_the_latest_record_of_each_frame_and_skips_bad_lines(tmp_path, caplog):
    folder = tmp_path / "clip"
    store = folder / "clip_annotations.ndjson"
    lines = [
        store_line({"frame": 0, "imageWidth": 82, "imageHeight": 60, "shapes": [square("old", 0, 0, 9, 9)]}),
        '{"frame":1,"shapes":[\n',  # cut short
        store_line({"imageWidth": 82, "imageHeight": 60, "shapes": [square("new", 38, 28, 20, 20, "rectangle")], "frame": 0}),
        "\n",
        store_line({"frame": 3, "imageWidth": 82, "imageHeight": 60, "shapes": [square("nest", 0, 0, 4, 4)]}),
        store_line({"imagePath": "clip_000000005.png", "shapes": []}),  # an older store: frame from the image name
        "[1, 2]\n",
    ]
    folder.mkdir()
    store.write_text("".join(lines), encoding="utf-8")
    stub = {"annotation_store": "clip_annotations.ndjson", "frame": 3, "version": 1, "imageWidth": 82, "imageHeight": 60}
    write_json(folder / "clip_000000003.json", stub)
    (folder / "clip_000000006.json").write_text("{", encoding="utf-8")

    with caplog.at_level(logging.WARNING):
        annotations = VideoAnnotations(tmp_path / "clip.mp4", W, H)
        assert annotations.labels(6) is None  # unreadable file, nothing in the store
    starts = np.cumsum([0] + [len(line.encode()) for line in lines])
    assert annotations.stores[store.name].offsets == {0: starts[2], 3: starts[4], 5: starts[5]}
    assert annotations.frames == {0, 3, 5, 6}
    warnings = [r.getMessage() for r in caplog.records]
    assert any(f"{store} line 2 is not valid JSON" in m for m in warnings)
    assert any(f"{store} line 7 has no frame number" in m for m in warnings)
    assert any(str(folder / "clip_000000006.json") in m for m in warnings)

    label_map, names = annotations.labels(0)  # the later record, shapes halved (82 x 60 -> 41 x 30)
    assert names == ["", "new"] and label_map.dtype == np.int32 and label_map.shape == (H, W)
    expected = np.zeros((H, W), np.int32)
    expected[10:15, 10:20] = 1
    np.testing.assert_array_equal(label_map, expected)
    label_map, names = annotations.labels(3)  # through the stub
    assert names == ["", "nest"] and label_map[:3, :3].all() and label_map.sum() == 9
    label_map, names = annotations.labels(5)
    assert names == [""] and not label_map.any()
    assert annotations.labels(1) is None and annotations.labels(2) is None


def test_first_shape_claims_overlaps_and_degenerate_shapes_are_skipped(tmp_path, caplog):
    shapes = [
        square("mouse_1", 12, 10, 2, 4, "rectangle"),  # corners in either order
        {"label": "tail", "shape_type": "polygon", "points": [[1, 1], [5, 5]]},  # two points: no area
        {"label": "nose", "shape_type": "point", "points": [[3, 3]]},  # not a region
        {"label": "", "shape_type": "polygon", "points": [[0, 0], [5, 0], [5, 5]]},  # no label
        square("arena", 0, 0, 40, 29),
        square("mouse_1", 30, 20, 32, 22),  # after the arena: the arena keeps these pixels
    ]
    write_json(tmp_path / "clip" / "clip_000000000.json", {"shapes": shapes})
    with caplog.at_level(logging.WARNING):
        label_map, names = VideoAnnotations(tmp_path / "clip.mp4", W, H).labels(0)
    assert names == ["", "mouse_1", "arena"]
    assert (label_map[4:11, 2:13] == 1).all() and (label_map == 1).sum() == 7 * 11
    assert (label_map == 2).sum() == H * W - 7 * 11
    assert any("polygon 'tail' has 2 usable points, needs 3" in r.getMessage() for r in caplog.records)


def test_shapes_far_outside_the_frame_cover_exactly_their_part_inside(tmp_path):
    shapes = [
        square("arena", -1e300, -1e300, 1e300, 1e300, "rectangle"),  # the whole frame, and more
        {"label": "wedge", "shape_type": "polygon", "points": [[-1e300, 0], [10, 0], [10, 10]]},
        {"label": "away", "shape_type": "polygon", "points": [[1e9, 1e9], [2e9, 1e9], [2e9, 2e9]]},
    ]
    write_json(tmp_path / "clip" / "clip_000000000.json", {"shapes": shapes[1:] + shapes[:1]})
    label_map, names = VideoAnnotations(tmp_path / "clip.mp4", W, H).labels(0)
    assert names == ["", "wedge", "away", "arena"]
    assert (label_map == 2).sum() == 0  # outside the frame: a label, no pixels
    # inside the frame the wedge's long edges run level at y = 0 and y = 10 (their slope is 1e-299):
    # it covers the square from (0, 0) to (10, 10)
    expected = np.zeros((H, W), np.int32)
    cv2.fillPoly(expected, [np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.int32)], 1)
    np.testing.assert_array_equal(label_map == 1, expected == 1)
    assert (label_map == 3).sum() == H * W - (label_map == 1).sum()


def test_per_frame_file_wins_and_a_stub_may_name_another_store(tmp_path):
    folder = tmp_path / "clip"
    write_json(folder / "clip_000000001.json", {"shapes": [square("from_file", 0, 0, 4, 4)]})
    write_json(folder / "clip_000000002.json", {"annotation_store": "other_annotations.ndjson", "frame": 2})
    (folder / "clip_annotations.ndjson").write_text(
        store_line({"frame": 1, "shapes": [square("from_store", 0, 0, 4, 4)]})
        + store_line({"frame": 2, "shapes": [square("default_store", 0, 0, 4, 4)]}), encoding="utf-8")
    (folder / "other_annotations.ndjson").write_text(
        store_line({"frame": 2, "shapes": [square("other_store", 0, 0, 4, 4)]}), encoding="utf-8")
    annotations = VideoAnnotations(tmp_path / "clip.mp4", W, H)
    assert annotations.labels(1)[1] == ["", "from_file"]
    assert annotations.labels(2)[1] == ["", "other_store"]


def test_prepare_in_a_pool_gives_the_rows_of_one_frame_at_a_time(tmp_path):
    """The runner may prepare frames on several threads, in any order."""
    lines = [store_line({"frame": f, "shapes": [square("mouse", f % 30, 2, f % 30 + 8, 20), square("arena", 0, 0, 40, 29)]})
             for f in range(40)]
    write_json(tmp_path / "clip" / "clip_000000003.json", {"annotation_store": "clip_annotations.ndjson", "frame": 3})
    (tmp_path / "clip" / "clip_annotations.ndjson").write_text("".join(lines), encoding="utf-8")
    depths = [np.random.default_rng(f).uniform(0.5, 3.0, (H, W)).astype(np.float32) for f in range(40)]
    info = run_info(tmp_path / "out", metric=True)
    sink = RegionStatsSink()
    (tmp_path / "out").mkdir()
    sink.open(info)
    def rows(f):  # before the floor is known: the rows without heights, waiting for it
        return rows_text(sink.prepare(f, None, depths[f]).rows)

    one_by_one = [rows(f) for f in range(40)]
    with ThreadPoolExecutor(4) as pool:
        pooled = list(pool.map(rows, reversed(range(40))))
    for f in range(8):  # the floor's sample: fitted, then every frame is prepared whole
        sink.write(f, sink.prepare(f, None, depths[f]))
    assert sink.floor is None and sink.document["reason"].startswith("too few points")  # the arena covers the frame
    with ThreadPoolExecutor(4) as pool:
        whole = list(pool.map(lambda f: sink.prepare(f, None, depths[f]), reversed(range(40))))
    sink.close(False)
    assert pooled[::-1] == one_by_one == whole[::-1] and all(rows.count("\n") == 2 for rows in one_by_one)


# --------------------------------------------------------------------------- depth_regions.csv


def known_depth() -> np.ndarray:
    """Metric depth 1 + x: a region's statistics follow from its columns alone."""
    depth = np.tile(1.0 + np.arange(W, dtype=np.float32), (H, 1))
    depth[2:5, 35:39] = 0.0  # the ghost: no usable pixel
    depth[4, 2] = -1.0  # one pixel of mouse_1 without usable depth (NaN never reaches the outputs: the engine stops it)
    return depth


def expected_stats(depth: np.ndarray, mask: np.ndarray, metric: bool = True) -> dict:
    usable = mask & np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(usable)
    values = depth[usable].astype(np.float64)
    z = values if metric else 1.0 / values
    vv, uu = np.nonzero(mask)
    return {
        "pixels": usable.sum(), "excluded": mask.sum() - usable.sum(), "median": np.median(values),
        "mean": values.mean(), "p10": np.percentile(values, 10), "p90": np.percentile(values, 90),
        "min": values.min(), "max": values.max(), "u": uu.mean(), "v": vv.mean(),
        "x": np.mean((u - W / 2) / FOCAL * z), "y": np.mean((v - H / 2) / FOCAL * z), "z": z.mean(),
    }


def test_region_table_on_known_shapes_and_depth(tmp_path, caplog):
    shapes = [
        square("mouse_1", 12, 10, 2, 4, "rectangle"),
        square("mouse_1", 30, 20, 32, 22),  # a second shape of the same animal
        square("ghost", 35, 2, 38, 4, "rectangle"),
        square("arena", 0, 0, 40, 29),
    ]
    write_json(tmp_path / "clip" / "clip_000000000.json", {"shapes": shapes, "imageWidth": W, "imageHeight": H})
    write_json(tmp_path / "clip" / "clip_000000004.json", {"shapes": [square("mouse_1", 0, 0, 3, 3)]})
    write_json(tmp_path / "clip" / "clip_000000099.json", {"shapes": [square("mouse_1", 0, 0, 3, 3)]})
    depth = known_depth()
    with caplog.at_level(logging.WARNING):
        results = run_sinks(tmp_path / "out", depths=[depth, depth + 1, depth + 2], metric=True,
                            save_region_stats=True)
    assert results["region_stats"] == str(tmp_path / "out" / "depth_regions.csv")
    rows = read_table(Path(results["region_stats"]))
    # frames 0, 2, 4 processed; frame 2 has no annotations: no rows for it
    assert [(r["frame_index"], r["time_s"], r["label"]) for r in rows] == [
        ("0", "0.000000", "mouse_1"), ("0", "0.000000", "ghost"), ("0", "0.000000", "arena"), ("4", "0.320000", "mouse_1"),
    ]
    assert {r["units"] for r in rows} == {"m"}

    mouse = np.zeros((H, W), bool)
    mouse[4:11, 2:13] = mouse[20:23, 30:33] = True
    arena = np.ones((H, W), bool)
    arena[mouse] = arena[2:5, 35:39] = False
    for row, mask in ((rows[0], mouse), (rows[2], arena)):
        expected = expected_stats(depth, mask)
        assert int(row["pixels"]) == expected["pixels"] and int(row["excluded"]) == expected["excluded"]
        assert float(row["median"]) == expected["median"]  # whole numbers: exact
        for name in ("mean", "p10", "p90", "min", "max", "u", "v", "x", "y", "z"):
            assert float(row[name]) == pytest.approx(expected[name], rel=1e-5, abs=1e-6), name
    assert rows[0]["excluded"] == "1" and rows[0]["median"] == "9" and rows[0]["min"] == "3"
    ghost = rows[1]
    assert (ghost["pixels"], ghost["excluded"], ghost["u"], ghost["v"]) == ("0", "12", "36.5", "3")
    assert [ghost[name] for name in ("median", "mean", "p10", "p90", "min", "max", "x", "y", "z")] == [""] * 9
    assert rows[3]["median"] == "4.5"  # frame 4: depth + 2 over columns 0..3

    unprocessed = [r.getMessage() for r in caplog.records if "not processed" in r.getMessage()]
    assert len(unprocessed) == 1 and unprocessed[0].startswith("1 annotated frames")
    assert [r[name] for r in rows for name in COLUMNS[-5:]] == [""] * 5 * len(rows)  # no floor given: no heights
    assert Image.open(results["region_plot"]).size == (1300, 450)


def test_a_resumed_table_is_cut_back_to_the_resume_point_and_goes_on(tmp_path, caplog):
    for frame in (0, 2, 4, 6, 9):
        write_json(tmp_path / "clip" / f"clip_{frame:09d}.json", {"shapes": [square("mouse", 5, 5, 14, 9)]})
    depths = [np.full((H, W), 1.0 + i, np.float32) for i in range(4)]
    whole = run_sinks(tmp_path / "whole", depths=depths, metric=True, save_region_stats=True)

    def session(resume: ResumePoint | None, frames: list[int], completed: bool):
        info = run_info(tmp_path / "cut", metric=True, save_region_stats=True)
        info.resume = resume
        ndjson, sink = NdjsonSink(), RegionStatsSink()  # a resume before the floor reads depth.ndjson back
        marks = []
        for one in (ndjson, sink):
            one.open(info)
        for i in frames:
            for one in (ndjson, sink):
                one.put(2 * i, None, depths[i])
            marks.append({one.result_key: one.mark() for one in (ndjson, sink)})
        for one in (ndjson, sink):
            one.close(completed)
        return sink, marks

    (tmp_path / "cut").mkdir()
    _, marks = session(None, [0, 1, 2], completed=False)  # killed after frame 4; resume point after frame 2
    mark = json.loads(json.dumps(marks[1]))  # as run.json keeps it
    assert mark["region_stats"]["held"][1]["frame"] == 2  # the rows waiting for the floor
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        sink, _ = session(ResumePoint(frames=2, last_index=2, marks=mark), [2, 3], completed=True)
    assert sink.tmp.read_text() == Path(whole["region_stats"]).read_text()
    unprocessed = [r.getMessage() for r in caplog.records if "not processed" in r.getMessage()]
    assert len(unprocessed) == 1 and unprocessed[0].startswith("1 annotated frames")  # frame 9


def test_relative_depth_is_disparity_and_z_is_its_inverse(tmp_path):
    write_json(tmp_path / "clip" / "clip_000000000.json", {"shapes": [square("mouse", 5, 5, 14, 9)]})
    depth = np.tile(1.0 + np.arange(W, dtype=np.float32), (H, 1))
    results = run_sinks(tmp_path / "out", depths=[depth], save_region_stats=True)
    (row,) = read_table(Path(results["region_stats"]))
    mask = np.zeros((H, W), bool)
    mask[5:10, 5:15] = True
    expected = expected_stats(depth, mask, metric=False)
    assert row["units"] == "disparity" and float(row["median"]) == expected["median"] == 10.5
    assert float(row["z"]) == pytest.approx(expected["z"], rel=1e-5)
    assert float(row["x"]) == pytest.approx(expected["x"], rel=1e-5)


def test_no_annotations_gives_a_header_only_table_and_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        results = run_sinks(tmp_path / "out", count=2, save_region_stats=True)
    assert Path(results["region_stats"]).read_text() == ",".join(COLUMNS) + "\n"
    assert any("no annotations for" in r.getMessage() for r in caplog.records)


def test_plot_needs_matplotlib_and_says_what_to_install(tmp_path, monkeypatch):
    table = tmp_path / "depth_regions.csv"
    table.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(OutputError, match=r"pip install 'annolid-depth\[plot\]' \(or turn save_region_stats off\)"):
        run_sinks(tmp_path / "out", count=1, save_region_stats=True)  # before any frame
    with pytest.raises(OutputError, match=r"pip install 'annolid-depth\[plot\]'"):
        plot_regions(table, tmp_path / "plot.png")


def test_heights_and_paths_are_read_back_and_plotted(tmp_path):
    arena = Arena()
    rays = pinhole_rays(arena.width, arena.height, arena.focal, arena.focal)
    x, y = arena.floor_point(160, 120)
    frames = [arena.render([Box("mouse_1", x - 0.1 + 0.02 * f, y, 0.03), Box("mouse_2", x + 0.1, y, 0.06)]) for f in range(6)]
    sample = FloorSample(rays, metric=True)
    for f, (depth, label_map, _) in enumerate(frames):
        sample.add(f, depth, label_map)
    floor, _ = sample.fit()
    table = tmp_path / "depth_regions.csv"
    table.write_text(header() + "".join(region_rows(f, f / 10, labels, names, depth, rays, True, floor)
                                        for f, (depth, labels, names) in enumerate(frames)), encoding="utf-8")
    heights, unit = read_heights(table)
    assert unit == "m" and list(heights) == ["mouse_1", "mouse_2"]
    frames_read, times, medians = heights["mouse_2"]
    assert frames_read.tolist() == list(range(6)) and times.tolist() == pytest.approx([f / 10 for f in range(6)])
    np.testing.assert_allclose(medians, 0.06, atol=1e-4)
    paths, _ = read_series(table, "floor_x", "floor_y")
    assert np.diff(paths["mouse_1"][2]) == pytest.approx([0.02] * 5, abs=0.002)  # 2 cm a frame along floor x

    assert Image.open(plot_regions(table, tmp_path / "regions.png")).size == (1300, 450)
    assert Image.open(plot_paths(table, tmp_path / "paths.png")).size == (650, 600)

    # a table written before heights existed: its readers and plots still work, without heights
    old = tmp_path / "old.csv"
    with open(table, newline="") as new_rows, open(old, "w", newline="") as old_rows:
        old_rows.writelines(",".join(line.rstrip("\n").split(",")[:17]) + "\n" for line in new_rows)
    assert read_medians(old)[0]["mouse_1"][2] == pytest.approx(read_medians(table)[0]["mouse_1"][2])
    assert np.isnan(read_heights(old)[0]["mouse_1"][2]).all()
    without = [plot_regions(old, tmp_path / "old_regions.png"), plot_paths(old, tmp_path / "old_paths.png")]
    assert [Image.open(path).size for path in without] == [(1300, 450), (650, 600)]
    # the height panel and the path plot say there is no floor instead of drawing lines
    assert Image.open(without[1]).tobytes() != Image.open(tmp_path / "paths.png").tobytes()


# --------------------------------------------------------------------------- end to end


def test_regions_on_a_video_that_max_res_shrinks(tmp_path, weights_dir, caplog):
    video = make_video(tmp_path / "videos" / "mice.mp4")
    labels = tmp_path / "videos" / "mice"  # Annolid's folder; also the run's default output folder
    write_json(labels / "mice_000000000.json",
               {"shapes": [square("mouse", 24, 24, 8, 8, "rectangle")], "imageWidth": 64, "imageHeight": 48})
    store = [
        {"frame": 1, "imageWidth": 64, "imageHeight": 48, "shapes": [square("mouse", 0, 0, 8, 8)]},  # not processed
        {"frame": 2, "imageWidth": 64, "imageHeight": 48, "shapes": [square("mouse", 32, 16, 48, 32)]},
        {"frame": 5, "imageWidth": 64, "imageHeight": 48, "shapes": [square("mouse", 0, 0, 8, 8)]},  # not processed
    ]
    (labels / "mice_annotations.ndjson").write_text("".join(map(store_line, store)), encoding="utf-8")

    with caplog.at_level(logging.WARNING):
        result = run_video_depth_anything(
            video, checkpoint_root=weights_dir, max_res=32, input_size=56, target_fps=5,
            save_point_clouds=True, include_region_labels=True, save_region_stats=True,
        )
    out = Path(result["output_dir"][0])
    assert out == labels and result["region_plot"] == [str(out / "depth_regions.png")]
    assert result["region_floor"] == [str(out / "depth_floor.json")] and result["region_paths"] == [str(out / "depth_paths.png")]
    outputs = json.loads((out / "run.json").read_text())["outputs"]
    assert (outputs["region_floor"], outputs["region_paths"]) == ("depth_floor.json", "depth_paths.png")
    floor = json.loads((out / "depth_floor.json").read_text())  # 3 frames of 32 x 24 from random weights
    assert floor["units"] == "1/disparity" and floor["frames"] == [0, 2, 4]
    assert not list(out.glob("*.partial")) and Image.open(out / "depth_paths.png").format == "PNG"
    rows = read_table(Path(result["region_stats"][0]))
    assert [(r["frame_index"], r["time_s"], r["label"]) for r in rows] == [
        ("0", "0.000000", "mouse"), ("2", "0.200000", "mouse")
    ]
    # halved: (8..24) -> pixels 4..12, (32..48, 16..32) -> 16..24, 8..16
    assert [(float(r["u"]), float(r["v"]), int(r["pixels"]) + int(r["excluded"])) for r in rows] == [
        (8.0, 8.0, 81), (20.0, 12.0, 81)
    ]
    records = RecordIndex(out / "depth.ndjson")
    assert records.frames == [0, 2, 4]
    for row, (cols, lines) in zip(rows, ((slice(4, 13), slice(4, 13)), (slice(16, 25), slice(8, 17)))):
        depth = records.depth(int(row["frame_index"]))
        assert depth.shape == (24, 32) and int(row["pixels"]) == 81
        step = float(depth.max() - depth.min()) / 65535
        assert float(row["median"]) == pytest.approx(float(np.median(depth[lines, cols])), rel=1e-5, abs=step)
        cloud = (out / "point_clouds" / f"point_{int(row['frame_index']):04d}.csv").read_text().splitlines()
        assert cloud[0] == "x,y,z,intensity,region,red,green,blue"
        assert sum(line.split(",")[4] == "mouse" for line in cloud[1:]) == 81
    unprocessed = [r.getMessage() for r in caplog.records if "not processed" in r.getMessage()]
    assert len(unprocessed) == 1 and unprocessed[0].startswith("2 annotated frames")

    # corrected tracking, recomputed from depth.ndjson without the network
    (labels / "mice_annotations.ndjson").write_text(
        "".join(map(store_line, store)) + store_line({**store[1], "shapes": [square("rat", 0, 0, 62, 46)]}), encoding="utf-8"
    )
    again = recompute_region_stats(out)
    recomputed = read_table(Path(again["region_stats"]))
    assert [(r["frame_index"], r["label"]) for r in recomputed] == [("0", "mouse"), ("2", "rat")]
    assert int(recomputed[1]["pixels"]) + int(recomputed[1]["excluded"]) == 32 * 24
    depth = records.depth(0)
    step = float(depth.max() - depth.min()) / 65535
    for name in ("median", "mean", "p10", "p90", "u", "v"):  # depth.ndjson holds the depth to one step
        assert float(recomputed[0][name]) == pytest.approx(float(rows[0][name]), rel=1e-5, abs=step), name
    assert Image.open(again["region_plot"]).format == "PNG"
    assert json.loads(Path(again["region_floor"]).read_text())["frames"] == [0, 2, 4]

    # another video's annotations never make this folder's table: run.json's fingerprint says whose depth it holds
    other = make_video(tmp_path / "elsewhere" / "mice.mp4", frames=8)  # the same name, other frames
    table = (out / "depth_regions.csv").read_bytes()
    with pytest.raises(OutputError, match=rf"{out} holds depth of another video \({video}\), not of {other}; pass that video"):
        recompute_region_stats(out, other)
    assert (out / "depth_regions.csv").read_bytes() == table
    assert recompute_region_stats(out, video)["region_stats"] == str(out / "depth_regions.csv")  # its own, by path


def test_recompute_says_what_is_missing(tmp_path):
    with pytest.raises(OutputError, match="depth.ndjson not found"):
        recompute_region_stats(tmp_path)
