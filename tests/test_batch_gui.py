"""File → Process Folder…: a folder's videos in a table, run with progress and Cancel."""
import pytest

pytest.importorskip("pytestqt")
from helpers import MEDIA_CLIP, copy_file  # noqa: E402

from annolid_depth.gui.main_window import MainWindow  # noqa: E402
from annolid_depth.io.records import iter_records  # noqa: E402
from annolid_depth.settings import DepthSettings  # noqa: E402


def table(dialog) -> list[list[str]]:
    return [[dialog.table.item(row, column).text() for column in range(3)] for row in range(dialog.table.rowCount())]


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    return win


def settings(weights_dir) -> DepthSettings:
    return DepthSettings(input_size=56, max_res=160, checkpoint_root=str(weights_dir))


def test_a_folder_runs_video_by_video(qtbot, window, folder, weights_dir, monkeypatch):
    monkeypatch.setattr(window, "settings", lambda: settings(weights_dir))
    dialog = window.process_folder(folder)
    assert table(dialog) == [["a.mp4", "queued", ""], ["broken.mp4", "queued", ""],
                             ["sub/b.mp4", "queued", ""], ["sub/c.mov", "queued", ""]]
    assert dialog.table.item(2, 3).text() == str(folder / "sub" / "b")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.records is not None, timeout=120_000)

    assert table(dialog) == [["a.mp4", "complete", "3"], ["broken.mp4", "failed", ""],
                             ["sub/b.mp4", "complete", "4"], ["sub/c.mov", "complete", "2"]]
    assert "cannot read" in dialog.table.item(1, 3).text()
    assert dialog.status.text().startswith("3 done, 1 failed, 0 not finished")
    assert len(list(iter_records(folder / "sub" / "c" / "depth.ndjson"))) == 2
    assert dialog.cancel_button.text() == "Close"


def test_cancel_stops_the_current_video_and_the_rest(qtbot, window, clips, weights_dir, tmp_path, monkeypatch):
    copy_file(MEDIA_CLIP, tmp_path / "videos" / "a_long.mp4")  # 70 frames: still running when Cancel is clicked
    copy_file(clips[2], tmp_path / "videos" / "b.mp4")
    monkeypatch.setattr(window, "settings", lambda: settings(weights_dir))
    dialog = window.process_folder(tmp_path / "videos")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.bar.value() >= 1, timeout=120_000)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.records is not None, timeout=120_000)

    assert [row[1] for row in table(dialog)] == ["cancelled", "not started"]
    assert dialog.status.text().startswith("0 done, 0 failed, 2 not finished")
    assert not (tmp_path / "videos" / "b").exists()


def test_a_folder_without_videos_cannot_start(qtbot, window, tmp_path):
    dialog = window.process_folder(tmp_path)
    assert not dialog.start_button.isEnabled()
    assert "no video files" in dialog.status.text()


def test_closing_the_window_stops_a_running_batch(qtbot, window, weights_dir, tmp_path, monkeypatch):
    copy_file(MEDIA_CLIP, tmp_path / "videos" / "long.mp4")
    monkeypatch.setattr(window, "settings", lambda: settings(weights_dir))
    dialog = window.process_folder(tmp_path / "videos")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.bar.value() >= 1, timeout=120_000)
    window.close()
    assert not dialog.thread.isRunning()
    qtbot.waitUntil(lambda: dialog.records is not None)  # the batch's result arrives as it ends
    assert [entry["status"] for entry in dialog.records] == ["cancelled"]


def test_the_open_video_shows_the_depth_its_batch_made(qtbot, window, clips, weights_dir, tmp_path, monkeypatch):
    video = copy_file(clips[3], tmp_path / "videos" / "mice.mp4")
    monkeypatch.setattr(window, "settings", lambda: settings(weights_dir))
    assert window.open_video(video) and not window.depth
    dialog = window.process_folder(tmp_path / "videos")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.records is not None, timeout=120_000)
    dialog.cancel_button.click()  # now "Close"

    assert len(window.depth) == 3


def test_errors_are_shown_whole_and_a_folder_that_all_failed_is_not_100_percent(qtbot, window, clips, weights_dir, tmp_path,
                                                                                monkeypatch):
    weights = tmp_path / "weights"  # a checkpoint whose recorded hash is not its own: every video fails to load it
    weights.mkdir()
    (weights / "video_depth_anything_vits.pth").write_bytes((weights_dir / "video_depth_anything_vits.pth").read_bytes())
    (weights / "video_depth_anything_vits.pth.sha256").write_text("0" * 64 + "  video_depth_anything_vits.pth\n")
    copy_file(clips[2], tmp_path / "videos" / "a.mp4")
    monkeypatch.setattr(window, "settings", lambda: DepthSettings(input_size=56, max_res=160, checkpoint_root=str(weights)))
    dialog = window.process_folder(tmp_path / "videos")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.records is not None, timeout=120_000)

    error = dialog.records[0]["error"]
    assert "\n  python -m annolid_depth.download_weights --model video_depth_anything_vits" in error  # several lines
    cell = dialog.table.item(0, 3)
    assert cell.text() == error.splitlines()[0] + " …" and cell.toolTip() == error
    assert dialog.details.isVisibleTo(dialog) and dialog.details.toPlainText() == error  # the failed row is selected
    assert (dialog.bar.value(), dialog.bar.maximum(), dialog.bar.text()) == (0, 1, "0 of 1 videos done")
    assert dialog.status.text().startswith("0 done, 1 failed, 0 not finished")
    assert dialog.status.text().endswith("; select a failed video for its whole error")


def test_missing_weights_are_offered_for_download_before_a_folder_runs(qtbot, window, clips, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    copy_file(clips[2], tmp_path / "videos" / "a.mp4")
    empty = tmp_path / "no_weights"
    monkeypatch.setattr(window, "settings", lambda: DepthSettings(input_size=56, max_res=160, checkpoint_root=str(empty)))
    dialog = window.process_folder(tmp_path / "videos")
    dialog.start_button.click()
    box = dialog.last_message
    assert box.windowTitle() == "Weights missing" and f'<p style="white-space:pre; margin:0 0 0 16px">{empty}</p>' in box.text()
    box.button(QMessageBox.Yes).click()  # offline in the tests: the download fails, and says why
    qtbot.waitUntil(lambda: dialog.last_message is not box, timeout=30_000)
    assert dialog.last_message.windowTitle() == "Download failed"
    assert "offline mode is on" in dialog.last_message.text()
    assert dialog.job is None and dialog.start_button.isEnabled()  # nothing ran; Start can be pressed again
