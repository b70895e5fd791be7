"""Message boxes that keep the package's messages readable, and the question every run asks
when its weights are missing (a single run and a folder alike)."""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from ..settings import DepthSettings
from ..weights import checkpoint_key, checkpoint_path

WHOLE = "white-space:pre; margin:0 0 0 16px"  # an indented line: one line, never wrapped
WRAPPED = "margin:0"


def rich(text: str) -> str:
    """A message as rich text: its indented lines (a URL, a folder, a command to copy) kept
    whole on their own lines, never wrapped in the middle; the rest wraps between words."""
    return "".join(
        f'<p style="{WHOLE}">{html.escape(line.strip())}</p>' if line.startswith("  ") else f'<p style="{WRAPPED}">{html.escape(line)}</p>'
        for line in text.splitlines()
    )


def message_box(parent, title: str, text: str, icon=QMessageBox.Warning, buttons=QMessageBox.Ok) -> QMessageBox:
    """A non-blocking message box (the window keeps working behind it), its text selectable."""
    box = QMessageBox(icon, title, "", buttons, parent)
    whole_lines = any(line.startswith("  ") for line in text.splitlines())
    box.setTextFormat(Qt.RichText if whole_lines else Qt.PlainText)  # plain text where nothing must stay whole
    box.setText(rich(text) if whole_lines else text)
    box.setTextInteractionFlags(Qt.TextSelectableByMouse)
    box.open()
    return box


def missing_weights(settings: DepthSettings) -> tuple[str, Path] | None:
    """The checkpoint a run with these settings needs, when it is not on disk: key and path."""
    key = checkpoint_key(settings.encoder, settings.metric)
    path = checkpoint_path(key, settings.checkpoint_root or None)
    return None if path.exists() else (key, path)


def ask_to_download(parent, key: str, path: Path, download) -> QMessageBox:
    """"Weights missing": names the file and the folder it was looked for in; Yes calls
    `download()`."""
    box = message_box(parent, "Weights missing",
                      f"The {key} weights are not downloaded yet: {path.name} is not in the folder\n  {path.parent}\n"
                      "Download them there now?", QMessageBox.Question, QMessageBox.Yes | QMessageBox.No)
    box.buttonClicked.connect(lambda button: box.standardButton(button) == QMessageBox.Yes and download())
    return box
