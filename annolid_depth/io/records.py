"""The `depth.ndjson` record: one LabelMe-shaped JSON object per processed frame.

The depth map travels as a 16-bit PNG (base64) with the frame's own value range, so
`depth = q / 65535 * (max - min) + min` recovers it within one quantisation step, with
nothing but PIL and numpy on the reader's side.
"""
from __future__ import annotations

import bisect
import functools
import json
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .. import __version__
from ..errors import NonFiniteDepthError

NDJSON = "depth.ndjson"  # the file of a run's records
LEVELS = 65535
RELATIVE_DISPARITY, METRIC_DEPTH = "relative_disparity", "metric_depth"  # what a record's values are
KINDS = {RELATIVE_DISPARITY: None, METRIC_DEPTH: "m"}  # -> their unit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type: grayscale, truecolour


def zlib_deflate(data: bytes) -> bytes:
    """zlib level 1 with run-length matching: fast, and about as small as zlib gets on depth maps."""
    packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    return packer.compress(data) + packer.flush()


try:  # SIMD base64 (the `fast` extra): faster, and the GIL left free
    from pybase64 import b64decode, b64encode
except ImportError:
    from base64 import b64decode, b64encode

try:  # ISA-L's deflate at level 1: several times zlib's speed, the same size
    from isal.isal_zlib import compress as _isal_compress

    def deflate(data: bytes) -> bytes:
        return _isal_compress(data, 1)

except ImportError:
    deflate = zlib_deflate


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a gray or BGR (OpenCV's order) uint8/uint16 image, written here for speed:
    it runs once per frame per output. Every row gets the "sub" filter (each byte minus the
    same byte of the pixel to its left, which numpy does in one subtraction; on depth maps
    within 5 % of the size of adaptive filters) and one fast deflate: with the `isal`
    package (pip install 'annolid-depth[fast]'), else zlib's run-length mode; either is faster
    than OpenCV's encoder at its fastest (bench/bench_pipeline.py)."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3) or channels not in COLOR_TYPES:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} image as PNG; expected gray or BGR, 8 or 16 bit")
    height, width = image.shape[:2]
    pixels = image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # PNG stores RGB; far faster than numpy's reversed copy
    rows = np.ascontiguousarray(pixels, image.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    step = channels * image.itemsize  # bytes per pixel
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 1  # filter type "sub"
    filtered[:, 1 : 1 + step] = rows[:, :step]
    np.subtract(rows[:, step:], rows[:, :-step], out=filtered[:, 1 + step :])  # modulo 256, as PNG's filters
    header = struct.pack(">IIBBBBB", width, height, 8 * image.itemsize, COLOR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (PNG_SIGNATURE, png_chunk(b"IHDR", header), png_chunk(b"IDAT", deflate(filtered)), png_chunk(b"IEND", b""))
    )


class Quantised(NamedTuple):
    """A depth map as 16-bit levels over its own range, as in the record."""

    levels: np.ndarray
    lo: float
    hi: float

    def depth(self) -> np.ndarray:
        return (self.levels.astype(np.float32) / LEVELS * (self.hi - self.lo) + self.lo).astype(np.float32)


def once_per_frame(fn):
    """`fn`, remembering its last call on each thread: called again with the same arrays
    (the same objects) and equal plain values, it returns the same result. Every sink of a
    frame is prepared in one task, on one thread, so the depth record, the depth video and
    the depth frames share one quantisation and one colour image of each frame."""
    memo = threading.local()

    def same(a, b) -> bool:
        return a is b or (isinstance(a, (bool, int, float, str)) and type(a) is type(b) and a == b)

    @functools.wraps(fn)
    def remembered(*args):
        last = getattr(memo, "last", None)
        if last is not None and len(last[0]) == len(args) and all(map(same, last[0], args)):
            return last[1]
        result = fn(*args)
        memo.last = args, result
        return result

    return remembered


@once_per_frame
def quantize(depth: np.ndarray) -> Quantised:
    """float depth -> (uint16 map, min, max). A constant map quantises to zeros. A map with
    a NaN or an infinity is refused: the engines recompute such frames in FP32 or stop the
    run, so one reaching here is a bug that must not be written as plausible zeros."""
    lo, hi = float(depth.min()), float(depth.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise NonFiniteDepthError(f"{np.count_nonzero(~np.isfinite(depth))} depth values are NaN or infinite")
    if hi <= lo:
        return Quantised(np.zeros(depth.shape, np.uint16), lo, hi)
    # (depth - lo) * scale, rounded to the nearest level and clipped to 0..LEVELS, in one pass
    # (OpenCV's scaled conversion instead of numpy's five passes). Its
    # float rounding puts about 1 value in 2000 one level off numpy's, within the half-level
    # quantisation error either way.
    scale = LEVELS / (hi - lo)
    return Quantised(cv2.addWeighted(depth, scale, depth, 0.0, -lo * scale, dtype=cv2.CV_16U), lo, hi)


def depth_kind(metric: bool) -> str:
    """What a model's values are: metres, or disparity (larger = nearer, unknown scale and shift)."""
    return METRIC_DEPTH if metric else RELATIVE_DISPARITY


def encode_record(depth: np.ndarray, frame_index: int, video_name: str, stem: str, kind: str) -> dict:
    """The record of one frame; `kind` (see `depth_kind`) says what the values are."""
    if kind not in KINDS:
        raise ValueError(f"unknown depth kind {kind!r}; expected one of {', '.join(KINDS)}")
    quant, lo, hi = quantize(depth)
    return {
        "version": __version__,
        "flags": {},
        "shapes": [],
        "imagePath": f"{stem}_{frame_index:09d}.png",
        "imageData": None,
        "imageHeight": int(depth.shape[0]),
        "imageWidth": int(depth.shape[1]),
        "frame_index": int(frame_index),
        "video_name": video_name,
        "otherData": {
            "depth_map": {
                "image_data": b64encode(encode_png(quant)).decode("ascii"),
                "scale": {"min": lo, "max": hi},
                "dtype": "uint16",
                "kind": kind,
                "unit": KINDS[kind],
            }
        },
    }


IMAGE_DATA_SLOT = "\0"  # json.dumps writes it as "\u0000", which nothing else in a record can contain


def record_line(record: dict) -> str:
    """`json.dumps(record) + "\\n"`, the same text, without JSON scanning the megabytes of
    base64 for characters to escape (it has none)."""
    depth_map = record["otherData"]["depth_map"]
    slotted = {**record, "otherData": {**record["otherData"], "depth_map": {**depth_map, "image_data": IMAGE_DATA_SLOT}}}
    head, tail = json.dumps(slotted).split(json.dumps(IMAGE_DATA_SLOT))
    return f'{head}"{depth_map["image_data"]}"{tail}\n'


def decode_levels(record: dict) -> Quantised:
    """A record's depth as it is stored: 16-bit levels and their range."""
    depth_map = record["otherData"]["depth_map"]
    png = np.frombuffer(b64decode(depth_map["image_data"]), np.uint8)
    quant = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
    if quant is None or quant.dtype != np.uint16:
        raise ValueError(f"the depth PNG of frame {record.get('frame_index')} is not a 16-bit image")
    return Quantised(quant, depth_map["scale"]["min"], depth_map["scale"]["max"])


def decode_depth(record: dict) -> np.ndarray:
    """The float32 depth map of a record."""
    return decode_levels(record).depth()


def parse_last_line(line: str | bytes) -> dict | None:
    """A final line with no newline is the record a killed run was writing, unless it
    parses (a file saved by another tool without a trailing newline)."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def iter_records(path: str | Path) -> Iterator[dict]:
    """Complete records in file order; a last line cut short by a killed run is skipped."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line) if line.endswith("\n") else parse_last_line(line)
            if record is not None:
                yield record


FRAME_INDEX = re.compile(rb'"frame_index": (\d+)')
HEAD = 4096  # frame_index comes before the image data, after at most two escaped file names


class RecordIndex:
    """Random access to one frame's depth without loading the others: byte offsets of each
    complete record, found without decoding the PNGs (for scrubbing through results)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offsets: dict[int, int] = {}
        self.kind = RELATIVE_DISPARITY
        with open(self.path, "rb") as lines:
            offset = 0
            for line in lines:
                complete = line.endswith(b"\n") or parse_last_line(line) is not None
                found = FRAME_INDEX.search(line, 0, HEAD) if complete else None
                if found:
                    self.offsets[int(found.group(1))] = offset
                offset += len(line)
        self.frames = sorted(self.offsets)
        if self.frames:
            self.kind = self.record(self.frames[0])["otherData"]["depth_map"].get("kind", self.kind)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def metric(self) -> bool:
        return self.kind == METRIC_DEPTH

    def nearest(self, frame_index: int) -> int | None:
        """The processed frame shown for `frame_index`: itself, else the last one before it."""
        i = bisect.bisect_right(self.frames, frame_index)
        return self.frames[i - 1] if i else None

    def record(self, frame_index: int) -> dict:
        with open(self.path, "rb") as lines:
            lines.seek(self.offsets[frame_index])
            return json.loads(lines.readline())

    def depth(self, frame_index: int) -> np.ndarray:
        return decode_depth(self.record(frame_index))
