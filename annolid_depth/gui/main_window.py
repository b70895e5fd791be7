"""The main window: a video with its depth, scrubbed together, and the depth menus."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..batch import VIDEO_EXTENSIONS
from ..errors import DepthError
from ..io.files import partial
from ..io.records import RecordIndex
from ..io.regions import units
from ..io.run_folder import Status, depth_of, shown_outputs, unfinished_run
from ..io.sinks import REGIONS_CSV
from ..io.source import FrameReader, ordinal
from ..settings import DepthSettings, default_output_dir, load_settings
from .batch_dialog import BatchDialog
from .images import blend, colour_ramp, depth_image, to_pixmap
from .messages import ask_to_download, message_box, missing_weights
from .region_panel import RegionPanel
from .run_dialog import RunDialog, depth_job, download_job
from .settings_dialog import SettingsDialog

VIDEO_FILTER = f"Videos ({' '.join('*' + ext for ext in VIDEO_EXTENSIONS)});;All files (*)"
DISPLAY_MAX_RES = 1280  # frames are shown at most this large, as depth runs by default


class ImageView(QWidget):
    """An image scaled to fit, reporting the image pixel under the mouse."""

    hovered = Signal(int, int)  # x, y in image pixels; -1, -1 when off the image

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pixmap: QPixmap | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(320, 180)

    def set_image(self, rgb: np.ndarray | None) -> None:
        self.pixmap = None if rgb is None else to_pixmap(rgb)
        self.update()

    def target(self) -> QRect:
        size = self.pixmap.size().scaled(self.size(), Qt.KeepAspectRatio)
        return QRect(QPoint((self.width() - size.width()) // 2, (self.height() - size.height()) // 2), size)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.black)
        if self.pixmap is not None:
            painter.drawPixmap(self.target(), self.pixmap)

    def mouseMoveEvent(self, event) -> None:
        if self.pixmap is None:
            return
        rect, pos = self.target(), event.position()
        x = int((pos.x() - rect.x()) * self.pixmap.width() / max(rect.width(), 1))
        y = int((pos.y() - rect.y()) * self.pixmap.height() / max(rect.height(), 1))
        inside = 0 <= x < self.pixmap.width() and 0 <= y < self.pixmap.height()
        self.hovered.emit(x if inside else -1, y if inside else -1)


class ColourBar(QWidget):
    """The depth view's colour scale, nearest at the top, its ends labelled in the run's
    unit (metres, or relative disparity, which has none)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedWidth(84)
        self.ramp: QPixmap | None = None
        self.texts = ("", "", "")

    def set_range(self, low: float, high: float, metric: bool) -> None:
        ramp, near, far = colour_ramp(low, high, metric)
        self.ramp = to_pixmap(ramp)
        self.texts = (f"{near:.3g} near", f"{far:.3g} far", units(metric))
        self.update()

    def bar(self) -> QRect:
        return QRect(6, 20, 18, max(self.height() - 40, 1))

    def paintEvent(self, event) -> None:
        if self.ramp is None:
            return
        painter = QPainter(self)
        bar = self.bar()
        painter.drawPixmap(bar, self.ramp)
        near, far, unit = self.texts
        painter.drawText(QRect(0, 0, self.width(), 18), Qt.AlignLeft | Qt.AlignVCenter, unit)
        painter.drawText(QRect(bar.right() + 4, bar.top(), 60, 16), Qt.AlignLeft | Qt.AlignTop, near)
        painter.drawText(QRect(bar.right() + 4, bar.bottom() - 15, 60, 16), Qt.AlignLeft | Qt.AlignBottom, far)


def describe_run(record: dict | None, depth: RecordIndex | None, resumable: bool = True) -> str:
    """A run's state in words: "depth for 70 frames", "cancelled at 37 of 70 frames"; an
    unfinished run in the video's output folder (`resumable`) adds how to resume it."""
    if record is None:
        return f"depth for {len(depth)} frames" if depth else ""
    done, expected = record.get("frames_done", 0), record.get("frames_expected")
    of = f" of {expected}" if expected else ""
    if record.get("status") == Status.COMPLETE:
        return f"depth for {done} frames"
    state = {Status.CANCELLED: "cancelled", Status.FAILED: "failed"}.get(record.get("status"), "stopped")
    hint = " (View → Video Depth Anything… resumes it)" if resumable else ""
    return f"depth run {state} at {done}{of} frames{hint}"


class MainWindow(QMainWindow):
    def __init__(self, config_path: str | Path | None = None):
        super().__init__()
        self.setWindowTitle("Annolid Depth")
        self.setAcceptDrops(True)
        self.config_path = config_path
        self.reader: FrameReader | None = None
        self.video: Path | None = None
        self.depth: RecordIndex | None = None
        self.frame = self.depth_map = None
        self.last_message: QMessageBox | None = None
        self.run_dialog: RunDialog | None = None
        self.batch_dialog: BatchDialog | None = None
        self.run_record: dict | None = None
        self.run_state = ""
        self.depth_folder: Path | None = None  # chosen with Open Depth Folder; None: the video's output folder

        self.video_view, self.depth_view = ImageView(), ImageView()
        for view in (self.video_view, self.depth_view):
            view.hovered.connect(self.show_depth_at)
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.toggle_play)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(self.show_frame)
        self.position = QLabel("No video")
        self.blend_box = QCheckBox("Blend depth over video")
        self.blend_box.toggled.connect(self.redraw)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setMaximumWidth(160)
        self.opacity.valueChanged.connect(self.redraw)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.next_frame)

        views = QHBoxLayout()
        views.addWidget(self.video_view, 1)
        views.addWidget(self.depth_view, 1)
        self.colour_bar = ColourBar()
        views.addWidget(self.colour_bar)
        controls = QHBoxLayout()
        for widget in (self.play_button, self.slider, self.position):
            controls.addWidget(widget)
        depth_controls = QHBoxLayout()
        for widget in (self.blend_box, QLabel("Opacity"), self.opacity):
            depth_controls.addWidget(widget)
        depth_controls.addStretch()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(views, 1)
        layout.addLayout(controls)
        layout.addLayout(depth_controls)
        self.setCentralWidget(central)
        self.region_panel = RegionPanel(self)
        self.region_panel.seek.connect(self.slider.setValue)
        self.addDockWidget(Qt.BottomDockWidgetArea, self.region_panel)
        self._menus()
        self.statusBar().showMessage("Open a video (File → Open Video…) or drop one here")
        self.resize(1100, 520)
        self._update_depth_controls()

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction("Open Video…", self, shortcut=QKeySequence.Open, triggered=self.choose_video)
        file_menu.addAction(self.open_action)
        self.depth_folder_action = QAction("Open Depth Folder…", self, triggered=self.choose_depth_folder, enabled=False)
        file_menu.addAction(self.depth_folder_action)
        self.folder_action = QAction("Process Folder…", self, triggered=self.choose_folder)
        file_menu.addAction(self.folder_action)
        file_menu.addAction(QAction("Quit", self, shortcut=QKeySequence.Quit, triggered=self.close))
        view_menu = self.menuBar().addMenu("&View")
        self.settings_action = QAction("Depth Settings…", self, triggered=self.edit_settings)
        self.run_action = QAction("Video Depth Anything…", self, triggered=self.run_depth)
        view_menu.addAction(self.settings_action)
        view_menu.addAction(self.run_action)
        view_menu.addAction(self.region_panel.toggleViewAction())

    # ------------------------------------------------------------------ messages

    def message(self, text: str, title: str = "Annolid Depth", icon=QMessageBox.Warning) -> QMessageBox:
        """A non-blocking message box; the window keeps working behind it."""
        self.last_message = message_box(self, title, text, icon)
        return self.last_message

    def settings(self) -> DepthSettings:
        try:
            return load_settings(self.config_path)
        except ValueError as exc:
            self.message(f"{exc}\nUsing the default settings.")
            return DepthSettings()

    # ------------------------------------------------------------------ video

    def choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open Video", "", VIDEO_FILTER)
        if path:
            self.open_video(path)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Process Folder")
        if folder:
            self.process_folder(folder)

    def choose_depth_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open Depth Folder", str(self.output_folder().parent))
        if folder:
            self.open_depth_folder(folder)

    def open_depth_folder(self, folder: str | Path) -> bool:
        """Shows the depth in `folder` (a run's output written elsewhere) for the open video,
        after checking that it is depth of this video."""
        if self.video is None:
            self.message("Open a video first (File → Open Video…), then the folder with its depth.", "No video")
            return False
        try:
            depth_of(Path(folder), self.video)
        except (OSError, ValueError) as exc:
            self.message(str(exc), "No depth for this video")
            return False
        self.depth_folder = Path(folder)
        self.load_depth()
        self.show_frame(self.slider.value())
        self.statusBar().showMessage(f"{self.video.name}: {self.run_state} from {self.depth_folder}")
        return True

    def process_folder(self, folder: str | Path) -> BatchDialog:
        """Depth for every video in `folder` with the current settings."""
        self.batch_dialog = BatchDialog(folder, self.settings(), self)
        self.batch_dialog.finished.connect(self.load_depth)  # the open video may be one of the folder's
        self.batch_dialog.finished.connect(lambda: self.show_frame(self.slider.value()))
        self.batch_dialog.open()
        return self.batch_dialog

    def open_video(self, path: str | Path) -> bool:
        try:
            reader = FrameReader(path, max_res=DISPLAY_MAX_RES)
        except (DepthError, ValueError) as exc:
            self.message(str(exc), "Cannot open video")
            return False
        if self.reader is not None:
            self.reader.close()
        self.timer.stop()
        self.reader, self.video, self.depth_folder = reader, Path(path), None
        self.depth_folder_action.setEnabled(True)
        self.setWindowTitle(f"{self.video.name} - Annolid Depth")
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(reader.frame_count - 1, 0))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.load_depth()
        self.show_frame(0)
        found = self.run_state or "no depth yet (View → Video Depth Anything…)"
        self.statusBar().showMessage(f"{self.video.name}: {reader.frame_count} frames at {reader.fps:.2f} fps; {found}")
        return True

    def load_depth(self) -> None:
        """Shows the depth of the run in this video's output folder (or the folder opened with
        Open Depth Folder), if it has one, and says what that run is (complete, or stopped at
        N of M frames)."""
        self.depth, self.run_record, self.run_state = None, None, ""
        if self.video is not None:
            folder = self.depth_folder or self.output_folder()
            ndjson, self.run_record = shown_outputs(folder)
            if ndjson is not None:
                self.depth = RecordIndex(ndjson)
            self.run_state = describe_run(self.run_record, self.depth, resumable=self.depth_folder is None)
            table = folder / REGIONS_CSV  # the run's own, like its depth: partial while unfinished
            if ndjson is not None and ndjson.name.endswith(".partial"):
                table = partial(table)
            self.region_panel.load(table, self.video, (self.reader.width, self.reader.height))
        self._update_depth_controls()

    def output_folder(self) -> Path:
        return default_output_dir(self.video, self.settings().output_dir)

    def depth_shown_for(self, index: int) -> int | None:
        """The processed frame whose depth belongs to video frame `index`: itself, or the one
        before it when the run sampled every n-th frame and `index` lies in between."""
        shown = self.depth.nearest(index)
        return shown if shown is not None and index - shown < self.sampling_stride() else None

    def sampling_stride(self) -> int:
        """Every how many video frames the run processed one (1: every frame)."""
        processed_fps = ((self.run_record or {}).get("processed") or {}).get("fps")
        return max(round(self.reader.fps / processed_fps), 1) if processed_fps else 1

    def _update_depth_controls(self) -> None:
        has_depth = bool(self.depth)
        self.blend_box.setEnabled(has_depth)
        self.opacity.setEnabled(has_depth)
        self.depth_view.setVisible(has_depth and not self.blend_box.isChecked())
        self.colour_bar.setVisible(has_depth and self.depth_map is not None)  # no stale scale beside a frame without depth

    def show_frame(self, index: int) -> None:
        if self.reader is None:
            return
        try:
            self.frame = self.reader.read(index)
        except (IndexError, DepthError) as exc:
            self.statusBar().showMessage(f"Frame {index}: {exc}")
            return
        self.depth_map = None
        note = ""
        if self.depth:
            shown = self.depth_shown_for(index)
            self.depth_map = None if shown is None else self.depth.depth(shown)
            if shown is None:
                note = "   no depth for this frame"
            elif shown != index:
                note = f"   depth of frame {shown} (the run sampled every {ordinal(self.sampling_stride())} frame)"
        seconds = index / self.reader.fps if self.reader.fps else 0.0
        self.position.setText(f"Frame {index} / {max(self.reader.frame_count - 1, 0)}   {seconds:.2f} s{note}")
        self.region_panel.set_frame(index)
        self.redraw()

    def redraw(self) -> None:
        if self.frame is None:
            return
        self._update_depth_controls()
        size = (self.frame.shape[1], self.frame.shape[0])
        colour = None
        if self.depth_map is not None:
            metric = self.depth.metric
            colour = depth_image(self.depth_map, metric, size)
            self.colour_bar.set_range(float(self.depth_map.min()), float(self.depth_map.max()), metric)
        if colour is not None and self.blend_box.isChecked():
            self.video_view.set_image(blend(self.frame, colour, self.opacity.value() / 100))
        else:
            self.video_view.set_image(self.frame)
        self.depth_view.set_image(colour)

    def show_depth_at(self, x: int, y: int) -> None:
        """Status bar: the depth under the mouse, labelled with what the number means."""
        if x < 0 or self.frame is None:
            return
        if self.depth_map is None:
            if self.depth:
                self.statusBar().showMessage(f"x {x}, y {y}: no depth for this frame")
            return
        dy = min(int(y * self.depth_map.shape[0] / self.frame.shape[0]), self.depth_map.shape[0] - 1)
        dx = min(int(x * self.depth_map.shape[1] / self.frame.shape[1]), self.depth_map.shape[1] - 1)
        value = float(self.depth_map[dy, dx])
        label = f"{value:.3f} m" if self.depth.metric else f"{value:.4f} (relative disparity, larger = nearer)"
        shape = self.region_panel.describe(self.slider.value(), x, y)
        self.statusBar().showMessage(f"x {x}, y {y}: depth {label}" + (f"; {shape}" if shape else ""))

    def toggle_play(self) -> None:
        if self.reader is None:
            return
        if self.timer.isActive():
            self.timer.stop()
            self.play_button.setText("Play")
        else:
            self.timer.start(max(int(1000 / (self.reader.fps or 30)), 1))
            self.play_button.setText("Pause")

    def next_frame(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.toggle_play()
        else:
            self.slider.setValue(self.slider.value() + 1)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_video(urls[0].toLocalFile())

    # ------------------------------------------------------------------ depth

    def edit_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings(), self.config_path, self)
        dialog.accepted.connect(self.load_depth)
        dialog.accepted.connect(lambda: self.show_frame(self.slider.value()))
        dialog.open()
        return dialog

    def run_depth(self) -> None:
        if self.video is None:
            self.message("Open a video first (File → Open Video…).", "No video")
            return
        settings = self.settings()
        missing = missing_weights(settings)
        if missing is not None:
            key = missing[0]
            self.last_message = ask_to_download(self, *missing, lambda: self._download_then_run(key, settings))
            return
        pending = unfinished_run(self.output_folder(), self.video, settings.normalized().identity())
        if pending is None:
            self._start(RunDialog(depth_job(self.video, settings), f"Depth for {self.video.name}", self))
            return
        done = pending["resume_point"]["frames"]
        box = QMessageBox(QMessageBox.Question, "Unfinished run",
                          f"{self.output_folder()} holds an unfinished run of this video with these settings: "
                          f"{describe_run(pending, None, resumable=False)}.", QMessageBox.NoButton, self)
        resume_button = box.addButton(f"Resume at frame {done}", QMessageBox.AcceptRole)
        box.addButton("Start over", QMessageBox.DestructiveRole)
        box.addButton(QMessageBox.Cancel)
        box.buttonClicked.connect(lambda button: self._answer_resume(box, button, resume_button, settings))
        box.open()
        self.last_message = box

    def _answer_resume(self, box, button, resume_button, settings: DepthSettings) -> None:
        if box.buttonRole(button) == QMessageBox.RejectRole:
            return
        resume = button is resume_button
        self._start(RunDialog(depth_job(self.video, settings, resume=resume), f"Depth for {self.video.name}", self))

    def _download_then_run(self, key: str, settings: DepthSettings) -> None:
        dialog = RunDialog(download_job(key, settings.checkpoint_root or None), f"Downloading {key}", self,
                           failure_title="Download failed")
        dialog.cancel_button.setEnabled(False)  # a download cannot be stopped halfway safely
        self._start(dialog, then=self.run_depth)

    def _start(self, dialog: RunDialog, then=None) -> None:
        self.run_dialog = dialog
        self.run_action.setEnabled(False)
        dialog.finished.connect(lambda _: self._done(dialog, then))
        dialog.open()

    def _done(self, dialog: RunDialog, then) -> None:
        self.run_action.setEnabled(True)
        if dialog.error is not None:
            self.message(dialog.error, dialog.failure_title)
            return
        result = dialog.result or {}
        if "frames" in result:
            state = "cancelled after" if result.get("cancelled") else "done:"
            self.statusBar().showMessage(f"Depth {state} {result['frames']} frames → {result['output_dir'][0]}")
            self.depth_folder = None  # the run wrote into the video's output folder
            self.load_depth()
            self.show_frame(self.slider.value())
        if then is not None:
            then()

    def closeEvent(self, event) -> None:
        if self.run_dialog is not None and self.run_dialog.thread.isRunning():
            self.run_dialog.cancel()
            self.run_dialog.thread.wait()
        if self.batch_dialog is not None and self.batch_dialog.running():
            self.batch_dialog.reject()  # cancels; the current video stops at its next frame
            self.batch_dialog.thread.wait()
        if self.reader is not None:
            self.reader.close()
        super().closeEvent(event)
