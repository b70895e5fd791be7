import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("pytestqt")
from parity_recipe import write_checkpoint  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from annolid_depth import run_video_depth_anything  # noqa: E402
from annolid_depth.gui.main_window import MainWindow  # noqa: E402
from annolid_depth.io.records import iter_records  # noqa: E402

FAST = {"encoder": "vits", "input_size": 56, "max_res": 128, "max_frames": 12, "streaming": True}


@pytest.fixture(scope="module")
def recipe_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("weights") / "video_depth_anything_vits.pth")


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def weights(recipe_checkpoint):
    folder = Path(os.environ["ANNOLID_DEPTH_CHECKPOINTS"])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(recipe_checkpoint, folder / recipe_checkpoint.name)


def write_config(home: Path, **section) -> Path:
    path = home / ".labelmerc"
    path.write_text(yaml.safe_dump({"video_depth_anything": section, "shortcuts": {"close": "Ctrl+W"}}))
    return path


def assert_not_blank(widget, path: Path) -> None:
    widget.grab().save(str(path))
    image = widget.grab().toImage()
    pixels = np.array([image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)])
    assert path.stat().st_size > 0 and pixels.std() > 0


def run_and_wait(qtbot, window):
    window.run_depth()
    dialog = window.run_dialog
    with qtbot.waitSignal(dialog.finished, timeout=120_000):
        pass
    return dialog


def run_and_cancel(qtbot, window):
    """Start a run and press Cancel once its first frame is done."""
    window.run_depth()
    dialog = window.run_dialog
    with qtbot.waitSignal(dialog.job.progress, timeout=60_000):
        pass
    with qtbot.waitSignal(dialog.finished, timeout=60_000):
        qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
    return dialog


def test_open_video_shows_frames_and_scrubs(qtbot, window, video, tmp_path):
    assert window.open_video(video)
    assert window.slider.maximum() == 69
    window.slider.setValue(24)
    assert window.position.text().startswith("Frame 24 / 69") and "1.00 s" in window.position.text()
    assert window.frame.shape == (540, 960, 3)
    assert not window.depth_view.isVisible()  # no depth yet
    assert_not_blank(window, tmp_path / "main_window.png")


def test_settings_dialog_saves_and_keeps_other_sections(qtbot, window, _isolated_home, tmp_path):
    config = write_config(_isolated_home, encoder="vits", custom_key=3)
    dialog = window.edit_settings()
    qtbot.addWidget(dialog)
    assert "MB" in dialog.widgets["encoder"].currentText()
    dialog.widgets["encoder"].setCurrentIndex(1)
    dialog.widgets["target_fps"].setValue(15)
    dialog.widgets["save_depth_video"].setChecked(True)
    precision = dialog.widgets["precision"]
    assert precision.currentText() == "automatic"
    precision.setCurrentIndex(precision.findData("bf16"))
    backend = dialog.widgets["backend"]
    assert [backend.itemText(i) for i in range(backend.count())] == ["auto", "torch", "onnxruntime", "openvino"]
    backend.setCurrentText("openvino")
    stride, voxel = dialog.widgets["point_cloud_stride"], dialog.widgets["point_cloud_voxel"]
    assert (stride.minimum(), stride.value(), voxel.minimum(), voxel.decimals()) == (1, 1, 0, 4)
    voxel.setValue(0.005)
    assert_not_blank(dialog, tmp_path / "settings_dialog.png")
    dialog.widgets["device"].setText("gpu")  # not a device
    dialog.accept()
    assert "device must be" in dialog.error.text() and dialog.isVisible()
    dialog.widgets["device"].setText("")
    dialog.widgets["input_size"].setValue(512)  # any size: rounded to the patch grid as the reference does
    dialog.accept()
    saved = yaml.safe_load(config.read_text())
    assert saved["shortcuts"] == {"close": "Ctrl+W"}
    section = saved["video_depth_anything"]
    assert (section["encoder"], section["target_fps"], section["save_depth_video"], section["custom_key"]) == ("vitb", 15, True, 3)
    assert section["input_size"] == 512
    assert section["precision"] == "bf16" and section["backend"] == "openvino"
    assert section["point_cloud_voxel"] == 0.005


def test_run_to_completion_then_browse_depth(qtbot, window, video, weights, _isolated_home):
    write_config(_isolated_home, **FAST)
    window.open_video(video)
    dialog = run_and_wait(qtbot, window)
    assert dialog.error is None and dialog.result["frames"] == 12 and not dialog.result["cancelled"]
    assert "12 / 12 frames" in dialog.status.text()
    assert window.statusBar().currentMessage() == f"Depth done: 12 frames → {video.parent / 'mice'}"
    ndjson = video.parent / "mice" / "depth.ndjson"
    assert [r["frame_index"] for r in iter_records(ndjson)] == list(range(12))
    assert window.depth is not None and window.depth_view.isVisible()

    window.slider.setValue(5)
    assert window.depth_map.shape == (72, 128)
    side_by_side = window.video_view.pixmap.toImage()
    window.blend_box.setChecked(True)
    assert not window.depth_view.isVisible()
    assert window.video_view.pixmap.toImage() != side_by_side  # the depth is drawn over the frame
    window.video_view.hovered.emit(480, 270)
    assert "relative disparity" in window.statusBar().currentMessage()


def test_reopening_a_video_finds_earlier_results(qtbot, window, video, weights, _isolated_home):
    write_config(_isolated_home, **FAST)
    window.open_video(video)
    run_and_wait(qtbot, window)
    fresh = MainWindow()
    qtbot.addWidget(fresh)
    fresh.open_video(video)
    assert fresh.depth is not None and len(fresh.depth) == 12


def test_cancel_keeps_a_valid_partial_result(qtbot, window, video, weights, _isolated_home):
    write_config(_isolated_home, **{**FAST, "max_frames": -1})
    window.open_video(video)
    dialog = run_and_cancel(qtbot, window)
    assert dialog.result["cancelled"]
    records = list(iter_records(video.parent / "mice" / "depth.ndjson.partial"))  # resumable, not published
    assert 1 <= len(records) < 70 and len(records) == dialog.result["frames"]
    assert not (video.parent / "mice" / "depth.ndjson").exists()


def test_bad_input_keeps_the_app_working(qtbot, window, video, tmp_path, weights, _isolated_home):
    window.run_depth()
    assert "Open a video first" in window.last_message.text()
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    assert not window.open_video(not_video)
    assert "notes.mp4" in window.last_message.text()

    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output folder goes")
    write_config(_isolated_home, **FAST, output_dir=str(blocker))
    assert window.open_video(video)
    dialog = run_and_wait(qtbot, window)
    assert dialog.error and "blocked" in dialog.error
    assert window.last_message.windowTitle() == "Depth run failed"
    assert window.run_action.isEnabled()


def test_missing_weights_offer_a_download(qtbot, window, video, _isolated_home):
    write_config(_isolated_home, **FAST)
    window.open_video(video)
    window.run_depth()
    box = window.last_message
    folder = os.environ["ANNOLID_DEPTH_CHECKPOINTS"]
    assert box.icon() == QMessageBox.Question and box.windowTitle() == "Weights missing"
    assert box.text() == ('<p style="margin:0">The video_depth_anything_vits weights are not downloaded yet: '
                          "video_depth_anything_vits.pth is not in the folder</p>"
                          f'<p style="white-space:pre; margin:0 0 0 16px">{folder}</p>'
                          '<p style="margin:0">Download them there now?</p>')
    box.button(QMessageBox.No).click()
    assert window.run_dialog is None


def test_a_failed_download_says_so_with_its_url_whole(qtbot, window, video, _isolated_home):
    write_config(_isolated_home, **FAST)  # HF_HUB_OFFLINE is set for the tests: the download fails at once
    window.open_video(video)
    window.run_depth()
    window.last_message.button(QMessageBox.Yes).click()
    with qtbot.waitSignal(window.run_dialog.finished, timeout=30_000):
        pass
    box = window.last_message
    assert box.windowTitle() == "Download failed"
    url = "https://huggingface.co/depth-anything/Video-Depth-Anything-Small/resolve/main/video_depth_anything_vits.pth"
    assert f'<p style="white-space:pre; margin:0 0 0 16px">{url}</p>' in box.text()  # one line, never cut mid-word
    assert box.text().startswith('<p style="margin:0">cannot download video_depth_anything_vits.pth: offline mode is on')


def test_frames_between_sampled_ones_say_whose_depth_they_show(qtbot, window, video, weights, _isolated_home):
    write_config(_isolated_home, **{**FAST, "target_fps": 12, "max_frames": 4})  # every 2nd frame of the 24 fps clip
    window.open_video(video)
    run_and_wait(qtbot, window)
    window.slider.setValue(2)
    assert window.position.text() == "Frame 2 / 69   0.08 s"
    window.slider.setValue(3)
    assert window.position.text() == "Frame 3 / 69   0.12 s   depth of frame 2 (the run sampled every 2nd frame)"
    assert window.depth_map is not None


def test_the_settings_dialog_says_what_an_empty_field_means(qtbot, window):
    dialog = window.edit_settings()
    qtbot.addWidget(dialog)
    placeholders = {name: dialog.widgets[name].placeholderText() for name in ("output_dir", "checkpoint_root", "device")}
    assert placeholders == {
        "output_dir": "empty: beside each video, in a folder named after it",
        "checkpoint_root": f"empty: {os.environ['ANNOLID_DEPTH_CHECKPOINTS']}",
        "device": "empty: the best there is (cuda, then mps, else cpu)",
    }
    assert dialog.widgets["device"].toolTip().endswith("\nempty: the best there is (cuda, then mps, else cpu)")


def test_the_run_dialog_shows_the_load_then_rates_of_this_run_only(qtbot, window):
    from annolid_depth.gui.run_dialog import Job, RunDialog
    from annolid_depth.progress import Rate

    job = Job(lambda job: job.cancel.wait() and {})  # the dialog's own thread, waiting for Cancel
    dialog = RunDialog(job, "Depth for clip.mp4", window)
    qtbot.addWidget(dialog)
    ticks = iter(range(100, 200))
    dialog.rate = Rate(lambda: float(next(ticks)))  # one second per group end
    facts = {"encoder": "vits", "device": "cpu", "backend": "openvino", "precision": "fp32", "input_size": 518,
             "frames_total": 70, "frames_done": 12, "stage": "loading"}
    dialog.on_stage(facts)
    assert dialog.status.text() == ("Loading vits on cpu (openvino, fp32)...\n58 frames (from frame 12 on) at input size 518 "
                                    "on the CPU (vits, openvino, fp32); this takes a while; faster: --input-size 252, "
                                    "--target-fps 5 (fewer frames)")
    for computed in range(1, 17):  # resumed at frame 12: groups of 8 frames
        dialog.on_progress({"frames_done": 12 + computed, "frames_total": 70, "frames_computed": computed,
                            "group_end": computed % 8 == 0})
        if computed == 8:
            assert dialog.status.text() == "20 / 70 frames, measuring speed"
    assert dialog.status.text() == "28 / 70 frames, 8.00 frames/s, 0:05 left"
    with qtbot.waitSignal(dialog.finished, timeout=10_000):
        dialog.cancel()


def test_hover_reads_depth_from_the_view(qtbot, window, video, weights, _isolated_home):
    write_config(_isolated_home, **FAST)
    window.open_video(video)
    run_and_wait(qtbot, window)
    view = window.depth_view
    qtbot.mouseMove(view, QPoint(view.width() // 2, view.height() // 2))
    assert "depth" in window.statusBar().currentMessage()


def test_a_cancelled_run_shows_only_its_frames_and_offers_to_resume(qtbot, window, video, weights, _isolated_home):
    write_config(_isolated_home, **{**FAST, "max_frames": 70, "streaming": False})  # a cancel within the last
    # window (frames 44-69) finishes the video: three windows leave room for a cancel that lands late
    window.open_video(video)
    dialog = run_and_cancel(qtbot, window)
    done = dialog.result["frames"]
    assert dialog.result["cancelled"] and 1 <= done < 70

    fresh = MainWindow()
    qtbot.addWidget(fresh)
    fresh.open_video(video)  # the folder's run, as it stands
    assert f"cancelled at {done} of 70 frames" in fresh.statusBar().currentMessage()
    fresh.slider.setValue(done - 1)
    assert fresh.depth_map is not None
    assert not fresh.colour_bar.isHidden()
    fresh.slider.setValue(done + 2)  # past what the run did: no stale map or colour bar, no value under the mouse
    assert fresh.depth_map is None and "no depth for this frame" in fresh.position.text()
    assert fresh.colour_bar.isHidden()
    fresh.video_view.hovered.emit(100, 100)
    assert fresh.statusBar().currentMessage().endswith("no depth for this frame")

    fresh.run_depth()
    box = fresh.last_message
    assert box.text() == (f"{video.parent / 'mice'} holds an unfinished run of this video with these settings: "
                          f"depth run cancelled at {done} of 70 frames.")
    resume = next(b for b in box.buttons() if b.text() == f"Resume at frame {done}")
    assert {b.text() for b in box.buttons()} >= {f"Resume at frame {done}", "Start over"}
    resume.click()
    with qtbot.waitSignal(fresh.run_dialog.finished, timeout=120_000):
        pass
    result = fresh.run_dialog.result
    assert result["status"] == "complete" and result["frames"] == 70
    assert "depth for 70 frames" in fresh.run_state


def test_open_depth_folder_shows_depth_written_elsewhere(qtbot, window, video, weights_dir, tmp_path):
    elsewhere = tmp_path / "results" / "mice_run"
    run_video_depth_anything(video, elsewhere, checkpoint_root=weights_dir, **{**FAST, "max_frames": 5})
    assert not window.depth_folder_action.isEnabled()  # nothing to show depth for yet
    window.open_video(video)
    assert window.depth is None  # not in the video's own output folder
    assert window.open_depth_folder(elsewhere)
    assert len(window.depth) == 5 and window.depth_view.isVisible() and window.depth_map.shape == (72, 128)
    assert window.statusBar().currentMessage() == f"mice.mp4: depth for 5 frames from {elsewhere}"

    stopped = tmp_path / "results" / "stopped"  # unfinished: shown, but not offered for a resume it would not get
    done = run_video_depth_anything(video, stopped, checkpoint_root=weights_dir, should_cancel=lambda: True, **FAST)["frames"]
    assert window.open_depth_folder(stopped) and len(window.depth) == done
    assert window.statusBar().currentMessage() == f"mice.mp4: depth run cancelled at {done} of 12 frames from {stopped}"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert not window.open_depth_folder(empty)
    assert window.last_message.text().startswith(f"{empty} holds no depth")
    assert len(window.depth) == done  # what was shown stays

    other = tmp_path / "videos" / "rats.mp4"  # another file: a byte longer
    other.write_bytes(video.read_bytes() + b"\0")
    assert window.open_video(other) and window.depth is None
    assert not window.open_depth_folder(elsewhere)
    assert window.last_message.text() == f"{elsewhere} holds depth of another video ({video}), not of {other}"
    (elsewhere / "run.json").unlink()  # a folder without run.json: its records name the video
    assert not window.open_depth_folder(elsewhere)
    assert window.last_message.text() == f"{elsewhere} holds depth of another video (mice.mp4), not of rats.mp4"
    window.open_video(video)
    assert window.open_depth_folder(elsewhere) and len(window.depth) == 5
