"""Point cloud files: CSV text formatted vectorised, and binary PLY.

CSV: each cell gets a fixed-width slot in one character matrix with a mask of the characters
in use; compacting the matrix by the mask gives the text, many times faster than
`np.savetxt` (bench/bench_point_cloud.py measures it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def cell_table(cells: list[bytes], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as (characters, in-use mask), both [len(cells), width] uint8, right-aligned."""
    width = width or max([1, *map(len, cells)])
    chars = np.zeros((len(cells), width), np.uint8)
    used = np.zeros((len(cells), width), np.uint8)
    for row, cell in enumerate(cells):
        if cell:
            chars[row, width - len(cell) :] = np.frombuffer(cell, np.uint8)
            used[row, width - len(cell) :] = 1
    return chars, used


def gather_rows(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`table[codes]` for a 2-D uint8 table, moving each row as one item: several times
    faster than numpy's row-wise fancy indexing."""
    width = table.shape[1]
    item = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(width, np.dtype((np.void, width)))
    return np.ascontiguousarray(table).view(item).ravel()[codes].view(np.uint8).reshape(len(codes), width)


DIGITS = np.array([list(f"{i:03d}\0".encode()) for i in range(1000)], np.uint8)  # 4 bytes: rows move as uint32
BYTES = cell_table([str(i).encode() for i in range(256)], 4)  # 0..255, each with its own width
POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def put_digits(out: np.ndarray, values: np.ndarray) -> None:
    """Non-negative integers as zero-padded digits filling `out` [n, width] (each value has
    at most `width` digits), three at a time from the right, one division per three."""
    for end in range(out.shape[1], 0, -3):
        start = max(0, end - 3)
        if start:
            values, three = np.divmod(values, 1000)
        else:
            three = values
        out[:, start:end] = gather_rows(DIGITS, three)[:, 3 - (end - start) : 3]


def csv_rows(columns: list[tuple[np.ndarray, int | tuple[np.ndarray, np.ndarray]]]) -> bytes:
    """Rows of CSV, vectorised. A column is (numbers, decimals), written in fixed point, or
    (codes, cell table) for text looked up by code (small integers, labels).

    Each cell gets a fixed-width slot in one character matrix with a mask of the characters
    in use (a number's unused leading digits, a '-' it does not need); compacting the matrix
    by the mask gives the text (bench/bench_point_cloud.py compares it with np.savetxt).
    """
    n = len(columns[0][0])
    layout = []
    for values, spec in columns:
        if isinstance(spec, tuple):
            layout.append((spec[0].shape[1], 0))
        else:
            whole = len(str(int(np.abs(values).max() + 0.5))) if n else 1  # rounding may add a digit
            layout.append((1 + whole + (1 + spec if spec else 0), whole))
    chars = np.empty((n, sum(width for width, _ in layout) + len(columns)), np.uint8)
    used = np.ones(chars.shape, bool)
    at = 0
    for (values, spec), (width, whole) in zip(columns, layout):
        cell, cell_used = chars[:, at : at + width], used[:, at : at + width]
        if isinstance(spec, tuple):
            cell[:] = gather_rows(spec[0], values)
            cell_used[:] = gather_rows(spec[1], values)
        else:
            scaled = np.rint(np.asarray(values, np.float64) * 10.0**spec).astype(np.int64)
            integral, fraction = np.divmod(np.abs(scaled), 10**spec)
            cell[:, 0], cell_used[:, 0] = ord("-"), scaled < 0
            put_digits(cell[:, 1 : 1 + whole], integral)
            digits = 1 + np.searchsorted(POWERS[: whole - 1], integral, side="right")
            cell_used[:, 1 : 1 + whole] = np.arange(whole) >= whole - digits[:, None]
            if spec:
                cell[:, 1 + whole] = ord(".")
                put_digits(cell[:, 2 + whole :], fraction)
        chars[:, at + width] = ord(",")
        at += width + 1
    chars[:, -1] = ord("\n")
    return np.compress(used.ravel(), chars.ravel()).tobytes()


def label_cells(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A cell table for labels, quoted as RFC 4180 asks when they hold , " or a line break."""
    quoted = [f'"{t.replace(chr(34), chr(34) * 2)}"' if any(c in t for c in ',"\r\n') else t for t in texts]
    return cell_table([q.encode() for q in quoted])


def decimals_for(z: np.ndarray, largest: float) -> int:
    """Decimals that give the nearest point six significant digits: 5 for a nearest depth
    of 1 to 10, more for 1 / disparity clouds of large disparities (a nearest z of 0.004
    gets 8), within what a 64-bit integer holds for the frame's largest coordinate."""
    if not z.size:
        return 5
    wanted = 5 - int(np.floor(np.log10(float(z.min()))))
    return max(0, min(wanted, 17 - len(str(int(largest)))))


CSV_CHUNK = 16384  # rows formatted at a time: the character matrix stays in cache


def write_csv(path: Path, points: dict[str, np.ndarray], names: list[str] | None) -> None:
    x, y, z, rgb = points["x"], points["y"], points["z"], points["rgb"]
    largest = max((float(np.abs(a).max()) for a in (x, y, z) if a.size), default=0.0)
    decimals = decimals_for(z, largest)
    columns = [(x, decimals), (y, decimals), (z, decimals), (points["intensity"], BYTES)]
    header = "x,y,z,intensity"
    if names is not None:
        columns.append((points["region"], label_cells(names)))
        header += ",region"
    columns += [(rgb[:, 0], BYTES), (rgb[:, 1], BYTES), (rgb[:, 2], BYTES)]
    header += ",red,green,blue\n"
    with open(path, "wb") as out:
        out.write(header.encode())
        out.writelines(
            csv_rows([(values[start : start + CSV_CHUNK], spec) for values, spec in columns])
            for start in range(0, len(z), CSV_CHUNK)
        )


def write_ply(path: Path, points: dict[str, np.ndarray], names: list[str] | None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if names is not None:
        fields.append(("region", "<i4"))
    vertices = np.empty(len(points["z"]), dtype=fields)
    for name in ("x", "y", "z", "intensity"):
        vertices[name] = points[name]
    vertices["red"], vertices["green"], vertices["blue"] = points["rgb"].T
    header = ["ply", "format binary_little_endian 1.0"]
    if names is not None:
        vertices["region"] = points["region"]
        header += [f"comment region {i} {' '.join(name.splitlines())}" for i, name in enumerate(names)]
    types = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header += [f"element vertex {len(vertices)}"] + [f"property {types[t]} {name}" for name, t in fields] + ["end_header"]
    with open(path, "wb") as out:
        out.write(("\n".join(header) + "\n").encode())
        vertices.tofile(out)
