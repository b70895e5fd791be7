"""Plain helpers several test modules share: real videos and frames, one run through the
sinks, annotation files, the documented record reader. Fixtures live in conftest.py."""
from __future__ import annotations

import base64
import csv
import io
import json
import time
from pathlib import Path

import av
import numpy as np
from parity_recipe import SHARED, errors
from PIL import Image

from annolid_depth.engine import OfflineEngine, StreamingEngine
from annolid_depth.io.files import publish
from annolid_depth.io.regions import COLUMNS
from annolid_depth.io.sinks import RunInfo, build_sinks
from annolid_depth.settings import DepthSettings

MEDIA_CLIP = SHARED / "media" / "davis_rollercoaster.mp4"

# the positional parameters of Annolid's own run_video_depth_anything (annolid/depth/run.py), in order
ANNOLID_ORDER = [
    "input_video", "output_dir", "encoder", "input_size", "max_res", "max_len", "target_fps", "metric", "fp32",
    "grayscale", "save_npz", "save_exr", "focal_length_x", "focal_length_y", "checkpoint_root", "progress_callback",
    "preview_callback", "streaming", "save_depth_video", "save_depth_frames", "save_point_clouds",
    "include_region_labels",
]

ENGINES = {"offline": OfflineEngine, "stream": StreamingEngine}


# --------------------------------------------------------------------------- frames and videos


def synthetic_frames(count: int, height: int = 20, width: int = 28):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for i in range(count):
        yield i * 3, np.roll(base, i, axis=1)  # frame_index as in a video sampled every 3rd frame


def depth_of(model, kind: str, frames, input_size: int = 28) -> np.ndarray:
    """The depth of `frames` (RGB arrays) through one engine of `ENGINES`."""
    return np.stack([d for _, _, d in ENGINES[kind](model, input_size=input_size).run(enumerate(frames))])


def assert_same_depth(compiled, model, frames) -> None:
    """`compiled` gives `model`'s depth within the parity tolerance, through both engines."""
    for kind in ENGINES:
        max_rel, rel_l2 = errors(depth_of(compiled, kind, frames), depth_of(model, kind, frames))
        assert max_rel <= 3e-5 and rel_l2 <= 1e-5, (kind, max_rel, rel_l2)


def cut_clip(source: Path, target: Path, frames: int) -> Path:
    """The first frames of a video, re-encoded (keeps the documented snippet fast)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            small = frame.reformat(width=320, height=180, format="yuv420p")
            dst.mux(stream.encode(small))
        dst.mux(stream.encode())
    return target


def make_video(path: Path, frames: int = 6, size=(64, 48), fps: int = 10) -> Path:
    """A real H.264 file: a moving gradient, so the depth network sees structure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            gray = ((x * 3 + y * 2 + i * 10) % 256).astype(np.uint8)
            rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def copy_file(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


# --------------------------------------------------------------------------- one run through the sinks

H, W = 30, 41  # odd width: the video sink must pad it


def depth_frames(count: int, low: float = 1.0) -> list[np.ndarray]:
    """Smooth gradients that grow frame by frame."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    return [(low + x / W + y / H + 0.1 * i).astype(np.float32) for i in range(count)]


def rgb_frame(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def run_info(out: Path, stem: str = "clip", **settings) -> RunInfo:
    return RunInfo(video_path=out.parent / f"{stem}.mp4", output_dir=out, width=W, height=H, fps=12.5,
                   settings=DepthSettings(**settings))


def finish(sinks, completed: bool = True) -> dict:
    """Close every sink and, for a completed run that wrote frames, publish its outputs as the
    run folder does; returns each output's path (the partial one when not published)."""
    results = {}
    for sink in sinks:
        sink.close(completed)
    for sink in sinks:
        if completed and sink.count:
            publish(sink.tmp, sink.final)
        path = sink.final if completed else sink.tmp
        if path.exists():
            results[sink.result_key] = str(path)
    return results


def run_sinks(out: Path, count: int = 5, depths: list[np.ndarray] | None = None, completed: bool = True, **options) -> dict:
    """One run as the runner makes it: open all, write each frame to each, close in order."""
    out.mkdir(parents=True, exist_ok=True)
    info = run_info(out, **options)
    sinks = build_sinks(info)
    for sink in sinks:
        sink.open(info)
    for i, depth in enumerate(depth_frames(count) if depths is None else depths):
        for sink in sinks:
            sink.put(2 * i, rgb_frame(i), depth)
    return finish(sinks, completed)


# --------------------------------------------------------------------------- annotations, tables, records


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")


def square(label, x0, y0, x1, y1, kind="polygon"):
    points = [[x0, y0], [x1, y1]] if kind == "rectangle" else [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return {"label": label, "shape_type": kind, "points": points}


def read_table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as rows:
        reader = csv.DictReader(rows)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def read_seed_snippet(path: Path, line: int) -> np.ndarray:
    """The reader from the user documentation, as written there (with the line chosen)."""
    record = json.loads(Path(path).read_text().splitlines()[line])
    encoded = record["otherData"]["depth_map"]["image_data"]
    scale = record["otherData"]["depth_map"]["scale"]  # {"min": ..., "max": ...}

    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    quant = np.array(image, dtype=np.float32)
    depth = (quant / 65535.0) * (scale["max"] - scale["min"]) + scale["min"]
    return depth


def wait_for(condition, proc, what: str, limit_s: float = 120) -> None:
    """Poll `condition` while the subprocess `proc` runs; fail if it ends or time runs out first."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, f"no {what} within {limit_s} s"
        time.sleep(0.02)
