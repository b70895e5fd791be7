"""File → Process Folder…: every video of a folder with the current settings, one after another.

The batch runs `annolid_depth.batch.run_many` in a worker thread (on this machine; clusters
are for the command line and Python), with a row per video, the current video's progress
and Cancel, which stops the current video where it is (it can be resumed) and the rest.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..batch import plan, run_many
from ..io.run_folder import Status
from ..progress import format_seconds
from ..settings import DepthSettings
from .messages import ask_to_download, message_box, missing_weights
from .run_dialog import Job, RunDialog, counts, download_job

COLUMNS = ("Video", "Status", "Frames", "Output folder or error")


class BatchJob(Job):
    """A batch for a QThread; reports which video runs and each video's record as it ends."""

    video_started = Signal(str)  # the video's path
    video_ended = Signal(dict)  # its record


def batch_job(folder: Path, settings: DepthSettings, resume: bool) -> BatchJob:
    def work(job: BatchJob) -> dict:
        def progress(number, video, payload):
            if payload is None:
                job.video_started.emit(str(video))
            elif "stage" not in payload:
                job.progress.emit(counts(payload))

        records = run_many(
            [folder], output_dir=settings.output_dir, resume=resume, progress=progress,
            should_cancel=job.cancel.is_set, on_record=job.video_ended.emit, **settings.arguments(),
        )
        return {"records": records}

    return BatchJob(work)


class BatchDialog(QDialog):
    """The folder's videos in a table; Start runs them, Cancel stops the batch."""

    def __init__(self, folder: str | Path, settings: DepthSettings, parent=None):
        super().__init__(parent)
        self.folder, self.settings = Path(folder), settings
        self.job: BatchJob | None = None
        self.records: list[dict] | None = None
        self.error: str | None = None
        self.last_message = self.download = None
        self.setWindowTitle(f"Process folder {self.folder.name}")
        self.jobs = plan([self.folder], settings.output_dir)
        self.rows = {str(job.video): row for row, job in enumerate(self.jobs)}  # the batch reports by path
        self.table = QTableWidget(len(self.jobs), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self.show_details)
        for row, job in enumerate(self.jobs):
            name = str(job.video.relative_to(self.folder)) if job.video != self.folder else str(job.video)
            status = Status.FAILED if job.error else "queued"
            self._set_row(row, name, status, "", job.error or str(job.output_dir))
        self.details = QPlainTextEdit()  # the whole error of the selected video
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(110)
        self.details.setVisible(False)
        self.resume_box = QCheckBox("Skip videos already done with these settings; continue unfinished ones")
        self.resume_box.setChecked(True)
        self.bar = QProgressBar()
        self.status = QLabel(f"{len(self.jobs)} videos" if not self.jobs[0].error else self.jobs[0].error)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.start_button.setEnabled(not self.jobs[0].error)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        for widget in (self.table, self.details, self.resume_box, self.bar, self.status):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        self.resize(760, 360)

    def _set_row(self, row: int, *cells: str) -> None:
        """A row's cells; a long or multi-line text shows its first line, and whole in its
        tooltip and, once the row is selected, below the table."""
        for column, text in enumerate(cells):
            if text is not None:
                lines = text.strip().splitlines() or [""]
                item = QTableWidgetItem(lines[0] + (" …" if len(lines) > 1 else ""))
                item.setToolTip(text)
                item.setData(Qt.UserRole, text)
                self.table.setItem(row, column, item)

    def error_of(self, row: int) -> str | None:
        status, where = self.table.item(row, 1), self.table.item(row, 3)
        return where.data(Qt.UserRole) if status is not None and where is not None and status.text() == Status.FAILED else None

    def show_details(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        error = self.error_of(rows[0]) if rows else None
        self.details.setVisible(error is not None)
        self.details.setPlainText(error or "")

    def start(self) -> None:
        """Runs the batch; weights that are not on disk yet are offered for download first, as
        for a single video."""
        missing = missing_weights(self.settings)
        if missing is not None:
            self.last_message = ask_to_download(self, *missing, lambda: self._download_then_start(missing[0]))
            return
        self.start_button.setEnabled(False)
        self.resume_box.setEnabled(False)
        self.job = batch_job(self.folder, self.settings, self.resume_box.isChecked())
        self.thread = QThread(self)
        self.job.moveToThread(self.thread)
        self.thread.started.connect(self.job.run)
        self.job.video_started.connect(self.on_started)
        self.job.progress.connect(self.on_progress)
        self.job.video_ended.connect(self.on_ended)
        self.job.finished.connect(self.on_finished)
        self.job.failed.connect(self.on_failed)
        for ended in (self.job.finished, self.job.failed):  # the thread ends with the job, even while the
            ended.connect(self.thread.quit, Qt.DirectConnection)  # window waits for it on closing
        self.thread.start()

    def _download_then_start(self, key: str) -> None:
        self.download = RunDialog(download_job(key, self.settings.checkpoint_root or None), f"Downloading {key}", self,
                                  failure_title="Download failed")
        self.download.cancel_button.setEnabled(False)  # a download cannot be stopped halfway safely
        self.download.finished.connect(self._downloaded)
        self.download.open()

    def _downloaded(self) -> None:
        if self.download.error is not None:
            self.status.setText("The weights could not be downloaded (the message says why)")
            self.last_message = message_box(self, self.download.failure_title, self.download.error)
        else:
            self.start()

    def on_started(self, path: str) -> None:
        self.bar.setRange(0, 0)
        row = self.rows.get(path)  # None: a video added to the folder since it was listed
        if row is not None:
            self._set_row(row, None, Status.RUNNING)
        where = f"video {row + 1} of {len(self.jobs)}" if row is not None else "a video found since"
        self.status.setText(f"Running {where}: {Path(path).name}")

    def on_progress(self, payload: dict) -> None:
        done, total = payload["frames_done"], payload["frames_total"]
        if total:
            self.bar.setRange(0, max(total, done))
            self.bar.setValue(done)

    def on_ended(self, entry: dict) -> None:
        if entry["path"] in self.rows:
            frames = "" if entry["frames"] is None else str(entry["frames"])
            where = entry["error"] if entry["status"] == Status.FAILED else entry["output_dir"]
            self._set_row(self.rows[entry["path"]], None, entry["status"], frames, where)

    def on_finished(self, result: dict) -> None:
        self.records = result["records"]
        for entry in self.records:
            if entry["status"] not in (Status.COMPLETE, Status.SKIPPED, Status.FAILED) and entry["path"] in self.rows:
                self._set_row(self.rows[entry["path"]], None, entry["status"])
        self._stop()
        done = sum(entry["status"] in (Status.COMPLETE, Status.SKIPPED) for entry in self.records)
        failed = sum(entry["status"] == Status.FAILED for entry in self.records)
        seconds = sum(entry["seconds"] or 0 for entry in self.records)
        self.status.setText(f"{done} done, {failed} failed, {len(self.records) - done - failed} not finished "
                            f"in {format_seconds(seconds)}" + ("; select a failed video for its whole error" if failed else ""))
        self.bar.setRange(0, max(len(self.records), 1))  # the share of videos done, not 100 % whatever happened
        self.bar.setValue(done)
        self.bar.setFormat("%v of %m videos done")
        first_failed = next((row for row in range(self.table.rowCount()) if self.error_of(row) is not None), None)
        if first_failed is not None:
            self.table.selectRow(first_failed)

    def on_failed(self, message: str) -> None:
        self.error = message
        self._stop()
        self.status.setText(f"The batch stopped: {message}")

    def _stop(self) -> None:
        self.thread.quit()
        self.thread.wait()
        self.bar.setRange(0, 1)  # no longer busy; on_finished shows the share of videos done
        self.bar.setValue(0)
        self.cancel_button.setText("Close")
        self.cancel_button.setEnabled(True)

    def running(self) -> bool:
        return self.job is not None and self.thread.isRunning()

    def reject(self) -> None:
        """Cancel while running (the current video stops at its next frame), close otherwise."""
        if self.running():
            self.job.cancel.set()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling… (the current video stops at its next frame)")
            return
        super().reject()
