import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from annolid.depth.errors import OutputError
from annolid.depth.io.records import decode_depth, encode_record, iter_records, scan_range
from annolid.depth.io.sinks import RunInfo, build_sinks, csv_columns

H, W = 30, 41  # odd width: the video sink must pad it


def depth_frames(count: int) -> list[np.ndarray]:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    return [(1.0 + x / W + y / H + 0.1 * i).astype(np.float32) for i in range(count)]


def rgb_frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def run_sinks(out: Path, count: int = 5, metric: bool = False, stem: str = "clip", **flags) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    info = RunInfo(video_path=out.parent / f"{stem}.mp4", output_dir=out, stem=stem, width=W, height=H, fps=12.5,
                   metric=metric, **{k: flags.pop(k) for k in list(flags) if k in RunInfo.__dataclass_fields__})
    sinks = build_sinks(info, **flags)
    results = {}
    for sink in sinks:
        sink.open(info)
    for i, depth in enumerate(depth_frames(count)):
        for sink in sinks:
            sink.write(2 * i, rgb_frame(i), depth)
    for sink in sinks:
        results.update(sink.close(True))
    return results


def read_seed_snippet(path: Path, line: int) -> np.ndarray:
    """The reader from the user documentation, as written there."""
    record = json.loads(Path(path).read_text().splitlines()[line])
    encoded = record["otherData"]["depth_map"]["image_data"]
    scale = record["otherData"]["depth_map"]["scale"]
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    quant = np.array(image, dtype=np.float32)
    return (quant / 65535.0) * (scale["max"] - scale["min"]) + scale["min"]


def test_record_shape_and_round_trip():
    depth = depth_frames(1)[0]
    record = encode_record(depth, 7, "clip.mp4", "clip", "relative_disparity")
    assert set(record) == {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth",
                           "frame_index", "video_name", "otherData"}
    assert (record["imageHeight"], record["imageWidth"], record["frame_index"]) == (H, W, 7)
    assert record["imagePath"] == "clip_000000007.png" and record["video_name"] == "clip.mp4"
    depth_map = record["otherData"]["depth_map"]
    assert depth_map["dtype"] == "uint16" and depth_map["kind"] == "relative_disparity" and depth_map["unit"] is None
    assert depth_map["scale"] == {"min": float(depth.min()), "max": float(depth.max())}
    step = (depth.max() - depth.min()) / 65535
    assert np.abs(decode_depth(record) - depth).max() <= step


def test_constant_depth_map_round_trips():
    record = encode_record(np.full((4, 5), 2.5, np.float32), 0, "v.mp4", "v", "metric_depth")
    np.testing.assert_array_equal(decode_depth(record), np.full((4, 5), 2.5, np.float32))
    assert record["otherData"]["depth_map"]["unit"] == "m"


def test_ndjson_reads_with_the_documented_snippet(tmp_path):
    results = run_sinks(tmp_path / "out", count=4)
    path = Path(results["depth_ndjson"])
    assert path == tmp_path / "out" / "depth.ndjson"
    assert [r["frame_index"] for r in iter_records(path)] == [0, 2, 4, 6]
    for line, depth in enumerate(depth_frames(4)):
        step = (depth.max() - depth.min()) / 65535
        assert np.abs(read_seed_snippet(path, line) - depth).max() <= step
    lo, hi, count = scan_range(path)
    assert (count, lo) == (4, pytest.approx(1.0)) and hi == pytest.approx(depth_frames(4)[-1].max())


def test_a_killed_runs_cut_last_line_is_skipped(tmp_path):
    path = Path(run_sinks(tmp_path / "out", count=3)["depth_ndjson"])
    text = path.read_text()
    path.write_text(text[: len(text) - 100])
    assert [r["frame_index"] for r in iter_records(path)] == [0, 2]


def test_rerun_replaces_and_an_empty_run_keeps_previous_results(tmp_path):
    out = tmp_path / "out"
    run_sinks(out, count=5, save_npz=True)
    run_sinks(out, count=3, save_npz=True)
    assert len((out / "depth.ndjson").read_text().splitlines()) == 3
    assert np.load(out / "clip_depths.npz")["depths"].shape == (3, H, W)
    run_sinks(out, count=0, save_npz=True)
    assert len((out / "depth.ndjson").read_text().splitlines()) == 3
    assert sorted(p.name for p in out.iterdir()) == ["clip_depths.npz", "depth.ndjson"]  # no temporaries left


def test_depth_video_decodes_back(tmp_path):
    results = run_sinks(tmp_path / "out", count=6, save_depth_video=True)
    with av.open(results["depth_visualization"]) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == 12.5
    assert len(frames) == 6 and frames[0].shape == (H, W + 1, 3)
    # One colour range for the whole video: the brightening depth brightens later frames.
    assert frames[-1].mean() > frames[0].mean() + 10


def test_depth_frames_share_one_range_and_name_by_frame_index(tmp_path):
    results = run_sinks(tmp_path / "out", count=3, save_depth_frames=True, grayscale=True)
    names = sorted(p.name for p in Path(results["depth_frames"]).iterdir())
    assert names == ["depth_00000.png", "depth_00002.png", "depth_00004.png"]
    first, last = (np.array(Image.open(Path(results["depth_frames"]) / n)) for n in (names[0], names[-1]))
    assert first.shape == (H, W, 3) and first.min() == 0 and last.max() == 255
    assert first[0, 0, 0] == 0 and last[-1, -1, 0] == 255  # smallest and largest depth of the whole run


def test_metric_depth_is_drawn_nearer_brighter(tmp_path):
    results = run_sinks(tmp_path / "out", count=2, metric=True, save_depth_frames=True, grayscale=True)
    first = np.array(Image.open(Path(results["depth_frames"]) / "depth_00000.png"))
    assert first[0, 0, 0] == 255  # the nearest metric depth is the brightest


def test_point_cloud_csv_values(tmp_path):
    results = run_sinks(tmp_path / "out", count=2, save_point_clouds=True, focal_length_x=400.0, focal_length_y=300.0)
    path = Path(results["point_cloud_csv"]) / "point_0002.csv"
    assert path.read_text().splitlines()[0] == "x,y,z,intensity,red,green,blue"
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    depth, rgb = depth_frames(2)[1], rgb_frame(1)
    v, u = np.mgrid[0:H, 0:W]
    z = 1.0 / depth  # relative models: inverse disparity
    np.testing.assert_allclose(table[:, 2], z.ravel(), atol=1e-5)
    np.testing.assert_allclose(table[:, 0], ((u - W / 2) * z / 400.0).ravel(), atol=1e-5)
    np.testing.assert_allclose(table[:, 1], ((v - H / 2) * z / 300.0).ravel(), atol=1e-5)
    np.testing.assert_array_equal(table[:, 4:], rgb.reshape(-1, 3))


def test_point_cloud_region_labels_from_labelme(tmp_path):
    labels = tmp_path / "clip"
    labels.mkdir()
    shapes = [
        {"label": "arena", "shape_type": "rectangle", "points": [[0, 0], [20, 29]]},
        {"label": "mouse, left", "shape_type": "polygon", "points": [[2, 2], [8, 2], [8, 8], [2, 8]]},
    ]
    (labels / "clip_000000000.json").write_text(json.dumps({"shapes": shapes}))
    results = run_sinks(tmp_path / "out", count=1, save_point_clouds=True, include_region_labels=True)
    path = Path(results["point_cloud_csv"]) / "point_0000.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "x,y,z,intensity,region,red,green,blue"
    rows = {(i % W, i // W): line for i, line in enumerate(lines[1:])}
    assert rows[(5, 5)].split(",")[4] == '"mouse'  # quoted, since the label holds a comma
    assert '"mouse, left"' in rows[(5, 5)]
    assert rows[(15, 20)].split(",")[4] == "arena"
    assert rows[(30, 5)].split(",")[4] == ""


def test_point_cloud_ply(tmp_path):
    results = run_sinks(tmp_path / "out", count=1, save_point_clouds=True, point_cloud_format="ply")
    data = (Path(results["point_cloud_csv"]) / "point_0000.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert header.startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert f"element vertex {H * W}".encode() in header
    vertices = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    np.testing.assert_allclose(vertices["z"], (1.0 / depth_frames(1)[0]).ravel(), rtol=1e-6)


def test_csv_formatting_matches_python():
    values = np.array([0.0, -0.5, 1234.56789, -0.000004, 9.999996, 10.0])
    text = csv_columns([(values, 5), (np.array([0, 1, 2, 0, 2, 1]), ["", "a", 'b"c']), (np.arange(6), 0)])
    expected = "".join(f"{v:.5f},{['', 'a', json.dumps(chr(98) + chr(34) + 'c')][k]},{i}\n"
                       for v, k, i in zip(values, [0, 1, 2, 0, 2, 1], range(6)))
    assert text.decode() == expected.replace("-0.00000", "0.00000")


def test_npz_and_exr_hold_the_float_depth(tmp_path):
    results = run_sinks(tmp_path / "out", count=3, save_npz=True, save_exr=True)
    archive = np.load(results["npz"])
    np.testing.assert_array_equal(archive["depths"], np.stack(depth_frames(3)))
    np.testing.assert_array_equal(archive["frame_indices"], [0, 2, 4])
    import OpenEXR

    with OpenEXR.File(str(Path(results["exr"]) / "depth_00004.exr")) as image:
        np.testing.assert_array_equal(image.channels()["Z"].pixels, depth_frames(3)[2])


def test_missing_openexr_is_a_clear_error(tmp_path):
    code = (
        "import sys; sys.modules['OpenEXR'] = None\n"
        "from pathlib import Path\n"
        "from annolid.depth.io.sinks import RunInfo, build_sinks\n"
        "from annolid.depth.errors import OutputError\n"
        f"info = RunInfo(Path('v.mp4'), Path({str(tmp_path)!r}), 'v', 4, 4, 10.0)\n"
        "try:\n    [s.open(info) for s in build_sinks(info, save_exr=True)]\n"
        "except OutputError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install OpenEXR" in done.stdout


def test_output_folder_problems_name_the_path(tmp_path):
    blocker = tmp_path / "out"
    blocker.mkdir()
    (blocker / "point_clouds").write_text("a file where a folder goes")
    (blocker / "depth_frames.partial").write_text("left by a killed run")
    info = RunInfo(Path("v.mp4"), blocker, "v", 4, 4, 10.0)
    points, frames = build_sinks(info, save_point_clouds=True, save_depth_frames=True)[1:]
    with pytest.raises(OutputError, match="point_clouds is a file"):
        points.open(info)
    frames.open(info)  # a leftover temporary is ours to replace
    assert (blocker / "depth_frames.partial").is_dir()


def test_record_index_reads_one_frame_at_a_time(tmp_path):
    from annolid.depth.io.records import RecordIndex

    path = Path(run_sinks(tmp_path / "out", count=4)["depth_ndjson"])
    with open(path, "a") as f:
        f.write('{"frame_index": 99, "cut short')  # a killed run's last line
    index = RecordIndex(path)
    assert index.frames == [0, 2, 4, 6] and index.kind == "relative_disparity"
    assert (index.nearest(5), index.nearest(0), index.nearest(100)) == (4, 0, 6)
    step = (depth_frames(4)[2].max() - depth_frames(4)[2].min()) / 65535
    assert np.abs(index.depth(4) - depth_frames(4)[2]).max() <= step
