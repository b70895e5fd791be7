"""An .npz archive whose first array is written in place, frame by frame.

An .npz is a zip of .npy files. Here its first member's data starts at a fixed offset
(`DATA_OFFSET`), so each frame's depth is written once, at its final place, as it arrives;
when the run completes, the space before it receives the zip and .npy headers (the shape
is known only then), the second array follows as a small member, then the zip's central
directory. The data's CRC-32 is kept as frames are written and joined to the header's at
the end, so nothing is copied or read back, however long the video: assembling the archive
from a side file at the end took as long again as writing it. Zip64 throughout: the depth array passes
4 GiB after about 1,000 frames at 1280x720. `numpy.load` and `zipfile` read the result.
"""
from __future__ import annotations

import struct
from typing import BinaryIO


def combine_crc32(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of a || b from those of a and b and b's length (zlib's method: the effect
    of `length2` zero bytes on crc1, as 32x32 bit matrices squared log2 times). Python's
    zlib does not offer it; ISA-L does."""

    def times(matrix, vector):
        total, i = 0, 0
        while vector:
            if vector & 1:
                total ^= matrix[i]
            vector, i = vector >> 1, i + 1
        return total

    def square(matrix):
        return [times(matrix, row) for row in matrix]

    operator = square(square([0xEDB88320] + [1 << n for n in range(31)]))  # four zero bits
    while length2:
        operator = square(operator)  # one zero byte, then two, four, ...
        if length2 & 1:
            crc1 = times(operator, crc1)
        length2 >>= 1
    return crc1 ^ crc2


try:  # ISA-L's CRC-32 (the `fast` extra): faster than zlib's
    from isal.isal_zlib import crc32, crc32_combine
except ImportError:
    from zlib import crc32

    crc32_combine = combine_crc32


DATA_OFFSET = 256  # the first array's data: after its zip local header and .npy header, 64-byte aligned
ZIP64_VERSION = 45
DOS_DATE = 0x21  # 1980-01-01: the archive's members carry no meaningful time
UNKNOWN32 = 0xFFFFFFFF  # "see the zip64 extra field"
CHUNK = 1 << 22


def npy_header(descr: str, shape: tuple[int, ...], size: int | None = None) -> bytes:
    """A version 2.0 .npy header, padded with spaces to `size` bytes (default: the next
    multiple of 64)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode("latin1")
    size = size or -(-(12 + len(text) + 1) // 64) * 64
    padding = size - 12 - len(text) - 1
    if padding < 0:
        raise ValueError(f"an .npy header for shape {shape} does not fit in {size} bytes")
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", size - 12) + text + b" " * padding + b"\n"


def local_header(name: bytes, crc: int, size: int) -> bytes:
    extra = struct.pack("<HHQQ", 0x0001, 16, size, size)
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, ZIP64_VERSION, 0, 0, 0, DOS_DATE, crc, UNKNOWN32, UNKNOWN32,
                       len(name), len(extra)) + name + extra


def central_header(name: bytes, crc: int, size: int, offset: int) -> bytes:
    extra = struct.pack("<HHQQQ", 0x0001, 24, size, size, offset)
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, ZIP64_VERSION, ZIP64_VERSION, 0, 0, 0, DOS_DATE, crc,
                       UNKNOWN32, UNKNOWN32, len(name), len(extra), 0, 0, 0, 0, UNKNOWN32) + name + extra


def first_header_size(name: str) -> int:
    return len(local_header(name.encode(), 0, 0))


def data_crc(file: BinaryIO, data_size: int) -> int:
    """CRC-32 of the `data_size` bytes at DATA_OFFSET (a resumed archive's frames so far);
    the file is left at their end."""
    crc, left = 0, data_size
    file.seek(DATA_OFFSET)
    while left:
        chunk = file.read(min(CHUNK, left))
        if not chunk:
            raise ValueError(f"{file.name} holds {data_size - left} bytes of data, not {data_size}")
        crc, left = crc32(chunk, crc), left - len(chunk)
    return crc


def finish_npz(file: BinaryIO, first: tuple[str, str, tuple[int, ...]], data_size: int, data_crc: int,
               second: tuple[str, str, tuple[int, ...], bytes]) -> None:
    """Turn `file`, holding the first array's `data_size` bytes (of CRC-32 `data_crc`) at
    DATA_OFFSET, into an npz: `first` = (member name, dtype descr, shape) of that array,
    `second` = the same and the bytes of a small array that follows it. The file ends right
    after the archive."""
    name, descr, shape = first
    head = npy_header(descr, shape, DATA_OFFSET - first_header_size(name))
    crc = crc32_combine(crc32(head), data_crc, data_size)
    members = [(name.encode(), crc, len(head) + data_size, 0)]
    file.seek(0)
    file.write(local_header(name.encode(), crc, len(head) + data_size) + head)

    name, descr, shape, data = second
    head = npy_header(descr, shape)
    crc = crc32(data, crc32(head))
    offset = DATA_OFFSET + data_size
    file.seek(offset)
    file.truncate()
    file.write(local_header(name.encode(), crc, len(head) + len(data)) + head + data)
    members.append((name.encode(), crc, len(head) + len(data), offset))

    directory_at = file.tell()
    directory = b"".join(central_header(*member) for member in members)
    end64_at = directory_at + len(directory)
    file.write(directory)
    file.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, ZIP64_VERSION, ZIP64_VERSION, 0, 0,
                           len(members), len(members), len(directory), directory_at))
    file.write(struct.pack("<IIQI", 0x07064B50, 0, end64_at, 1))
    file.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), UNKNOWN32, UNKNOWN32, 0))
    file.flush()
