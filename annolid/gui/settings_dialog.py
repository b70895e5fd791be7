"""View → Depth Settings…: every option of a depth run, saved to ~/.labelmerc."""
from __future__ import annotations

from dataclasses import fields

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from annolid.depth.settings import BACKENDS, DepthSettings, save_settings
from annolid.depth.weights import CHECKPOINTS, checkpoint_key, checkpoint_path

LABELS = {
    "encoder": "Encoder",
    "metric": "Metric depth (metres)",
    "input_size": "Input size",
    "max_res": "Max resolution",
    "target_fps": "Target FPS",
    "max_frames": "Max frames",
    "streaming": "Streaming mode (recommended)",
    "fp32": "Force FP32",
    "precision": "Precision",
    "grayscale": "Grayscale (instead of inferno)",
    "save_depth_video": "Save depth video",
    "save_depth_frames": "Save depth frames",
    "save_point_clouds": "Save point clouds",
    "point_cloud_format": "Point cloud format",
    "save_npz": "Save NPZ",
    "save_exr": "Save EXR",
    "include_region_labels": "Region labels in point clouds",
    "output_dir": "Output folder",
    "focal_length_x": "Focal length x (px)",
    "focal_length_y": "Focal length y (px)",
    "checkpoint_root": "Checkpoint folder",
    "device": "Device",
    "backend": "Backend",
}
TIPS = {
    "input_size": "network input for the short side; a multiple of 14 (518 is the trained size)",
    "max_res": "downscale frames so the longer side is at most this (-1: never)",
    "target_fps": "frames per second of video to process (-1: every frame)",
    "max_frames": "stop after this many processed frames (-1: all)",
    "output_dir": "empty: next to the video, in a folder named after it; set: <folder>/<video name>",
    "checkpoint_root": "empty: the default checkpoint folder",
    "device": "empty: cuda, then mps, then cpu",
    "backend": "torch, or on a CPU a compiled runtime (exported on first use, then cached); auto: the fastest installed",
    "precision": "automatic: FP32 on a CPU, FP16 on a GPU. bf16 runs about twice as fast on CPUs with "
    "AVX512-BF16 or AMX, with depth about 1 % of its range off",
}
PRECISION_CHOICES = [("automatic", ""), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16 (GPU)", "fp16")]


class SettingsDialog(QDialog):
    """Edits a `DepthSettings`; OK validates, then saves (errors stay in the dialog)."""

    def __init__(self, settings: DepthSettings, config_path=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Depth Settings")
        self.config_path = config_path
        self.settings = settings
        self.widgets: dict[str, QWidget] = {}
        form = QFormLayout()
        for field in fields(DepthSettings):
            widget = self._editor(field.name, getattr(settings, field.name))
            widget.setToolTip(TIPS.get(field.name, ""))
            self.widgets[field.name] = widget
            row = widget
            if field.name in ("output_dir", "checkpoint_root"):
                row = self._with_browse(widget)
            form.addRow(LABELS[field.name], row)
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.widgets["metric"].toggled.connect(self._refresh_encoders)

    def _editor(self, name: str, value) -> QWidget:
        if name == "encoder":
            box = QComboBox()
            for encoder in ("vits", "vitb", "vitl"):
                box.addItem(encoder, encoder)
            box.setCurrentIndex(box.findData(value))
            self._encoder_box = box
            self._refresh_encoders(self.settings.metric)
            return box
        if name == "precision":
            box = QComboBox()
            for text, data in PRECISION_CHOICES:
                box.addItem(text, data)
            box.setCurrentIndex(max(0, box.findData(value)))
            return box
        if name in ("point_cloud_format", "backend"):
            box = QComboBox()
            box.addItems(list(BACKENDS) if name == "backend" else ["csv", "ply"])
            box.setCurrentText(value)
            return box
        if isinstance(value, bool):
            box = QCheckBox()
            box.setChecked(value)
            return box
        if isinstance(value, int) and name != "target_fps":
            box = QSpinBox()
            box.setRange(-1, 100000)
            box.setValue(value)
            return box
        if isinstance(value, (int, float)):
            box = QDoubleSpinBox()
            box.setRange(-1, 100000)
            box.setDecimals(2 if name == "target_fps" else 1)
            box.setValue(float(value))
            return box
        return QLineEdit(str(value))

    def _with_browse(self, line: QLineEdit) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: line.setText(QFileDialog.getExistingDirectory(self, "Choose a folder", line.text()) or line.text()))
        layout.addWidget(line)
        layout.addWidget(browse)
        return row

    def _refresh_encoders(self, metric: bool) -> None:
        """Encoder names carry the download size and whether the weights are present."""
        root = self.settings.checkpoint_root or None
        for i, encoder in enumerate(("vits", "vitb", "vitl")):
            checkpoint = CHECKPOINTS[checkpoint_key(encoder, bool(metric))]
            present = checkpoint_path(checkpoint.key, root).exists()
            state = "downloaded" if present else "not downloaded"
            self._encoder_box.setItemText(i, f"{encoder} ({checkpoint.size_mb:.0f} MB, {state})")

    def values(self) -> DepthSettings:
        """The settings as edited (not yet validated)."""
        values = {}
        for name, widget in self.widgets.items():
            if isinstance(widget, QComboBox):
                values[name] = widget.currentData() if name in ("encoder", "precision") else widget.currentText()
            elif isinstance(widget, QCheckBox):
                values[name] = widget.isChecked()
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                values[name] = widget.value()
            else:
                values[name] = widget.text().strip()
        return DepthSettings(**values)

    def accept(self) -> None:
        settings = self.values()
        try:
            settings.validate()
            save_settings(settings, self.config_path)
        except (ValueError, OSError) as exc:
            self.error.setText(str(exc))
            return
        self.settings = settings
        super().accept()
