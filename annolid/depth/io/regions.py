"""Depth per tracked region: the rows of `depth_regions.csv` and its plot.

One row per frame and shape label (the instance name, e.g. `mouse_1`). Statistics cover the
pixels of the region with a usable depth (the point clouds' rule); `excluded` counts the
others. `u`, `v` is the pixel centroid of the whole region in the processed frame, and
`x`, `y`, `z` the mean of its usable pixels back-projected through the point clouds' pinhole
camera. `units` says what the depth values are: `m` for metric models; `disparity` for
relative ones (larger = nearer, unknown scale and shift), where `z` = 1 / disparity is a
depth only up to an unknown scale, never metres.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from ..errors import OutputError

COLUMNS = ("frame_index", "time_s", "label", "pixels", "median", "mean", "p10", "p90", "min", "max",
           "u", "v", "x", "y", "z", "excluded", "units")
PLOT_MISSING = "depth_regions.png needs matplotlib: pip install 'annolid-depth[plot]'"


def units(metric: bool) -> str:
    return "m" if metric else "disparity"


def header() -> str:
    return ",".join(COLUMNS) + "\n"


def region_rows(
    frame_index: int,
    time_s: float,
    label_map: np.ndarray,
    names: list[str],
    keep: np.ndarray,
    values: np.ndarray,
    xyz: tuple[np.ndarray, np.ndarray, np.ndarray],
    metric: bool,
) -> str:
    """CSV rows for one frame: `keep` are the flat indices of the usable pixels, `values`
    their depth and `xyz` their back-projected points. Every label in `names` gets a row,
    one whose pixels all lack a usable depth with `pixels` 0 and empty statistics."""
    count = len(names)
    labels = label_map.ravel()
    inside = np.flatnonzero(labels)
    area = np.bincount(labels[inside], minlength=count)
    width = label_map.shape[1]
    u_sum = np.bincount(labels[inside], weights=inside % width, minlength=count)
    v_sum = np.bincount(labels[inside], weights=inside // width, minlength=count)

    kept_labels = labels[keep]
    region = kept_labels > 0
    kept_labels, values = kept_labels[region], values[region].astype(np.float64)
    pixels = np.bincount(kept_labels, minlength=count)
    depth_sum = np.bincount(kept_labels, weights=values, minlength=count)
    point_sums = [np.bincount(kept_labels, weights=axis[region], minlength=count) for axis in xyz]

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for k in range(1, count):
        stats: list = [None] * 6
        centroid: list = [None] * 3
        if pixels[k]:
            own = values[kept_labels == k]
            p10, median, p90 = np.percentile(own, [10, 50, 90])
            stats = [median, depth_sum[k] / pixels[k], p10, p90, own.min(), own.max()]
            centroid = [total[k] / pixels[k] for total in point_sums]
        pixel_centroid = [u_sum[k] / area[k], v_sum[k] / area[k]] if area[k] else [None, None]
        row = [frame_index, f"{time_s:.6f}", names[k], int(pixels[k]), *stats, *pixel_centroid, *centroid,
               int(area[k] - pixels[k]), units(metric)]
        writer.writerow(["" if v is None else f"{v:.6g}" if isinstance(v, float) else v for v in row])
    return out.getvalue()


def read_medians(csv_path: str | Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], str]:
    """Each label's (frame indices, times, medians) from a `depth_regions.csv`, NaN where
    no pixel had a usable depth, and the table's units."""
    series: dict[str, tuple[list, list, list]] = {}
    unit = "disparity"
    with open(csv_path, newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            frames, times, medians = series.setdefault(row["label"], ([], [], []))
            frames.append(int(row["frame_index"]))
            times.append(float(row["time_s"]))
            medians.append(float(row["median"]) if row["median"] else np.nan)
            unit = row["units"]
    arrays = {label: (np.array(f, np.int64), np.array(t), np.array(m)) for label, (f, t, m) in series.items()}
    return arrays, unit


def median_axis_title(unit: str) -> str:
    """What the plotted medians are, said the same way in the PNG and the GUI."""
    return "median depth (metres)" if unit == "m" else "median disparity (relative, no unit; nearer is up)"


def plot_regions(csv_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """`png_path`: the median of each label over time from a `depth_regions.csv`, one line
    per label. Drawn with matplotlib's Agg canvas (no window, no global backend change),
    written under a temporary name and renamed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise OutputError(PLOT_MISSING) from None
    series, unit = read_medians(csv_path)
    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, (_, times, medians) in series.items():
        axes.plot(times, medians, label=label, linewidth=1.2)
    axes.set_xlabel("time (s)")
    axes.set_ylabel(median_axis_title(unit))
    axes.set_title(title or "Depth per region")
    if series:
        axes.legend(loc="best", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no annotated frames", ha="center", va="center", transform=axes.transAxes)
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.name + ".partial")
    figure.savefig(tmp, format="png")
    os.replace(tmp, png_path)
    return png_path
