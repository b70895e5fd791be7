"""Every output sink on real files: formats read back, re-runs, killed runs, bad folders."""
import json
import re
import subprocess
import sys
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import H, W, depth_frames, finish, read_seed_snippet, rgb_frame, run_info, run_sinks
from PIL import Image

from annolid_depth.errors import OutputError
from annolid_depth.io.colour import colorize, with_colour_bar
from annolid_depth.io.npz import DATA_OFFSET, combine_crc32, finish_npz, first_header_size, npy_header
from annolid_depth.io.pipeline import OrderedWriter
from annolid_depth.io.point_files import BYTES, csv_rows, label_cells
from annolid_depth.io.records import iter_records
from annolid_depth.io.sinks import (
    SINKS,
    DepthFramesSink,
    DepthVideoSink,
    NdjsonSink,
    PointCloudSink,
    ResumePoint,
    build_sinks,
    rendered,
)
from annolid_depth.io.sinks.base import folder_tally

EVERY_OUTPUT = {f"save_{name}": True for name in ("depth_video", "depth_frames", "point_clouds", "npz", "exr", "region_stats")}


def step(depth: np.ndarray) -> float:
    return float(depth.max() - depth.min()) / 65535


# --------------------------------------------------------------------------- depth.ndjson


def test_ndjson_reads_back_with_the_documented_snippet(tmp_path):
    results = run_sinks(tmp_path / "out", count=4)
    path = Path(results["depth_ndjson"])
    assert path == tmp_path / "out" / "depth.ndjson"
    records = list(iter_records(path))
    assert [r["frame_index"] for r in records] == [0, 2, 4, 6]
    assert {(r["video_name"], r["imagePath"][:5], r["otherData"]["depth_map"]["kind"]) for r in records} == {
        ("clip.mp4", "clip_", "relative_disparity")
    }
    for line, depth in enumerate(depth_frames(4)):
        assert np.abs(read_seed_snippet(path, line) - depth).max() <= step(depth)


def test_a_killed_run_leaves_complete_lines_and_the_previous_results(tmp_path):
    out = tmp_path / "out"
    run_sinks(out, count=2)
    info = run_info(out)
    sink = NdjsonSink()
    sink.open(info)
    for i, depth in enumerate(depth_frames(3)):
        sink.put(i, rgb_frame(i), depth)
    # Killed here: no close. Every line is already on disk and complete.
    partial = out / "depth.ndjson.partial"
    assert [r["frame_index"] for r in iter_records(partial)] == [0, 1, 2]
    assert all(json.loads(line) for line in partial.read_text().splitlines())
    assert len((out / "depth.ndjson").read_text().splitlines()) == 2  # untouched
    sink.file.close()
    run_sinks(out, count=1)  # the next run starts the temporary afresh
    assert not partial.exists() and len((out / "depth.ndjson").read_text().splitlines()) == 1


def test_rerun_replaces_every_output(tmp_path):
    out = tmp_path / "out"
    run_sinks(out, count=5, **EVERY_OUTPUT)
    results = run_sinks(out, count=3, **EVERY_OUTPUT)
    assert len((out / "depth.ndjson").read_text().splitlines()) == 3
    assert np.load(results["npz"])["depths"].shape == (3, H, W)
    for key in ("depth_frames", "point_cloud_csv", "exr"):
        assert len(list(Path(results[key]).iterdir())) == 3, key  # no file of the first run left
    with av.open(results["depth_visualization"]) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_a_cancelled_run_keeps_what_it_wrote_under_partial_names(tmp_path):
    results = run_sinks(tmp_path / "out", count=2, completed=False, **EVERY_OUTPUT)
    assert set(results) == {"depth_ndjson", "depth_visualization", "depth_frames", "point_cloud_csv", "npz", "exr",
                            "region_stats", "region_floor", "region_plot", "region_paths"}
    assert all(path.endswith(".partial") for path in results.values())
    assert [r["frame_index"] for r in iter_records(results["depth_ndjson"])] == [0, 2]
    assert sorted(p.name for p in Path(results["depth_frames"]).iterdir()) == []  # rendered only at the end
    assert len(list(Path(results["point_cloud_csv"]).iterdir())) == 2


# --------------------------------------------------------------------------- rendered outputs


def test_depth_video_decodes_back_with_one_colour_range(tmp_path):
    results = run_sinks(tmp_path / "out", count=6, save_depth_video=True)
    assert Path(results["depth_visualization"]).name == "clip_vis.mp4"
    with av.open(results["depth_visualization"]) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == Fraction(25, 2) and stream.codec_context.name == "h264"
    assert len(frames) == 6 and frames[0].shape == (H, W + 1, 3)  # one column added: yuv420p
    assert frames[-1].mean() > frames[0].mean() + 10  # later frames are nearer, hence brighter


@pytest.mark.parametrize("codec, decoded_as", [("libx264", "h264"), ("mpeg4", "mpeg4")])
def test_depth_video_keeps_a_fractional_rate(tmp_path, codec, decoded_as):
    out = tmp_path / "out"
    out.mkdir()
    info = run_info(out, grayscale=True)
    info.fps = 30000 / 1001
    sinks = [NdjsonSink(), DepthVideoSink(codecs=(codec,))]
    for sink in sinks:
        sink.open(info)
    for i, depth in enumerate(depth_frames(4)):
        for sink in sinks:
            sink.put(i, rgb_frame(i), depth)
    path = finish(sinks)["depth_visualization"]
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == 4
        assert (stream.codec_context.name, stream.average_rate) == (decoded_as, Fraction(30000, 1001))
        assert (stream.width, stream.height) == (W + 1, H)


def test_depth_frames_share_one_range_and_are_named_by_frame_index(tmp_path):
    results = run_sinks(tmp_path / "out", count=3, save_depth_frames=True, grayscale=True)
    folder = Path(results["depth_frames"])
    assert folder == tmp_path / "out" / "depth_frames"
    assert sorted(p.name for p in folder.iterdir()) == ["depth_00000.png", "depth_00002.png", "depth_00004.png"]
    first, last = (np.array(Image.open(folder / name)) for name in ("depth_00000.png", "depth_00004.png"))
    assert first.shape == (H, W, 3)
    assert first[0, 0, 0] == 0 and last[-1, -1, 0] == 255  # the smallest and largest value of the whole run
    assert first[-1, -1, 0] < 255 and last[0, 0, 0] > 0


def test_the_first_frames_fix_the_colour_range_and_later_values_saturate(tmp_path, monkeypatch):
    monkeypatch.setattr(rendered, "RANGE_FRAMES", 2)
    depths = depth_frames(5)
    results = run_sinks(tmp_path / "out", depths=depths, save_depth_frames=True, grayscale=True)
    drawn = [np.array(Image.open(Path(results["depth_frames"]) / f"depth_{2 * i:05d}.png"))[..., 0] for i in range(5)]
    lo, hi = depths[0].min(), depths[1].max()
    for depth, image in zip(depths, drawn):
        expected = np.clip((depth - lo) * np.float32(255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        assert np.abs(image.astype(int) - expected).max() <= 1  # within the record's 16-bit steps
    assert drawn[4][-1, -1] == 255 and (drawn[4] == 255).sum() > (drawn[1] == 255).sum()


def test_drawing_in_a_pool_gives_the_same_files(tmp_path, monkeypatch):
    """Frames prepared before the range is known are drawn when they are written."""
    monkeypatch.setattr(rendered, "RANGE_FRAMES", 3)
    outputs = []
    for workers in (0, 3):
        out = tmp_path / str(workers)
        out.mkdir()
        info = run_info(out, save_depth_video=True, save_depth_frames=True)
        chosen = build_sinks(info)
        for sink in chosen:
            sink.open(info)
        writer = OrderedWriter(chosen, workers)
        for i, depth in enumerate(depth_frames(12)):
            writer.write(i, rgb_frame(i), depth)
        writer.finish()
        results = finish(chosen)
        folder = Path(results["depth_frames"])
        outputs.append(([(p.name, p.read_bytes()) for p in sorted(folder.iterdir())], decoded(results["depth_visualization"])))
    assert outputs[0][0] == outputs[1][0] and len(outputs[0][0]) == 12
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])


def test_a_resumed_run_draws_what_an_uninterrupted_one_does(tmp_path, monkeypatch):
    monkeypatch.setattr(rendered, "RANGE_FRAMES", 3)
    depths = depth_frames(8)
    whole = run_sinks(tmp_path / "whole", depths=depths, save_depth_video=True, save_depth_frames=True)
    for stop in (2, 5):  # before and after the range is fixed
        out = tmp_path / f"resumed{stop}"
        run_sinks(out, depths=depths[:stop], completed=False, save_depth_video=True, save_depth_frames=True)
        info = run_info(out, save_depth_video=True, save_depth_frames=True)
        written = (out / "depth.ndjson.partial").read_bytes()  # the marks the sinks gave at the resume point
        marks = {"depth_ndjson": {"bytes": len(written), "crc32": zlib.crc32(written)},
                 "depth_frames": folder_tally(out / "depth_frames.partial")}
        info.resume = ResumePoint(frames=stop, last_index=2 * (stop - 1), marks=marks)
        chosen = build_sinks(info)
        for sink in chosen:
            sink.open(info)
        for i in range(stop, 8):
            for sink in chosen:
                sink.put(2 * i, rgb_frame(i), depths[i])
        resumed = finish(chosen)
        frames = [sorted(Path(result["depth_frames"]).iterdir()) for result in (whole, resumed)]
        assert [(p.name, p.read_bytes()) for p in frames[0]] == [(p.name, p.read_bytes()) for p in frames[1]]
        np.testing.assert_array_equal(decoded(whole["depth_visualization"]), decoded(resumed["depth_visualization"]))


def decoded(video: str) -> np.ndarray:
    with av.open(video) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_inferno_and_metric_depth_drawn_nearer_brighter(tmp_path):
    results = run_sinks(tmp_path / "out", count=2, metric=True, save_depth_frames=True)
    image = cv2.imread(str(Path(results["depth_frames"]) / "depth_00000.png"))
    inferno = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_INFERNO)[0]
    np.testing.assert_array_equal(image[0, 0], inferno[1])  # nearest metric depth: the bright end


# --------------------------------------------------------------------------- point clouds


def read_csv(path: Path) -> tuple[str, np.ndarray]:
    header = path.read_text().splitlines()[0]
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_point_cloud_csv_is_a_pinhole_back_projection(tmp_path):
    results = run_sinks(tmp_path / "out", count=2, save_point_clouds=True, focal_length_x=400.0, focal_length_y=300.0)
    assert Path(results["point_cloud_csv"]) == tmp_path / "out" / "point_clouds"
    header, table = read_csv(Path(results["point_cloud_csv"]) / "point_0002.csv")
    assert header == "x,y,z,intensity,red,green,blue" and table.shape == (H * W, 7)
    depth, rgb = depth_frames(2)[1], rgb_frame(1)
    v, u = np.mgrid[0:H, 0:W]
    z = 1.0 / depth  # relative models: 1 / disparity
    np.testing.assert_allclose(table[:, 2], z.ravel(), rtol=1e-5)
    np.testing.assert_allclose(table[:, 0], ((u - W / 2) * z / 400.0).ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table[:, 1], ((v - H / 2) * z / 300.0).ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table[:, 3], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).ravel())
    np.testing.assert_array_equal(table[:, 4:], rgb.reshape(-1, 3))


def test_point_cloud_keeps_precision_for_large_disparities(tmp_path):
    depths = [d * 400 for d in depth_frames(1)]  # z = 1 / disparity near 0.001
    results = run_sinks(tmp_path / "out", depths=depths, save_point_clouds=True)
    _, table = read_csv(Path(results["point_cloud_csv"]) / "point_0000.csv")
    np.testing.assert_allclose(table[:, 2], 1.0 / depths[0].ravel(), rtol=2e-6)


def test_metric_point_cloud_is_in_metres_and_drops_pixels_without_depth(tmp_path):
    depth = depth_frames(1)[0] * 2.0
    depth[0, :5], depth[1, 0], depth[1, 1] = 0.0, -1.0, -0.5  # non-finite depth never gets here: the engine stops it
    results = run_sinks(tmp_path / "out", depths=[depth], metric=True, save_point_clouds=True)
    _, table = read_csv(Path(results["point_cloud_csv"]) / "point_0000.csv")
    keep = depth > 0
    assert len(table) == keep.sum() == H * W - 7
    np.testing.assert_allclose(table[:, 2], depth[keep], rtol=0, atol=0.5e-5)  # 5 decimals: metres 1 to 10


def test_point_cloud_region_labels_from_labelme(tmp_path):
    labels = tmp_path / "clip"  # <video folder>/<stem>/
    labels.mkdir()
    shapes = [
        {"label": 'mouse, "left"', "shape_type": "polygon", "points": [[2, 2], [8, 2], [8, 8], [2, 8]]},
        {"label": "arena", "shape_type": "rectangle", "points": [[20, 29], [0, 0]]},
        {"label": "tail", "shape_type": "line", "points": [[30, 5], [35, 5]]},  # not a region
    ]
    (labels / "clip_000000000.json").write_text(json.dumps({"version": "5.0", "shapes": shapes}))
    results = run_sinks(tmp_path / "out", count=2, save_point_clouds=True, include_region_labels=True)
    folder = Path(results["point_cloud_csv"])
    lines = (folder / "point_0000.csv").read_text().splitlines()
    assert lines[0] == "x,y,z,intensity,region,red,green,blue"
    row = {(i % W, i // W): line for i, line in enumerate(lines[1:])}
    assert '"mouse, ""left""",' in row[(5, 5)]  # the first shape claims the pixel; quoted the CSV way
    assert row[(15, 20)].split(",")[4] == "arena" and row[(20, 29)].split(",")[4] == "arena"
    assert row[(30, 5)].split(",")[4] == "" and row[(21, 5)].split(",")[4] == ""
    # frame 2 has no annotation file: every region is empty
    assert {line.split(",")[4] for line in (folder / "point_0002.csv").read_text().splitlines()[1:]} == {""}


def test_point_cloud_ply(tmp_path):
    labels = tmp_path / "clip"
    labels.mkdir()
    square = {"label": "nest", "shape_type": "polygon", "points": [[0, 0], [10, 0], [10, 10], [0, 10]]}
    (labels / "clip_000000000.json").write_text(json.dumps({"shapes": [square]}))
    results = run_sinks(tmp_path / "out", count=1, save_point_clouds=True, point_cloud_format="ply",
                        include_region_labels=True)
    data = (Path(results["point_cloud_csv"]) / "point_0000.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert header.decode().splitlines() == [
        "ply", "format binary_little_endian 1.0", "comment region 0 ", "comment region 1 nest",
        f"element vertex {H * W}", "property float x", "property float y", "property float z",
        "property uchar intensity", "property uchar red", "property uchar green", "property uchar blue",
        "property int region",
    ]
    vertices = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("region", "<i4")])
    np.testing.assert_allclose(vertices["z"], (1.0 / depth_frames(1)[0]).ravel(), rtol=1e-6)
    np.testing.assert_array_equal(vertices["red"], rgb_frame(0)[..., 0].ravel())
    assert vertices["region"].reshape(H, W)[5, 5] == 1 and vertices["region"].reshape(H, W)[20, 20] == 0


def read_ply(path: Path) -> np.ndarray:
    header, body = path.read_bytes().split(b"end_header\n")
    assert f"element vertex {len(body) // 16}" in header.decode()
    return np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"),
                                      ("red", "u1"), ("green", "u1"), ("blue", "u1")])


@pytest.mark.parametrize("point_cloud_format", ["csv", "ply"])
def test_point_cloud_stride_keeps_every_nth_pixel_in_x_and_y(tmp_path, point_cloud_format):
    depth = depth_frames(1)[0] * 2.0
    depth[0, :5] = 0.0  # no depth: pixels (0, 0) and (4, 0) of the grid are left out
    results = run_sinks(tmp_path / "out", depths=[depth], metric=True, save_point_clouds=True, point_cloud_stride=4,
                        point_cloud_format=point_cloud_format)
    path = Path(results["point_cloud_csv"]) / f"point_0000.{point_cloud_format}"
    if point_cloud_format == "csv":
        _, table = read_csv(path)
        x, y, z, red = table[:, 0], table[:, 1], table[:, 2], table[:, 4]
    else:
        vertices = read_ply(path)
        x, y, z, red = vertices["x"], vertices["y"], vertices["z"], vertices["red"]
    v, u = np.mgrid[0:H:4, 0:W:4]  # rows 0, 4, ..., 28 and columns 0, 4, ..., 40
    keep = depth[v, u] > 0
    assert len(z) == keep.sum() == 8 * 11 - 2
    np.testing.assert_allclose(z, depth[v, u][keep], atol=0.5e-5)
    np.testing.assert_allclose(x, ((u - W / 2) * depth[v, u] / 470.4)[keep], atol=1e-5)
    np.testing.assert_allclose(y, ((v - H / 2) * depth[v, u] / 470.4)[keep], atol=1e-5)
    np.testing.assert_array_equal(red, rgb_frame(0)[v, u, 0][keep])


def test_point_cloud_voxel_keeps_the_first_point_of_each_cube(tmp_path):
    depth = depth_frames(1)[0] * 2.0
    size = 0.2
    every = read_ply(Path(run_sinks(tmp_path / "all", depths=[depth], metric=True, save_point_clouds=True,
                                    point_cloud_format="ply")["point_cloud_csv"]) / "point_0000.ply")
    thinned = read_ply(Path(run_sinks(tmp_path / "thin", depths=[depth], metric=True, save_point_clouds=True,
                                      point_cloud_format="ply", point_cloud_voxel=size)["point_cloud_csv"]) / "point_0000.ply")
    cells = [tuple(c) for c in np.floor(np.stack([every["x"], every["y"], every["z"]], axis=1) / size).astype(int)]
    first: dict[tuple, int] = {}
    for i, cell in enumerate(cells):  # the full cloud is in image order
        first.setdefault(cell, i)
    assert len(every) == H * W and 20 < len(first) < H * W // 4
    np.testing.assert_array_equal(thinned, every[sorted(first.values())])
    csv_rows = len(read_csv(Path(run_sinks(tmp_path / "csv", depths=[depth], metric=True, save_point_clouds=True,
                                           point_cloud_voxel=size)["point_cloud_csv"]) / "point_0000.csv")[1])
    assert csv_rows == len(first)


def test_csv_rows_match_python_formatting():
    values = np.array([0.0, -0.5, 1234.56789, -0.000004, 9.999996, 10.0, 7.25])
    codes = np.array([0, 1, 2, 0, 2, 1, 1])
    cells = ["", "a", 'b"c']
    text = csv_rows([(values, 5), (codes, label_cells(cells)), (np.arange(7), BYTES), (values, 0)])
    quoted = ["", "a", '"b""c"']
    expected = "".join(f"{v:.5f},{quoted[k]},{i},{v:.0f}\n" for i, (v, k) in enumerate(zip(values, codes)))
    assert text.decode() == expected.replace("-0.00000", "0.00000").replace("-0\n", "0\n")


# --------------------------------------------------------------------------- float arrays


def test_npz_and_exr_hold_the_float_depth(tmp_path):
    results = run_sinks(tmp_path / "out", count=3, save_npz=True, save_exr=True)
    assert Path(results["npz"]).name == "clip_depths.npz"
    with np.load(results["npz"]) as archive:
        assert sorted(archive.files) == ["depths", "frame_indices"]
        assert (archive["depths"].dtype, archive["frame_indices"].dtype) == (np.float32, np.int64)
        np.testing.assert_array_equal(archive["depths"], np.stack(depth_frames(3)))
        np.testing.assert_array_equal(archive["frame_indices"], [0, 2, 4])
    with zipfile.ZipFile(results["npz"]) as archive:  # every member's CRC-32 checked
        assert archive.testzip() is None
        assert [m.compress_type for m in archive.infolist()] == [zipfile.ZIP_STORED] * 2
    import OpenEXR

    folder = Path(results["exr"])
    assert folder.name == "clip_depths_exr"
    assert sorted(p.name for p in folder.iterdir()) == ["depth_00000.exr", "depth_00002.exr", "depth_00004.exr"]
    with OpenEXR.File(str(folder / "depth_00004.exr")) as image:
        pixels = image.channels()["Z"].pixels
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, depth_frames(3)[2])


@pytest.mark.parametrize("frames", [0, 1, 7])
def test_npz_written_in_place_reads_back_with_numpy_and_zipfile(tmp_path, frames):
    """The archive layout alone, with the zip64 fields a multi-GiB array needs."""
    rng = np.random.default_rng(frames)
    depths = rng.random((frames, 5, 3), np.float32)
    path = tmp_path / "d.npz"
    with open(path, "w+b") as file:
        file.write(bytes(DATA_OFFSET) + depths.tobytes())
        finish_npz(file, ("depths.npy", "<f4", depths.shape), depths.nbytes, zlib.crc32(depths.tobytes()),
                   ("frame_indices.npy", "<i8", (frames,), np.arange(frames, dtype=np.int64).tobytes()))
    with np.load(path) as archive:
        np.testing.assert_array_equal(archive["depths"], depths)
        np.testing.assert_array_equal(archive["frame_indices"], np.arange(frames))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.getinfo("depths.npy").header_offset == 0
    assert len(npy_header("<f4", (10**9, 4320, 7680), DATA_OFFSET - first_header_size("depths.npy"))) == 196


@pytest.mark.parametrize("sizes", [(0, 0), (5, 0), (0, 7), (3, 1), (1000, 4099)])
def test_crc32_of_two_parts_joined_without_reading_them_again(sizes):
    """The fallback without ISA-L, against zlib over the joined bytes."""
    first, second = (np.random.default_rng(n).bytes(n) for n in sizes)
    assert combine_crc32(zlib.crc32(first), zlib.crc32(second), len(second)) == zlib.crc32(first + second)


def test_missing_openexr_is_a_clear_error_at_open(tmp_path):
    code = (
        "import sys; sys.modules['OpenEXR'] = None\n"
        "from pathlib import Path\n"
        "from annolid_depth.io.sinks import RunInfo, build_sinks\n"
        "from annolid_depth.errors import OutputError\n"
        "from annolid_depth.settings import DepthSettings\n"
        f"info = RunInfo(Path('v.mp4'), Path({str(tmp_path)!r}), 4, 4, 10.0, DepthSettings(save_exr=True))\n"
        "try:\n    [s.open(info) for s in build_sinks(info)]\n"
        "except OutputError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install OpenEXR" in done.stdout


# --------------------------------------------------------------------------- bad folders


@pytest.mark.parametrize("output, blocker, message", [
    ("save_point_clouds", "point_clouds", "point_clouds is a file"),
    ("save_depth_frames", "depth_frames", "depth_frames is a file"),
    ("save_exr", "clip_depths_exr", "clip_depths_exr is a file"),
])
def test_a_file_where_an_output_folder_goes(tmp_path, output, blocker, message):
    (tmp_path / blocker).write_text("in the way")
    info = run_info(tmp_path, **{output: True})
    sink = build_sinks(info)[1]
    with pytest.raises(OutputError, match=message):
        sink.open(info)


@pytest.mark.parametrize("output, blocker", [
    ("save_npz", "clip_depths.npz"), ("save_depth_video", "clip_vis.mp4"), (None, "depth.ndjson"),
])
def test_a_folder_where_an_output_file_goes(tmp_path, output, blocker):
    (tmp_path / blocker).mkdir()
    info = run_info(tmp_path, **({output: True} if output else {}))
    sink = build_sinks(info)[-1]
    with pytest.raises(OutputError, match=f"{blocker} is a folder"):
        sink.open(info)


@pytest.mark.parametrize("output", [None, *EVERY_OUTPUT])
def test_an_output_folder_that_is_a_file(tmp_path, output):
    (tmp_path / "out").write_text("not a folder")
    info = run_info(tmp_path / "out" / "deeper", **({output: True} if output else {}))
    sink = build_sinks(info)[-1]
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path / 'out'} is a file, not a folder")):
        sink.open(info)


def test_sinks_create_a_missing_output_folder(tmp_path):
    info = run_info(tmp_path / "new" / "out", **EVERY_OUTPUT)
    for sink in build_sinks(info):
        sink.open(info)
        sink.close(False)
    assert all(p.name.endswith(".partial") for p in (tmp_path / "new" / "out").iterdir())


def test_leftovers_of_a_killed_run_are_cleared(tmp_path):
    (tmp_path / "point_clouds.partial").mkdir()
    (tmp_path / "point_clouds.partial" / "point_0007.csv").write_text("old")
    (tmp_path / "depth.ndjson.partial").mkdir()  # even a folder under a temporary name
    info = run_info(tmp_path, save_point_clouds=True)
    sinks = build_sinks(info)
    for sink in sinks:
        sink.open(info)
    assert list((tmp_path / "point_clouds.partial").iterdir()) == []
    assert (tmp_path / "depth.ndjson.partial").is_file() and (tmp_path / "depth.ndjson.partial").stat().st_size == 0
    sinks[0].close(False)
    sinks[1].close(False)


def test_ndjson_comes_first():
    kinds = [type(s).__name__ for s in build_sinks(run_info(Path("out"), **EVERY_OUTPUT))]
    assert kinds[0] == "NdjsonSink" and len(kinds) == len(SINKS)
    assert isinstance(build_sinks(run_info(Path("out"), save_point_clouds=True))[1], PointCloudSink)


def test_depth_video_carries_a_colour_bar_with_its_unit(tmp_path):

    frame = np.zeros((360, 640, 3), np.uint8)
    for metric in (False, True):
        drawn = with_colour_bar(frame, 1.0, 5.0, metric, grayscale=False)
        assert frame.sum() == 0 and drawn[:, 600:].any() and not drawn[:, :560].any()  # a copy, drawn at the right edge
        column = drawn[72:288, 620]  # the ramp (13 pixels wide from x 617, rows 72-287), top to bottom
        nearest = colorize(np.float32([[1.0 if metric else 5.0]]), 1.0, 5.0, metric, False)[0, 0]
        np.testing.assert_array_equal(column[0], nearest)  # nearest at the top, as the depth view
        assert column[0].sum() > column[-1].sum()  # brighter (nearer) above
    assert with_colour_bar(np.zeros((8, 8, 3), np.uint8), 0, 1, False, False).sum() == 0  # no room: unchanged


def test_the_depth_video_shows_the_depth_frames_colours(tmp_path):
    (out := tmp_path / "out").mkdir()
    info = run_info(out)
    info.height, info.width = 120, 160  # room for the colour bar and its labels at the right
    y, x = np.mgrid[0:120, 0:160].astype(np.float32)
    sinks = [DepthVideoSink(), DepthFramesSink()]
    for sink in sinks:
        sink.open(info)
    for i in range(3):
        for sink in sinks:
            sink.put(i, np.zeros((120, 160, 3), np.uint8), 1 + np.sin(x / 20 + i) * np.cos(y / 15))
    results = finish(sinks)
    with av.open(results["depth_visualization"]) as container:
        video = [frame.to_ndarray(format="rgb24").astype(int) for frame in container.decode(video=0)]
    drawn = [np.array(Image.open(Path(results["depth_frames"]) / f"depth_{i:05d}.png")).astype(int) for i in range(3)]
    left = slice(0, 100)  # the colour bar and its labels are on the video's right
    for frame, image in zip(video, drawn):
        error = np.abs(frame[:, left] - image[:, left])  # x264 at CRF 18, chroma at half size: ~3.7
        assert error.mean() < 5 and np.abs(frame[:, left] - image[:, left, ::-1]).mean() > 20  # not BGR for RGB
