"""A dockable plot of each tracked animal's median depth over the video (`depth_regions.csv`).

The current frame is marked and follows the scrubber; a click on the plot seeks there. The
panel also names the tracked shape under the mouse, with its median, for the status bar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QDockWidget, QWidget

from ..io.annotations import VideoAnnotations
from ..io.regions import median_axis_title, read_medians, units

# Tableau's ten colours: distinct, and readable on a dark background
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
CURSOR = QColor("#ffffff")
MARGIN = {"left": 56, "right": 12, "top": 22, "bottom": 22}


class RegionPlot(QWidget):
    """Median per label against the frame index, drawn with QPainter."""

    seek = Signal(int)  # the frame index clicked on

    def __init__(self, parent=None):
        super().__init__(parent)
        self.series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.unit = units(metric=False)
        self.frame = 0
        self.setMinimumSize(320, 140)

    def set_series(self, series: dict, unit: str) -> None:
        self.series, self.unit = series, unit
        frames = [f for f, _, _ in series.values() if len(f)]
        values = [m[np.isfinite(m)] for _, _, m in series.values()]
        values = np.concatenate(values) if values else np.empty(0)
        self.frames = (int(min(f.min() for f in frames)), int(max(f.max() for f in frames))) if frames else (0, 1)
        self.values = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        self.update()

    def set_frame(self, frame: int) -> None:
        self.frame = frame
        self.update()

    def area(self) -> QRectF:
        return QRectF(self.rect()).adjusted(MARGIN["left"], MARGIN["top"], -MARGIN["right"], -MARGIN["bottom"])

    def to_x(self, frame) -> float:
        first, last = self.frames
        area = self.area()
        return area.left() + (frame - first) / max(last - first, 1) * area.width()

    def to_y(self, value) -> float:
        low, high = self.values
        area = self.area()
        return area.bottom() - (value - low) / (high - low or 1.0) * area.height()

    def frame_at(self, x: float) -> int:
        """The frame under a horizontal position, clamped to the plotted range."""
        first, last = self.frames
        area = self.area()
        frame = round(first + (x - area.left()) / max(area.width(), 1.0) * (last - first))
        return int(min(max(frame, first), last))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor("#1e1e1e"))
        painter.setPen(QColor("#cccccc"))
        if not self.series:
            painter.drawText(self.rect(), Qt.AlignCenter, "No depth per region for this video (save_region_stats)")
            return
        area = self.area()
        painter.drawRect(area)
        low, high = self.values
        painter.drawText(QRectF(0, area.top() - 8, MARGIN["left"] - 4, 16), Qt.AlignRight | Qt.AlignVCenter, f"{high:.4g}")
        painter.drawText(QRectF(0, area.bottom() - 8, MARGIN["left"] - 4, 16), Qt.AlignRight | Qt.AlignVCenter, f"{low:.4g}")
        first, last = self.frames
        painter.drawText(QRectF(area.left(), area.bottom() + 2, 80, 18), Qt.AlignLeft, f"frame {first}")
        painter.drawText(QRectF(area.right() - 80, area.bottom() + 2, 80, 18), Qt.AlignRight, f"frame {last}")
        painter.drawText(QRectF(area.left(), 2, area.width(), 18), Qt.AlignLeft, median_axis_title(self.unit))
        for i, (label, (frames, _, medians)) in enumerate(self.series.items()):
            colour = QColor(PALETTE[i % len(PALETTE)])
            painter.setPen(QPen(colour, 1.5))
            path, drawing = QPainterPath(), False
            for frame, value in zip(frames, medians):
                if not np.isfinite(value):  # no usable pixel: a gap in the line
                    drawing = False
                    continue
                point = QPointF(self.to_x(frame), self.to_y(value))
                if drawing:
                    path.lineTo(point)
                else:
                    path.moveTo(point)
                drawing = True
            painter.drawPath(path)
            painter.drawText(QRectF(area.right() - 150, area.top() + 4 + 16 * i, 146, 16), Qt.AlignRight, label)
        if first <= self.frame <= last:
            painter.setRenderHint(QPainter.Antialiasing, False)  # a crisp one-pixel line
            painter.setPen(QPen(CURSOR, 1))
            x = round(self.to_x(self.frame))
            painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))

    def mousePressEvent(self, event) -> None:
        if self.series and event.button() == Qt.LeftButton:
            self.seek.emit(self.frame_at(event.position().x()))


class RegionPanel(QDockWidget):
    """The plot in a dock; hidden until a video's output folder has a `depth_regions.csv`."""

    def __init__(self, parent=None):
        super().__init__("Depth per region", parent)
        self.setObjectName("region_panel")
        self.plot = RegionPlot(self)
        self.setWidget(self.plot)
        self.seek = self.plot.seek
        self.hide()

    def load(self, csv_path: Path, video: Path | None = None, size: tuple[int, int] = (0, 0)) -> bool:
        """Shows the table's series; False (panel hidden) when there is none or it cannot be
        read. With the video and its shown size (width, height), `describe` can name the
        shape under the mouse."""
        try:
            series, unit = read_medians(csv_path)
        except (OSError, ValueError, KeyError):
            series, unit = {}, units(metric=False)
        self.plot.set_series(series, unit)
        self.annotations = VideoAnnotations(video, *size) if series and video is not None else None
        self.shown: tuple[int, tuple | None] = (-1, None)  # the last frame's label map, kept for mouse moves
        self.setVisible(bool(series))
        return bool(series)

    def describe(self, frame: int, x: int, y: int) -> str:
        """The tracked shape under pixel (x, y) of `frame` and its median in the table, or ""."""
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
        return f"{label}, median {medians[at[0]]:.4g} {unit}"
