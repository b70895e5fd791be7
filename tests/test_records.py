"""The depth.ndjson record: its shape, its precision, and files cut short by a killed run."""
import base64
import io
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import read_seed_snippet
from PIL import Image

from annolid_depth import __version__
from annolid_depth.errors import NonFiniteDepthError
from annolid_depth.io import records
from annolid_depth.io.records import (
    RecordIndex,
    decode_depth,
    encode_png,
    encode_record,
    iter_records,
    quantize,
    record_line,
)

H, W = 36, 50


def gradient(low: float = 1.0, high: float = 2.0) -> np.ndarray:
    """A smooth depth map from `low` (top left) to `high` (bottom right)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    return (low + (high - low) * (x / (W - 1) + y / (H - 1)) / 2).astype(np.float32)


def quantisation_step(depth: np.ndarray) -> float:
    return float(depth.max() - depth.min()) / 65535


def write_ndjson(path: Path, depths: list[np.ndarray], kind: str = "relative_disparity") -> Path:
    records = (encode_record(depth, 3 * i, "clip.mp4", "clip", kind) for i, depth in enumerate(depths))
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_record_is_labelme_shaped():
    depth = gradient()
    record = encode_record(depth, 7, "clip.mp4", "clip", "relative_disparity")
    assert list(record) == ["version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth",
                            "frame_index", "video_name", "otherData"]
    assert record["version"] == __version__ and record["flags"] == {} and record["shapes"] == []
    assert record["imagePath"] == "clip_000000007.png" and record["imageData"] is None
    assert (record["imageHeight"], record["imageWidth"], record["frame_index"], record["video_name"]) == (H, W, 7, "clip.mp4")
    depth_map = record["otherData"]["depth_map"]
    assert depth_map["dtype"] == "uint16" and depth_map["kind"] == "relative_disparity" and depth_map["unit"] is None
    assert depth_map["scale"] == {"min": float(depth.min()), "max": float(depth.max())}
    json.dumps(record, allow_nan=False)  # strict JSON


def test_metric_records_say_metres_and_unknown_kinds_are_refused():
    record = encode_record(gradient(0.5, 12.0), 0, "v.mp4", "v", "metric_depth")
    assert (record["otherData"]["depth_map"]["kind"], record["otherData"]["depth_map"]["unit"]) == ("metric_depth", "m")
    with pytest.raises(ValueError, match="unknown depth kind 'metres'"):
        encode_record(gradient(), 0, "v.mp4", "v", "metres")


def test_depth_png_is_16_bit_grayscale_for_pil():
    record = encode_record(gradient(), 0, "v.mp4", "v", "relative_disparity")
    image = Image.open(io.BytesIO(base64.b64decode(record["otherData"]["depth_map"]["image_data"])))
    assert image.format == "PNG" and image.mode in ("I;16", "I") and image.size == (W, H)
    quant = np.array(image)
    assert quant.min() == 0 and quant.max() == 65535  # the frame's range spans all levels


@pytest.mark.parametrize("low, high", [(1.0, 2.0), (0.3, 80.0), (1000.0, 1000.001), (-5.0, 5.0)])
def test_round_trip_within_one_quantisation_step(low, high):
    depth = gradient(low, high)
    record = encode_record(depth, 0, "v.mp4", "v", "relative_disparity")
    decoded = decode_depth(record)
    assert decoded.dtype == np.float32 and decoded.shape == (H, W)
    assert np.abs(decoded - depth).max() <= quantisation_step(depth) + 1e-6 * abs(high)


def test_levels_are_the_nearest_to_the_exact_value():
    depth = np.random.default_rng(0).uniform(0.3, 80.0, (90, 160)).astype(np.float32)
    levels, lo, hi = quantize(depth)
    exact = (depth.astype(np.float64) - lo) / (hi - lo) * 65535
    assert levels.dtype == np.uint16 and (lo, hi) == (float(depth.min()), float(depth.max()))
    assert levels.flat[depth.argmin()] == 0 and levels.flat[depth.argmax()] == 65535
    assert np.abs(levels - exact).max() <= 0.51  # float32 arithmetic near 65535 is good to ~0.004


def test_the_documented_snippet_reads_every_line_of_a_written_file(tmp_path):
    depths = [gradient(1.0 + i, 3.0 + 2 * i) for i in range(3)]
    path = write_ndjson(tmp_path / "depth.ndjson", depths)
    for line, depth in enumerate(depths):
        assert np.abs(read_seed_snippet(path, line) - depth).max() <= quantisation_step(depth)


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_readers() -> list[str]:
    """The two Python blocks of the README's "Reading the records back"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("Reading the records back") :]
    blocks = section.split("```python\n")[1:3]
    return [block.split("```")[0] for block in blocks]


def test_the_readme_readers_go_line_by_line_and_agree(tmp_path, capsys):
    """Both documented readers run as written on a real file: the package's prints every
    frame, the format-only one reads the first line without reading the whole file."""
    depths = [gradient(1.0 + i, 3.0 + 2 * i) for i in range(3)]
    path = write_ndjson(tmp_path / "depth.ndjson", depths)
    package, seed = (block.replace("outputs/mice_depth/depth.ndjson", str(path)) for block in readme_readers())
    assert "read_text" not in seed and "for line in lines" in seed
    exec(compile(package, "README", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in printed] == ["0", "3", "6"]
    assert printed[0].split(" ", 1)[1].startswith(f"({H}, {W}) ")
    scope: dict = {}
    exec(compile(seed, "README", "exec"), scope)
    assert np.abs(scope["depth"] - depths[0]).max() <= quantisation_step(depths[0])


def test_constant_map_decodes_to_its_value():
    record = encode_record(np.full((4, 5), 2.5, np.float32), 0, "v.mp4", "v", "metric_depth")
    assert record["otherData"]["depth_map"]["scale"] == {"min": 2.5, "max": 2.5}
    np.testing.assert_array_equal(decode_depth(record), np.full((4, 5), 2.5, np.float32))


def test_non_finite_depth_is_refused_not_written():
    depth = gradient(1.0, 2.0)
    depth[1, 1] = np.nan
    with pytest.raises(NonFiniteDepthError, match="1 depth values are NaN or infinite"):
        encode_record(depth, 0, "v.mp4", "v", "relative_disparity")


def test_record_line_is_the_json_text():
    record = encode_record(gradient(), 4, 'a "quoted" \\ name.mp4', "stem", "relative_disparity")
    assert record_line(record) == json.dumps(record) + "\n"


@pytest.mark.parametrize("compress", ["deflate", "zlib_deflate"])
@pytest.mark.parametrize("shape, dtype", [((37, 51), np.uint16), ((720, 1280), np.uint16), ((9, 7, 3), np.uint8), ((1, 1), np.uint8)])
def test_png_reads_back_exactly_in_pil_and_opencv(shape, dtype, compress, monkeypatch):
    monkeypatch.setattr(records, "deflate", getattr(records, compress))
    image = np.random.default_rng(1).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    if shape[0] > 100:  # a smooth map as well, where the filter matters
        image[:360] = np.linspace(0, 65535, 1280).astype(np.uint16)
    png = encode_png(image)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), image)
    pil = Image.open(io.BytesIO(png))
    pil.load()  # checks every chunk's CRC and the zlib checksum
    rgb = image[..., ::-1] if image.ndim == 3 else image  # PIL reads RGB where OpenCV gave BGR
    np.testing.assert_array_equal(np.array(pil), rgb)
    with pytest.raises(ValueError, match="expected gray or BGR"):
        encode_png(image.astype(np.float32))


def test_a_killed_runs_cut_last_line_is_skipped(tmp_path):
    path = write_ndjson(tmp_path / "depth.ndjson", [gradient(), gradient(2, 3), gradient(3, 4)])
    text = path.read_text()
    path.write_text(text[:-100])  # the third record, cut mid-way
    assert [r["frame_index"] for r in iter_records(path)] == [0, 3]
    path.write_text(text[:-1])  # complete, only the newline missing (another tool's file)
    assert [r["frame_index"] for r in iter_records(path)] == [0, 3, 6]


def test_a_cut_line_before_the_end_is_an_error(tmp_path):
    path = write_ndjson(tmp_path / "depth.ndjson", [gradient(), gradient()])
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0][:50] + "\n" + lines[1])
    with pytest.raises(json.JSONDecodeError):
        list(iter_records(path))


def test_record_index_reads_one_frame_at_a_time(tmp_path):
    depths = [gradient(i, i + 2) for i in range(4)]
    path = write_ndjson(tmp_path / "depth.ndjson", depths, kind="metric_depth")
    with open(path, "a") as out:
        out.write('{"version": "0.1.0", "frame_index": 99, "cut short')
    index = RecordIndex(path)
    assert index.frames == [0, 3, 6, 9] and len(index) == 4 and index.kind == "metric_depth"
    assert (index.nearest(5), index.nearest(0), index.nearest(100), index.nearest(-1)) == (3, 0, 9, None)
    assert np.abs(index.depth(6) - depths[2]).max() <= quantisation_step(depths[2])


def test_a_frame_is_quantised_once_for_all_its_outputs():
    depth = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    first = quantize(depth)
    assert quantize(depth) is first  # the same frame: the record, the video and the frames share it
    again = quantize(depth.copy())  # another frame with the same values: computed again
    assert again is not first and np.array_equal(again.levels, first.levels)
    elsewhere = []
    worker = threading.Thread(target=lambda: elsewhere.append(quantize(depth)))
    worker.start()
    worker.join()
    assert elsewhere[0] is not first  # each thread remembers its own frame
