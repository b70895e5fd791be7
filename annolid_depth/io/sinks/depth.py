"""The depth itself, as numbers: `depth.ndjson` (always), the npz archive and the EXR frames."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import OutputError
from ..files import cannot_write, own_partial
from ..npz import DATA_OFFSET, crc32, data_crc, finish_npz
from ..records import FRAME_INDEX, HEAD, NDJSON, encode_record, record_line
from .base import Sink, check_prefix

HEAD_SCAN = 1 << 24  # bytes read back to find the last record of a resumed depth.ndjson


class NdjsonSink(Sink):
    """`depth.ndjson`: a record per frame, flushed as it is written, so a killed run leaves
    `depth.ndjson.partial` with every line but at most the last one complete."""

    result_key = "depth_ndjson"

    def name(self, info):
        return NDJSON

    def open(self, info):
        super().open(info)
        self.file = open(self.tmp, "r+b")  # noqa: SIM115 (closed in close())
        self.crc = 0  # of every byte written, for the resume point
        if info.resume is None:
            self.file.truncate(0)
            return
        mark = self.resume_mark("bytes", "crc32")  # checked, then cut back: a killed run may have written more
        try:
            check_prefix(self.tmp, self.file, mark)
        except ValueError:
            self.file.close()
            raise
        self.crc, size = mark["crc32"], mark["bytes"]
        self.file.seek(size)
        self.file.truncate()
        if size:
            self.file.seek(size - min(size, HEAD_SCAN))
            tail = self.file.read().rsplit(b"\n", 2)[-2]
            found = FRAME_INDEX.search(tail[:HEAD])
            if found is None or int(found.group(1)) != info.resume.last_index:
                self.file.close()
                raise ValueError(f"{self.tmp} does not end with frame {info.resume.last_index} at its resume point")

    def mark(self):
        return {"bytes": self.file.tell(), "crc32": self.crc}

    def prepare(self, frame_index, rgb, depth):
        record = encode_record(depth, frame_index, self.info.video_path.name, self.info.stem, self.info.kind)
        return record_line(record)

    def write(self, frame_index, line):
        data = line.encode()
        self.file.write(data)
        self.file.flush()
        self.crc = crc32(data, self.crc)
        super().write(frame_index, line)

    def close(self, completed):
        self.file.close()


class NpzSink(Sink):
    """`<stem>_depths.npz` with `depths` float32 [N, H, W] and `frame_indices` int64 [N].

    Each frame's depth is written once, at its place in the unfinished archive (see
    `io/npz.py`), its CRC-32 carried on, and its index to a small side file; a resumed run
    cuts both back to a whole number of frames and reads its frames once for their CRC. At
    the end the headers, the indices and the zip's directory are added in place, so memory
    and time at the end do not grow with the video.
    """

    result_key = "npz"

    def name(self, info):
        return f"{info.stem}_depths.npz"

    def open(self, info):
        super().open(info)
        self.frame_bytes = info.height * info.width * 4
        self.archive = self._reopen(self.tmp, self.count * self.frame_bytes, head=DATA_OFFSET)  # headers: at the end
        try:
            side = own_partial(self.final.with_name(self.final.name + ".idx"), keep=info.resume is not None)
            self.indices = self._reopen(side, self.count * 8)
        except ValueError:
            self.archive.close()
            raise
        self.crc = data_crc(self.archive, self.count * self.frame_bytes) if self.count else 0
        self.index_crc = crc32(self._read_indices()) if self.count else 0
        if info.resume is not None:
            self._check(self.resume_mark("frames", "crc32", "index_crc32"))

    def _check(self, mark: dict) -> None:
        """That the frames and indices read back are those written up to the resume point."""
        problem = ("holds another number of frames" if mark["frames"] != self.count
                   else "differs from what was written up to its resume point (damaged)" if mark["crc32"] != self.crc
                   else "has frame indices that differ from those written (damaged)" if mark["index_crc32"] != self.index_crc
                   else None)
        if problem is not None:
            self.archive.close()
            self.indices.close()
            raise ValueError(f"{self.tmp} {problem}")

    def _read_indices(self) -> bytes:
        self.indices.seek(0)
        data = self.indices.read()
        self.indices.seek(0, os.SEEK_END)
        return data

    def _reopen(self, path: Path, frames_size: int, head: int = 0):
        """The file, holding `head` bytes kept for later and then `frames_size` bytes of
        frames: created so, or (resuming) cut back to that."""
        try:
            stream = open(path, "r+b" if self.info.resume else "w+b")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise cannot_write(path, exc) from None
        if not self.info.resume:
            stream.write(bytes(head))
        size = head + frames_size
        if stream.seek(0, os.SEEK_END) < size:
            stream.close()
            raise ValueError(f"{path} holds fewer frames than the resume point")
        stream.truncate(size)
        stream.seek(size)
        return stream

    def prepare(self, frame_index, rgb, depth):
        if depth.shape != (self.info.height, self.info.width):
            raise ValueError(f"depth of frame {frame_index} is {depth.shape}, not {(self.info.height, self.info.width)}")
        return np.ascontiguousarray(depth, np.float32)

    def mark(self):
        self.archive.flush()  # on disk for the resume point: a killed process loses its buffers
        self.indices.flush()
        return {"frames": self.count, "crc32": self.crc, "index_crc32": self.index_crc}

    def write(self, frame_index, data):
        self.archive.write(data)
        self.crc = crc32(data, self.crc)
        index = np.int64(frame_index).tobytes()
        self.indices.write(index)
        self.index_crc = crc32(index, self.index_crc)
        super().write(frame_index, data)

    def close(self, completed):
        try:
            self.indices.flush()
            if completed and self.count:
                self.indices.seek(0)
                finish_npz(self.archive, ("depths.npy", "<f4", (self.count, self.info.height, self.info.width)),
                           self.count * self.frame_bytes, self.crc,
                           ("frame_indices.npy", "<i8", (self.count,), self.indices.read()))
            else:
                self.archive.flush()
        finally:  # the index file goes once the run is published: a run killed before resumes from it
            self.archive.close()
            self.indices.close()


class ExrSink(Sink):
    """`<stem>_depths_exr/depth_NNNNN.exr`: one single-channel float32 EXR (channel `Z`,
    zip-compressed) per frame, the float depth exactly as the model gave it."""

    result_key = "exr"
    folder = True

    def name(self, info):
        return f"{info.stem}_depths_exr"

    def open(self, info):
        try:
            import OpenEXR
        except ImportError:
            raise OutputError("EXR output needs the OpenEXR package: pip install OpenEXR (or turn save_exr off)") from None
        if not hasattr(OpenEXR, "File"):
            raise OutputError("EXR output needs OpenEXR 3.3 or newer: pip install --upgrade OpenEXR (or turn save_exr off)")
        self.exr = OpenEXR
        super().open(info)

    def prepare(self, frame_index, rgb, depth):
        header = {"compression": self.exr.ZIP_COMPRESSION, "type": self.exr.scanlineimage}
        channels = {"Z": np.ascontiguousarray(depth, np.float32)}
        with self.saving(f"depth_{frame_index:05d}.exr") as path, self.exr.File(header, channels) as image:
            image.write(str(path))


# Every output, with the setting that asks for it (None: always). depth.ndjson comes first,
# since the rendered outputs read it back when they close; the region plot reads the table.
