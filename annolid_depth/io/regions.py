"""Depth per tracked region: the rows of `depth_regions.csv` and its plot.

One row per frame and shape label (the instance name, e.g. `mouse_1`). Statistics cover the
pixels of the region with a usable depth (the point clouds' rule, `camera.py`); `excluded`
counts the others. `u`, `v` is the pixel centroid of the whole region in the processed
frame, and `x`, `y`, `z` the mean of its usable pixels back-projected through the point
clouds' pinhole camera. `units` says what the depth values are: `m` for metric models; `disparity` for
relative ones (larger = nearer, unknown scale and shift), where `z` = 1 / disparity is a
depth only up to an unknown scale, never metres.

With a floor (`floor.py`), `height_median`, `height_p90`, `height_max` are the signed
distances of the region's usable points above it (positive towards the camera) and
`floor_x`, `floor_y` the region's mean point in the floor's frame, so distances on the floor
are plain differences. These five are in the unit of `x`, `y`, `z` (`m`, or 1 / disparity for
relative models: `floor.floor_units`), come after `units` so that every earlier column keeps
its place, and are empty without a floor.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import OutputError
from .camera import back_project, usable
from .floor import Floor

COLUMNS = ("frame_index", "time_s", "label", "pixels", "median", "mean", "p10", "p90", "min", "max",
           "u", "v", "x", "y", "z", "excluded", "units", "height_median", "height_p90", "height_max", "floor_x", "floor_y")
PLOT_MISSING = "depth_regions.png needs matplotlib: pip install 'annolid-depth[plot]'"


def units(metric: bool) -> str:
    """The word for a run's depth unit, in the table, the plot and the colour bars."""
    return "m" if metric else "disparity"


def header() -> str:
    return ",".join(COLUMNS) + "\n"


def region_rows(
    frame_index: int,
    time_s: float,
    label_map: np.ndarray,
    names: list[str],
    depth: np.ndarray,
    rays: tuple[np.ndarray, np.ndarray],
    metric: bool,
    floor: Floor | None = None,
) -> str:
    """CSV rows for one frame, a row per label in `names` (one whose pixels all lack a
    usable depth with `pixels` 0 and empty statistics; empty heights without a `floor`).
    Work goes label by label, each a mask over the frame: a few labels per frame, never a
    loop over pixels."""
    ok = usable(depth, metric)
    columns = np.arange(label_map.shape[1])
    lines = np.arange(label_map.shape[0])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for k in range(1, len(names)):
        region = label_map == k
        area = int(np.count_nonzero(region))
        centre = [None, None]
        if area:
            centre = [np.count_nonzero(region, axis=0) @ columns / area, np.count_nonzero(region, axis=1) @ lines / area]
        values, xyz = back_project(depth, region.ravel() & ok, rays, metric)
        stats, point, heights, foot = [None] * 6, [None] * 3, [None] * 3, [None] * 2
        if values.size:
            low, p10, median, p90, high = np.percentile(values, [0, 10, 50, 90, 100])
            stats = [median, values.mean(dtype=np.float64), p10, p90, low, high]
            point = [axis.mean(dtype=np.float64) for axis in xyz]
            if floor is not None:
                heights = np.percentile(floor.height(*xyz), [50, 90, 100])
                foot = floor.floor_xy(*point)
        writer.writerow([frame_index, f"{time_s:.6f}", names[k], values.size, *cells(*stats, *centre, *point),
                         area - values.size, units(metric), *cells(*heights, *foot)])
    return out.getvalue()


def cells(*numbers) -> list[str]:
    return [f"{float(v):.6g}" if v is not None else "" for v in numbers]


def read_medians(csv_path: str | Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], str]:
    """Each label's (frame indices, times, medians) from a `depth_regions.csv`, NaN where
    no pixel had a usable depth, and the table's units."""
    series: dict[str, tuple[list, list, list]] = {}
    unit = units(metric=False)
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
    per label. Drawn with matplotlib's Agg canvas (no window, no global backend change)."""
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
    figure.savefig(png_path, format="png")
    return Path(png_path)
