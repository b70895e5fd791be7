"""The GUI's depth-per-region panel, with real widgets (offscreen)."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from helpers import H, W, make_video, read_table, run_sinks, square, write_json  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from test_floor_runs import FRAMES, annotate, run_scene, scene_depths  # noqa: E402

from annolid_depth.gui.main_window import MainWindow  # noqa: E402
from annolid_depth.gui.region_panel import PALETTE, RegionPanel, ticks  # noqa: E402


@pytest.fixture
def table(tmp_path) -> Path:
    """A real depth_regions.csv: frames 0, 2, ..., 8; at frame 4 the mouse has no usable depth."""
    for frame in range(0, 10, 2):
        write_json(tmp_path / "clip" / f"clip_{frame:09d}.json", {"shapes": [square("mouse", 5, 5, 14, 9)]})
    depths = [np.full((H, W), 1.0 + i, np.float32) for i in range(5)]
    depths[2][5:10, 5:15] = 0.0
    results = run_sinks(tmp_path / "out", depths=depths, metric=True, save_region_stats=True)
    return Path(results["region_stats"])


def column_brightness(image, x: int, y: int) -> int:
    return max(QColor(image.pixel(px, y)).lightness() for px in (x - 1, x, x + 1))


def test_panel_plots_marks_the_frame_and_seeks_on_click(qtbot, table):
    panel = RegionPanel()
    qtbot.addWidget(panel)
    assert panel.load(table) and not panel.isHidden()
    plot = panel.plot
    plot.resize(420, 200)
    panel.show()
    assert plot.frames == (0, 8) and plot.values == (1.0, 5.0) and plot.unit == "m"
    frames, _, medians = plot.series["mouse"]
    assert frames.tolist() == [0, 2, 4, 6, 8] and np.isnan(medians[2])
    assert [plot.frame_at(plot.to_x(frame)) for frame in range(9)] == list(range(9))
    assert plot.frame_at(0) == 0 and plot.frame_at(plot.width()) == 8  # clamped to the plotted frames

    plot.set_frame(4)
    image = plot.grab().toImage()
    middle = int(plot.area().center().y())
    assert column_brightness(image, round(plot.to_x(4)), middle) > 200  # the cursor line
    colours = {image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}
    assert QColor(PALETTE[0]).rgb() in colours  # the mouse's line

    with qtbot.waitSignal(plot.seek) as seek:
        qtbot.mouseClick(plot, Qt.LeftButton, pos=QPoint(round(plot.to_x(6)), middle))
    assert seek.args == [6]


def test_panel_hides_without_a_table(qtbot, tmp_path):
    panel = RegionPanel()
    qtbot.addWidget(panel)
    assert not panel.load(tmp_path / "missing.csv") and panel.isHidden()
    assert panel.plot.series == {}


@pytest.fixture
def window(qtbot, tmp_path):
    """The main window on a video with metric depth and depth per region for frames 0, 2, ..., 8."""
    video = make_video(tmp_path / "videos" / "mice.mp4", frames=10)
    out = tmp_path / "videos" / "mice"  # Annolid's annotation folder and the default output folder
    for frame in range(0, 10, 2):
        write_json(out / f"mice_{frame:09d}.json",
                   {"shapes": [square("mouse", 16, 16, 40, 32)], "imageWidth": 64, "imageHeight": 48})
    y, x = np.mgrid[0:H, 0:W]
    depths = [(1.0 + i + x / W).astype(np.float32) for i in range(5)]
    depths[2][10:21, 10:27] = 0.0  # frame 4: the mouse has no usable depth
    run_sinks(out, depths=depths, stem="mice", metric=True, save_region_stats=True)
    assert len(read_table(out / "depth_regions.csv")) == 5
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.open_video(video)
    return window


def test_main_window_shows_the_panel_follows_the_scrubber_and_names_the_shape(qtbot, window):
    panel = window.region_panel
    assert panel.isVisible()
    window.slider.setValue(6)
    assert panel.plot.frame == 6
    plot = panel.plot
    qtbot.mouseClick(plot, Qt.LeftButton, pos=QPoint(round(plot.to_x(2)), int(plot.area().center().y())))
    assert window.slider.value() == 2 and plot.frame == 2

    window.show_depth_at(20, 20)  # display pixels of the 64 x 48 video
    # the mouse covers columns 10..26 of the 41-wide depth: its median is column 18's 2 + 18/41
    assert window.statusBar().currentMessage() == "x 20, y 20: depth 2.293 m; mouse, median 2.439 m"
    window.show_depth_at(2, 2)
    assert window.statusBar().currentMessage() == "x 2, y 2: depth 2.024 m"  # outside the shape
    window.slider.setValue(4)
    window.show_depth_at(20, 20)
    assert window.statusBar().currentMessage().endswith("; mouse")  # no usable pixel, no median


def test_colour_bar_beside_the_depth_view_names_the_unit_and_the_near_end(window):
    bar = window.colour_bar
    assert bar.isVisible() and bar.texts == ("1 near", "1.98 far", "m")  # frame 0: 1 + x / 41 metres
    image = bar.grab().toImage()
    top, bottom = (QColor(image.pixel(bar.bar().center().x(), y)) for y in (bar.bar().top() + 1, bar.bar().bottom() - 1))
    assert top.lightness() > 200 and bottom.lightness() < 40  # nearer is brighter, as in the depth view
    window.slider.setValue(2)
    assert bar.texts == ("2 near", "2.98 far", "m")


def test_axis_ticks_share_one_precision():
    assert [text for _, text in ticks(1.0, 5.0)] == ["1", "2", "3", "4", "5"]
    assert [text for _, text in ticks(0.5, 1.25)] == ["0.6", "0.8", "1.0", "1.2"]
    assert [text for _, text in ticks(0.0312, 0.0614)] == ["0.04", "0.05", "0.06"]
    assert [text for _, text in ticks(-0.006, 0.013)] == ["-0.005", "0.000", "0.005", "0.010"]
    assert ticks(2.0, 2.0) == [(2.0, "2")]  # one value: no range to divide


def test_heights_beside_depth_with_the_floor_residual_and_the_frame_marked_at_frame_0(qtbot, tmp_path):
    annotate(tmp_path)
    run_scene(tmp_path, scene_depths())
    panel = RegionPanel()
    qtbot.addWidget(panel)
    assert panel.load(tmp_path / "out" / "depth_regions.csv.partial")  # an unfinished run's table and floor
    heights = panel.heights
    assert heights.unit == "m" and list(heights.series) == ["mouse_1", "mouse_2"]
    np.testing.assert_allclose([np.nanmedian(heights.series[label][2]) for label in heights.series], [0.03, 0.06], atol=0.002)
    assert heights.note.startswith("floor residual rms 1.") and heights.note.endswith("% inliers") and " mm, p90 " in heights.note
    panel.resize(900, 220)
    panel.show()
    panel.set_frame(0)
    for plot in (panel.plot, heights):
        assert plot.frame == 0
        image = plot.grab().toImage()
        x, middle = round(plot.to_x(0)), int(plot.area().center().y())
        assert x > plot.area().left() + 2  # inside the box, not on its border
        assert column_brightness(image, x, middle) > 200
    panel.set_frame(FRAMES - 1)
    image = heights.grab().toImage()
    assert column_brightness(image, round(heights.to_x(0)), int(heights.area().center().y())) < 100  # the cursor moved on
    with qtbot.waitSignal(panel.seek) as seek:
        qtbot.mouseClick(heights, Qt.LeftButton, pos=QPoint(round(heights.to_x(5)), int(heights.area().center().y())))
    assert seek.args == [5]


def test_without_a_floor_the_height_plot_says_why(qtbot, tmp_path, table):
    panel = RegionPanel()
    qtbot.addWidget(panel)
    assert panel.load(table)  # constant depth frame by frame: a plane facing the camera, no floor below it
    assert np.isnan(panel.heights.series["mouse"][2]).all()
    assert panel.heights.note.startswith("no floor: ")
    (table.parent / "depth_floor.json").unlink()
    assert panel.load(table) and panel.heights.note == "no depth_floor.json: no floor"
