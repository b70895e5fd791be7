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
from .floor import Floor, floor_units

HEIGHT_COLUMNS = ("height_median", "height_p90", "height_max", "floor_x", "floor_y")
COLUMNS = ("frame_index", "time_s", "label", "pixels", "median", "mean", "p10", "p90", "min", "max",
           "u", "v", "x", "y", "z", "excluded", "units", *HEIGHT_COLUMNS)
PLOT_MISSING = "depth_regions.png needs matplotlib: pip install 'annolid-depth[plot]'"


def units(metric: bool) -> str:
    """The word for a run's depth unit, in the table, the plot and the colour bars."""
    return "m" if metric else "disparity"


def header() -> str:
    return ",".join(COLUMNS) + "\n"


def region_rows(*args, **options) -> str:
    """CSV rows for one frame (`region_cells`' arguments), a row per label in `names` (one
    whose pixels all lack a usable depth with `pixels` 0 and empty statistics; empty heights
    without a `floor`)."""
    return rows_text(region_cells(*args, **options))


def region_cells(
    frame_index: int,
    time_s: float,
    label_map: np.ndarray,
    names: list[str],
    depth: np.ndarray,
    rays: tuple[np.ndarray, np.ndarray],
    metric: bool,
    floor: Floor | None = None,
) -> list[list[str]]:
    """`region_rows` as cells, a list of strings per row. Work goes label by label, each a mask over the
    frame: a few labels per frame, never a loop over pixels."""
    ok = usable(depth, metric)
    columns = np.arange(label_map.shape[1])
    lines = np.arange(label_map.shape[0])
    rows = []
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
        rows.append([str(frame_index), f"{time_s:.6f}", names[k], str(values.size), *cells(*stats, *centre, *point),
                     str(area - values.size), units(metric), *cells(*heights, *foot)])
    return rows


def with_heights(stats: list[list[str]], heights: list[list[str]]) -> list[list[str]]:
    """The rows of `stats` with the height columns of `heights` (rows of the same labels)."""
    kept = len(COLUMNS) - len(HEIGHT_COLUMNS)
    return [row[:kept] + other[kept:] for row, other in zip(stats, heights)]


def rows_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def cells(*numbers) -> list[str]:
    return [f"{float(v):.6g}" if v is not None else "" for v in numbers]


def read_series(csv_path: str | Path, *columns: str) -> tuple[dict[str, tuple[np.ndarray, ...]], str]:
    """Each label's (frame indices, times, one array per column) from a `depth_regions.csv`,
    NaN for empty cells and for columns the table lacks (one written before heights
    existed), and the table's units."""
    series: dict[str, list[list]] = {}
    unit = units(metric=False)
    with open(csv_path, newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            frames, times, *values = series.setdefault(row["label"], [[] for _ in range(2 + len(columns))])
            frames.append(int(row["frame_index"]))
            times.append(float(row["time_s"]))
            for column, cell in zip(values, (row.get(name) for name in columns)):
                column.append(float(cell) if cell else np.nan)
            unit = row["units"]
    arrays = {label: (np.array(frames, np.int64), *map(np.array, rest)) for label, (frames, *rest) in series.items()}
    return arrays, unit


def read_medians(csv_path: str | Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], str]:
    """Each label's (frame indices, times, medians), NaN where no pixel had a usable depth,
    and the table's units."""
    return read_series(csv_path, "median")


def read_heights(csv_path: str | Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], str]:
    """Each label's (frame indices, times, median heights above the floor), NaN where the
    frame had no floor height, and the heights' unit."""
    series, unit = read_series(csv_path, "height_median")
    return series, height_units(unit)


def height_units(table_units: str) -> str:
    """The unit of the heights and floor paths of a table whose depth is in `table_units`."""
    return floor_units(table_units == units(metric=True))


def median_axis_title(unit: str) -> str:
    """What the plotted medians are, said the same way in the PNG and the GUI."""
    return "median depth (metres)" if unit == "m" else "median disparity (relative, no unit; nearer is up)"


def height_axis_title(unit: str) -> str:
    """What the plotted heights are (`unit`: `height_units`), in the PNG and the GUI."""
    if unit == "m":
        return "median height above the floor (metres)"
    return f"median height above the floor ({unit}: relative, unknown scale)"


def figure(size: tuple[float, float]):
    """A matplotlib figure on its own Agg canvas (no window, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise OutputError(PLOT_MISSING) from None
    drawing = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(drawing)
    return drawing


def say(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)


def plot_regions(csv_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """`png_path`: from a `depth_regions.csv`, the median depth of each label over time and,
    beside it, its median height above the floor, one line per label in the same colour."""
    series, unit = read_series(csv_path, "median", "height_median")
    drawing = figure((13, 4.5))
    depth_axes, height_axes = drawing.subplots(1, 2)
    for colour, (label, (_, times, medians, heights)) in enumerate(series.items()):
        depth_axes.plot(times, medians, f"C{colour}", label=label, linewidth=1.2)
        height_axes.plot(times, heights, f"C{colour}", label=label, linewidth=1.2)
    depth_axes.set_ylabel(median_axis_title(unit))
    depth_axes.set_title(title or "Depth per region")
    height_axes.set_ylabel(height_axis_title(height_units(unit)))
    height_axes.set_title("Height above the floor")
    height_axes.axhline(0.0, color="0.6", linewidth=0.8)
    for axes in (depth_axes, height_axes):
        axes.set_xlabel("time (s)")
    if not series:
        say(depth_axes, "no annotated frames")
    else:
        depth_axes.legend(loc="best", fontsize="small")
    if not any(np.isfinite(heights).any() for *_, heights in series.values()):
        say(height_axes, "no floor: no heights")
    drawing.savefig(png_path, format="png")
    return Path(png_path)


def plot_paths(csv_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """`png_path` (`depth_paths.png`): each label's path on the floor seen from above, its
    mean point in the floor frame frame by frame (y towards the top of the image), a dot at
    its first frame, equal scales on both axes."""
    series, unit = read_series(csv_path, "floor_x", "floor_y")
    unit = height_units(unit)
    drawing = figure((6.5, 6))
    axes = drawing.subplots()
    drawn = False
    for colour, (label, (_, _, xs, ys)) in enumerate(series.items()):  # colours as in depth_regions.png
        found = np.isfinite(xs) & np.isfinite(ys)
        if found.any():
            axes.plot(xs, ys, f"C{colour}", label=label, linewidth=1.2)
            axes.plot(xs[found][0], ys[found][0], f"C{colour}o")
            drawn = True
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_xlabel(f"floor x ({unit})")
    axes.set_ylabel(f"floor y ({unit})")
    axes.set_title(title or "Paths on the floor")
    if drawn:
        axes.legend(loc="best", fontsize="small")
    else:
        say(axes, "no floor: no paths")
    drawing.savefig(png_path, format="png")
    return Path(png_path)
