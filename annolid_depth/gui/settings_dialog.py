"""View → Depth Settings…: every option of a depth run, saved to ~/.labelmerc.

The form is generated from the options' declarations (`annolid_depth.settings.OPTIONS`):
their labels, help texts, choices and groups, so it never drifts from the CLI or the API.
"""
from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..settings import FIELDS, GROUPS, OPTIONS, DepthSettings, save_settings
from ..weights import CHECKPOINTS, checkpoint_dir, checkpoint_key, checkpoint_path

FOLDERS = ("output_dir", "checkpoint_root")  # text fields with a Browse… button


def empty_means(name: str) -> str | None:
    """What an empty text field stands for, shown in it while it is empty."""
    if name == "output_dir":
        return "empty: beside each video, in a folder named after it"
    if name == "checkpoint_root":
        return f"empty: {checkpoint_dir()}"
    if name == "device":
        return "empty: the best there is (cuda, then mps, else cpu)"
    return None
NUMBER_LIMIT = 100000


class SettingsDialog(QDialog):
    """Edits a `DepthSettings`; OK validates, then saves (errors stay in the dialog)."""

    def __init__(self, settings: DepthSettings, config_path=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Depth Settings")
        self.config_path = config_path
        self.settings = settings
        self.widgets: dict[str, QWidget] = {}
        forms = {group: QFormLayout() for group in GROUPS}
        for name, option in OPTIONS.items():
            widget = self._editor(name, getattr(settings, name))
            widget.setToolTip(option.help if empty_means(name) is None else f"{option.help}\n{empty_means(name)}")
            self.widgets[name] = widget
            forms[option.group].addRow(option.label, self._with_browse(widget) if name in FOLDERS else widget)
        columns = QHBoxLayout()
        halves = (GROUPS[:2], GROUPS[2:])  # model + sampling | outputs, camera, advanced
        for half in halves:
            column = QVBoxLayout()
            for group in half:
                box = QGroupBox(group.capitalize())
                box.setLayout(forms[group])
                column.addWidget(box)
            column.addStretch()
            columns.addLayout(column)
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(columns)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.widgets["metric"].toggled.connect(self._refresh_encoders)
        self._refresh_encoders(settings.metric)

    def _editor(self, name: str, value) -> QWidget:
        option, kind = OPTIONS[name], FIELDS[name]
        if option.choices:
            box = QComboBox()
            for data, text in option.choices:
                box.addItem(text or data, data)
            box.setCurrentIndex(max(0, box.findData(value)))
            return box
        if kind is bool:
            box = QCheckBox()
            box.setChecked(value)
            return box
        if kind in (int, float):
            box = QSpinBox() if kind is int else QDoubleSpinBox()
            low = -1 if option.off else option.minimum or 0
            box.setRange(low, NUMBER_LIMIT if option.maximum is None else option.maximum)
            if kind is float:
                box.setDecimals(option.decimals)
            if option.off:
                box.setSpecialValueText(f"{option.off} (-1)")  # the lowest value reads as what it means
            box.setValue(value if value > 0 or not option.off else -1)
            return box
        line = QLineEdit(str(value))
        if (placeholder := empty_means(name)) is not None:
            line.setPlaceholderText(placeholder)
            line.setMinimumWidth(260)  # wide enough to read what empty means
        return line

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
        box = self.widgets["encoder"]
        for i in range(box.count()):
            checkpoint = CHECKPOINTS[checkpoint_key(box.itemData(i), bool(metric))]
            state = "downloaded" if checkpoint_path(checkpoint.key, root).exists() else "not downloaded"
            box.setItemText(i, f"{box.itemData(i)} ({checkpoint.size_mb:.0f} MB, {state})")

    def values(self) -> DepthSettings:
        """The settings as edited (not yet validated)."""
        values = {}
        for name, widget in self.widgets.items():
            if isinstance(widget, QComboBox):
                values[name] = widget.currentData()
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
