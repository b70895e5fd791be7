"""A dockable pair of plots of each tracked animal over the video (`depth_regions.csv`): its
median depth and, beside it, its median height above the floor, with the floor's residual
(`depth_floor.json`) as the heights' sanity check.

The current frame is marked in both and follows the scrubber; a click on either seeks there.
The panel also names the tracked shape under the mouse, with its median, for the status bar.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QWidget

from ..io.annotations import VideoAnnotations
from ..io.floor import FLOOR_JSON, read_floor_document
from ..io.regions import height_axis_title, height_units, median_axis_title, read_series, units
from ..io.sinks import REGIONS_CSV

# Tableau's ten colours: distinct, and readable on a dark background
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
CURSOR = QColor("#ffffff")
MARGIN = {"left": 60, "right": 12, "top": 22, "bottom": 22}
INSET = 6  # pixels between the frame box and the first or last frame, so the cursor shows there too
TICKS = 4  # about this many value ticks


def ticks(low: float, high: float, count: int = TICKS) -> list[tuple[float, str]]:
    """Round values between `low` and `high`, a step of 1, 2 or 5 times a power of ten apart,
    all written with the step's decimals (never 0.5 beside 1.25)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [(low, f"{low:.4g}")]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    first = math.ceil(low / step - 1e-9)
    values = [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]
    return [(value, f"{value:.{decimals}f}") for value in values]


class RegionPlot(QWidget):
    """One value per label against the frame index, drawn with QPainter."""

    seek = Signal(int)  # the frame index clicked on

    def __init__(self, title=median_axis_title, empty: str = "No depth per region for this video (save_region_stats)",
                 parent=None):
        super().__init__(parent)
        self.title, self.empty, self.note = title, empty, ""
        self.series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.unit = units(metric=False)
        self.frame = 0
        self.frames, self.values = (0, 1), (0.0, 1.0)
        self.setMinimumSize(320, 140)

    def set_series(self, series: dict, unit: str, note: str = "") -> None:
        """`series`: label -> (frames, times, values); `note`: a line under the plot."""
        self.series, self.unit, self.note = series, unit, note
        self.setToolTip(note)
        frames = [f for f, _, _ in series.values() if len(f)]
        values = [m[np.isfinite(m)] for _, _, m in series.values()]
        values = np.concatenate(values) if values else np.empty(0)
        self.frames = (int(min(f.min() for f in frames)), int(max(f.max() for f in frames))) if frames else (0, 1)
        self.values = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        self.drawn = bool(values.size)
        self.update()

    def set_frame(self, frame: int) -> None:
        self.frame = frame
        self.update()

    def area(self) -> QRectF:
        return QRectF(self.rect()).adjusted(MARGIN["left"], MARGIN["top"], -MARGIN["right"], -MARGIN["bottom"])

    def span(self) -> tuple[float, float]:
        """The horizontal positions of the first and last frame."""
        area = self.area()
        return area.left() + INSET, max(area.right() - INSET, area.left() + INSET + 1)

    def to_x(self, frame) -> float:
        first, last = self.frames
        left, right = self.span()
        return left + (frame - first) / max(last - first, 1) * (right - left)

    def to_y(self, value) -> float:
        low, high = self.values
        area = self.area()
        return area.bottom() - INSET - (value - low) / (high - low or 1.0) * (area.height() - 2 * INSET)

    def frame_at(self, x: float) -> int:
        """The frame under a horizontal position, clamped to the plotted range."""
        first, last = self.frames
        left, right = self.span()
        frame = round(first + (x - left) / (right - left) * (last - first))
        return int(min(max(frame, first), last))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor("#1e1e1e"))
        painter.setPen(QColor("#cccccc"))
        if not self.series:
            painter.drawText(self.rect(), Qt.AlignCenter, self.empty)
            return
        area = self.area()
        painter.drawRect(area)
        painter.drawText(QRectF(area.left(), 2, area.width(), 18), Qt.AlignLeft, self.title(self.unit))
        if self.note:  # between the first and last frame's labels; whole in the tooltip
            room = QRectF(area.left() + 64, area.bottom() + 2, area.width() - 128, 18)
            painter.drawText(room, Qt.AlignHCenter, painter.fontMetrics().elidedText(self.note, Qt.ElideRight, int(room.width())))
        first, last = self.frames
        painter.drawText(QRectF(area.left(), area.bottom() + 2, 80, 18), Qt.AlignLeft, f"frame {first}")
        painter.drawText(QRectF(area.right() - 80, area.bottom() + 2, 80, 18), Qt.AlignRight, f"frame {last}")
        if self.drawn:
            self.draw_ticks(painter, area)
        for i, (label, (frames, _, values)) in enumerate(self.series.items()):
            painter.setPen(QPen(QColor(PALETTE[i % len(PALETTE)]), 1.5))
            painter.drawPath(self.line(frames, values))
            painter.drawText(QRectF(area.right() - 150, area.top() + 4 + 16 * i, 146, 16), Qt.AlignRight, label)
        if first <= self.frame <= last:
            self.draw_cursor(painter, area)

    def draw_ticks(self, painter: QPainter, area: QRectF) -> None:
        for value, text in ticks(*self.values):
            y = self.to_y(value)
            painter.drawLine(QPointF(area.left() - 4, y), QPointF(area.left(), y))
            painter.drawText(QRectF(0, y - 8, MARGIN["left"] - 6, 16), Qt.AlignRight | Qt.AlignVCenter, text)

    def line(self, frames, values) -> QPainterPath:
        path, drawing = QPainterPath(), False
        for frame, value in zip(frames, values):
            if not np.isfinite(value):  # no usable pixel (or no floor): a gap in the line
                drawing = False
                continue
            point = QPointF(self.to_x(frame), self.to_y(value))
            if drawing:
                path.lineTo(point)
            else:
                path.moveTo(point)
            drawing = True
        return path

    def draw_cursor(self, painter: QPainter, area: QRectF) -> None:
        """A crisp one-pixel line at the current frame, and a small triangle above it."""
        painter.setRenderHint(QPainter.Antialiasing, False)
        painter.setPen(QPen(CURSOR, 1))
        x = round(self.to_x(self.frame))
        painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        painter.setBrush(CURSOR)
        painter.drawPolygon(QPolygonF([QPointF(x - 4, area.top() - 6), QPointF(x + 4, area.top() - 6), QPointF(x, area.top())]))

    def mousePressEvent(self, event) -> None:
        if self.series and event.button() == Qt.LeftButton:
            self.seek.emit(self.frame_at(event.position().x()))


def floor_note(csv_path: Path, unit: str) -> str:
    """The floor's residual from the `depth_floor.json` beside a table, or why there is none."""
    name = csv_path.name.replace(REGIONS_CSV, FLOOR_JSON)
    try:
        floor, reason = read_floor_document(json.loads((csv_path.parent / name).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "no depth_floor.json: no floor"
    if floor is None:
        return f"no floor: {reason}"
    scale, shown = (1000.0, "mm") if unit == "m" else (1.0, unit)
    return f"floor residual rms {floor.rms * scale:.3g} {shown}, p90 {floor.p90 * scale:.3g} {shown}, {floor.inlier_share:.0%} inliers"


class RegionPanel(QDockWidget):
    """The two plots in a dock; hidden until a video's output folder has a `depth_regions.csv`."""

    def __init__(self, parent=None):
        super().__init__("Depth per region", parent)
        self.setObjectName("region_panel")
        self.plot = RegionPlot(parent=self)
        self.heights = RegionPlot(height_axis_title, parent=self)
        body = QWidget(self)
        layout = QHBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        layout.addWidget(self.heights)
        self.setWidget(body)
        self.seek = self.plot.seek
        self.heights.seek.connect(self.plot.seek)
        self.hide()

    def load(self, csv_path: Path, video: Path | None = None, size: tuple[int, int] = (0, 0)) -> bool:
        """Shows the table's series; False (panel hidden) when there is none or it cannot be
        read. With the video and its shown size (width, height), `describe` can name the
        shape under the mouse."""
        csv_path = Path(csv_path)
        try:
            series, unit = read_series(csv_path, "median", "height_median")
        except (OSError, ValueError, KeyError):
            series, unit = {}, units(metric=False)
        self.plot.set_series({label: (f, t, m) for label, (f, t, m, _) in series.items()}, unit)
        floor_unit = height_units(unit)
        self.heights.set_series({label: (f, t, h) for label, (f, t, _, h) in series.items()}, floor_unit,
                                floor_note(csv_path, floor_unit) if series else "")
        self.annotations = VideoAnnotations(video, *size) if series and video is not None else None
        self.shown: tuple[int, tuple | None] = (-1, None)  # the last frame's label map, kept for mouse moves
        self.setVisible(bool(series))
        return bool(series)

    def set_frame(self, frame: int) -> None:
        self.plot.set_frame(frame)
        self.heights.set_frame(frame)

    def describe(self, frame: int, x: int, y: int) -> str:
        """The tracked shape under pixel (x, y) of `frame`, its median and height in the table, or ""."""
        if self.annotations is None:
            return ""
        if self.shown[0] != frame:
            self.shown = (frame, self.annotations.labels(frame))
        found = self.shown[1]
        if found is None:
            return ""
        label_map, names = found
        label = names[label_map[y, x]]
        if not label:
            return ""
        frames, _, medians = self.plot.series.get(label, ((), (), ()))
        at = np.flatnonzero(np.asarray(frames) == frame)
        if not at.size or not np.isfinite(medians[at[0]]):
            return label
        unit = "m" if self.plot.unit == "m" else "(relative disparity)"
        text = f"{label}, median {medians[at[0]]:.4g} {unit}"
        height = self.heights.series[label][2][at[0]]
        if np.isfinite(height):
            text += f", height {height:.3g} {self.heights.unit}"
        return text
