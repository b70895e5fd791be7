"""View → Video Depth Anything…: the runner in a worker thread, with progress, preview and Cancel."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import QDialog, QLabel, QProgressBar, QPushButton, QVBoxLayout

from ..errors import DepthError
from ..progress import Rate, cost, stage_text
from ..settings import DepthSettings, default_output_dir
from ..weights import download_checkpoint
from .images import depth_image, to_pixmap

PREVIEW_INTERVAL_S = 0.25  # the preview redraws at most this often


class Job(QObject):
    """Work for a QThread: a depth run, or a weights download. Results come back as signals."""

    progress = Signal(object)  # the runner's per-frame payload without its images
    stage = Signal(object)  # the runner's stage payload (the model's load)
    preview = Signal(object)  # depth frame (float32 array)
    finished = Signal(dict)
    failed = Signal(str)

    def __init__(self, work):
        super().__init__()
        self.work = work
        self.cancel = threading.Event()

    def run(self) -> None:
        try:
            self.finished.emit(self.work(self))
        except (DepthError, ValueError, OSError) as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # an unexpected failure still reaches the user, not a dead thread
            self.failed.emit(f"{type(exc).__name__}: {exc}")


def depth_job(video: Path, settings: DepthSettings, resume: bool = False) -> Job:
    from .. import run_video_depth_anything  # torch loads with the first run, not at start-up

    def work(job: Job) -> dict:
        last_preview = [0.0]

        def on_frame(payload: dict) -> None:
            job.progress.emit(counts(payload))
            now = time.monotonic()
            if now - last_preview[0] >= PREVIEW_INTERVAL_S:
                last_preview[0] = now
                job.preview.emit(payload["depth"])

        return run_video_depth_anything(
            video,
            default_output_dir(video, settings.output_dir),
            **settings.arguments(),
            frame_callback=on_frame,
            stage_callback=job.stage.emit,
            stop_event=job.cancel,
            resume=resume,
        )

    return Job(work)


def counts(payload: dict) -> dict:
    """A per-frame payload without its arrays, to cross to the GUI's thread."""
    return {key: value for key, value in payload.items() if not isinstance(value, np.ndarray)}


def download_job(key: str, root: str | None) -> Job:
    return Job(lambda job: {"path": str(download_checkpoint(key, root))})


class RunDialog(QDialog):
    """Runs a job; shows frames done, frames per second, ETA and the latest depth frame."""

    def __init__(self, job: Job, title: str, parent=None, failure_title: str = "Depth run failed"):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.failure_title = failure_title  # what the message of a failure is called
        self.job, self.result, self.error = job, None, None
        self.rate = Rate()
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.status = QLabel("Starting…")
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignCenter)
        self.preview.setMinimumSize(320, 180)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        layout = QVBoxLayout(self)
        for widget in (self.preview, self.bar, self.status, self.cancel_button):
            layout.addWidget(widget)

        self.thread = QThread(self)
        job.moveToThread(self.thread)
        self.thread.started.connect(job.run)
        job.progress.connect(self.on_progress)
        job.stage.connect(self.on_stage)
        job.preview.connect(self.on_preview)
        job.finished.connect(self.on_finished)
        job.failed.connect(self.on_failed)
        for ended in (job.finished, job.failed):  # in the worker's thread: quits even while the GUI waits on it
            ended.connect(self.thread.quit, Qt.DirectConnection)
        self.thread.start()

    def on_stage(self, payload: dict) -> None:
        """The model loads: say so, and on a CPU what the run costs and what makes it faster."""
        if payload["stage"] == "loading":
            line, text = cost(payload), stage_text(payload)
            self.status.setText("\n".join(part[0].upper() + part[1:] for part in (text, line) if part))

    def on_progress(self, payload: dict) -> None:
        """Frames done, with frames/s and the time left from this run's frames after the first
        group (a resumed run's earlier frames and the model's warm-up are not counted)."""
        self.rate.update(payload)
        done, total = payload["frames_done"], payload["frames_total"]
        if total:
            self.bar.setRange(0, max(total, done))
            self.bar.setValue(done)
            self.status.setText(f"{done} / {total} frames, {self.rate.text()}")
        else:
            self.status.setText(f"{done} frames, {self.rate.text()}")

    def on_preview(self, depth: np.ndarray) -> None:
        pixmap = to_pixmap(depth_image(depth))
        self.preview.setPixmap(pixmap.scaled(self.preview.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def cancel(self) -> None:
        """Stops the run at the next frame; what was written stays valid."""
        self.job.cancel.set()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling… (finishing the frames already computed)")

    def on_finished(self, result: dict) -> None:
        self.result = result
        self._stop()
        self.accept()

    def on_failed(self, message: str) -> None:
        self.error = message
        self._stop()
        self.reject()

    def _stop(self) -> None:
        self.thread.quit()
        self.thread.wait()

    def reject(self) -> None:
        if self.thread.isRunning():  # Escape or the close button: cancel, then close when done
            self.cancel()
            return
        super().reject()


