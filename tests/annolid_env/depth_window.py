"""Run by .venv-annolid's Python: Annolid's own window runs its depth action on each video given,
through its DepthManager and FlexibleWorker, with Qt offscreen; prints what Annolid saw as one
JSON object on stdout (tests/test_beside_annolid.py reads it).

usage: depth_window.py VIDEO [--stop] [VIDEO [--stop] ...]
`--stop` presses the worker's Stop (FlexibleWorker.request_stop, its stop_event) at the first
progress report. Settings come from the window's config section
`video_depth_anything`, as Annolid's settings dialog writes it; the checkpoint folder from
ANNOLID_DEPTH_CHECKPOINTS, since Annolid's call passes none. The message box Annolid shows at
the end is read and closed as a user would.

One change to Annolid's flow, whatever the engine: DepthManager connects its end-of-run slot
(a functools.partial) to the worker after moving the worker to its thread, so PySide6 calls it in
that thread, where it waits on its own thread and opens a QMessageBox, which Qt allows only in
the GUI thread (offscreen it aborts the process, "pure virtual method called", within a few
runs). The worker here is Annolid's FlexibleWorker, handed back to the GUI thread before it
reports the end, so that slot runs where Qt needs it.
"""
import faulthandler
import json
import sys

import numpy as np
from qtpy import QtCore, QtWidgets

SETTINGS = {"input_size": 56, "max_res": 160, "save_depth_video": True, "save_depth_frames": True,
            "save_point_clouds": True, "save_npz": True}

faulthandler.dump_traceback_later(240, exit=True)  # a hang ends with the stacks, not at the caller's timeout
app = QtWidgets.QApplication([])
from annolid.gui.app import AnnolidWindow  # noqa: E402 - after the QApplication, as Annolid's main does
from annolid.gui.widgets import depth_manager  # noqa: E402


class FlexibleWorker(depth_manager.FlexibleWorker):
    def _emit_if_alive(self, signal, *args):
        if self.thread() is not app.thread():  # only run() ends through here: its result and finished signals
            self.moveToThread(app.thread())
        return super()._emit_if_alive(signal, *args)


depth_manager.FlexibleWorker = FlexibleWorker


class Recorder(QtCore.QObject):
    """Lives in the GUI thread: the worker's signals reach it queued, after Annolid's own slots."""

    def __init__(self, window, stop: bool):
        super().__init__()
        self.window = window
        self.manager = window.depth_manager
        self.worker = self.manager._video_depth_worker
        self.seen = {"percents": [], "previews": [], "result": None, "thread_done": False}
        self.worker.progress_signal.connect(self.progress)
        if stop:  # pressed in the worker's thread, as its first report is made: the run cannot outpace it
            self.worker.progress_signal.connect(lambda percent: self.worker.request_stop())
        self.worker.preview_signal.connect(self.preview)
        self.worker.finished_signal.connect(self.finished)
        self.manager._video_depth_worker_thread.finished.connect(self.thread_done)

    @QtCore.Slot(int)
    def progress(self, percent):
        self.seen["percents"].append(percent)

    @QtCore.Slot(object)
    def preview(self, payload):
        overlay, pixmap = payload["overlay"], self.window.canvas.pixmap
        self.seen["previews"].append({
            "frame_index": payload["frame_index"], "overlay_shape": list(overlay.shape), "overlay_dtype": str(overlay.dtype),
            "depth_stats": payload["depth_stats"], "canvas": [pixmap.width(), pixmap.height()],
            "window_frame": self.window.frame_number,
        })

    @QtCore.Slot(object)
    def finished(self, result):
        self.seen["result"] = result if isinstance(result, dict) else f"{type(result).__name__}: {result}"
        self.quit_when_done()

    @QtCore.Slot()
    def thread_done(self):
        self.seen["thread_done"] = True
        self.quit_when_done()

    def close_message_box(self):
        """Where Annolid's closing message box waits for a click (offscreen it need not)."""
        box = QtWidgets.QApplication.activeModalWidget()
        if isinstance(box, QtWidgets.QMessageBox):
            self.seen.setdefault("message_boxes", []).append(box.text())
            box.accept()

    def quit_when_done(self):
        if self.seen["result"] is not None and self.seen["thread_done"]:
            app.quit()


def run(window, video: str, stop: bool) -> dict:
    window.openVideo(from_video_list=True, video_path=video, programmatic_call=True)
    window._config["video_depth_anything"] = dict(SETTINGS)
    window.run_video_depth_anything()  # the action behind Annolid's View menu entry
    recorder = Recorder(window, stop)
    boxes = QtCore.QTimer()
    boxes.timeout.connect(recorder.close_message_box)
    boxes.start(10)
    app.exec_()
    boxes.stop()
    seen = recorder.seen
    seen["status_bar"] = window.statusBar().currentMessage()  # the last word of Annolid's end-of-run slot
    seen["engine"] = f"{window.depth_manager.__module__}: depth_run = {sys.modules[window.depth_manager.__module__].depth_run.__module__}"
    seen["annolid_records"] = sorted(window.depth_manager._depth_ndjson_records)  # Annolid's reader over depth.ndjson
    if seen["annolid_records"]:
        record = window.depth_manager._depth_ndjson_records[seen["annolid_records"][0]]
        overlay = window.depth_manager._load_depth_overlay_from_record(record, np.zeros((180, 320, 3), np.uint8))
        seen["annolid_overlay_shape"] = None if overlay is None else list(overlay.shape)
    return seen


def main(argv):
    window = AnnolidWindow()
    runs, index = [], 0
    while index < len(argv):
        stop = index + 1 < len(argv) and argv[index + 1] == "--stop"
        runs.append(run(window, argv[index], stop))
        index += 2 if stop else 1
    print(json.dumps(runs, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
