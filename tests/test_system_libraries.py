"""The check of Qt's X11 plugin libraries before the GUI starts (Linux)."""
import shutil
import sys

import pytest

from annolid_depth.gui import app
from annolid_depth.gui.system_libraries import debian_package, unresolved, xcb_plugin, xcb_problem

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux only")


def never_asked() -> list[str]:
    raise AssertionError("the libraries were looked up")


def test_missing_libraries_are_named_with_their_packages():
    text, fatal = xcb_problem({"DISPLAY": ":0"}, lambda: ["libxcb-cursor.so.0", "libxkbcommon-x11.so.0"])
    assert fatal
    assert "missing: libxcb-cursor.so.0, libxkbcommon-x11.so.0." in text
    assert "    sudo apt install libxcb-cursor0 libxkbcommon-x11-0\n" in text
    assert "Wayland" not in text and "pip" not in text


@pytest.mark.parametrize("environ", [
    {"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"},
    {"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"},
    {},  # no display: Qt fails for that reason, not for libraries
    {"WAYLAND_DISPLAY": "wayland-0"},
])
def test_nothing_is_looked_up_where_qt_will_not_use_xcb(environ):
    assert xcb_problem(environ, never_asked) is None


def test_an_explicit_xcb_is_checked_and_nothing_missing_is_no_problem():
    assert xcb_problem({"QT_QPA_PLATFORM": "xcb"}, lambda: ["libxcb-icccm.so.4"])[1]
    assert xcb_problem({"DISPLAY": ":0"}, lambda: []) is None


def test_in_a_wayland_session_missing_libraries_are_a_warning():
    text, fatal = xcb_problem({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, lambda: ["libxcb-icccm.so.4"])
    assert not fatal and "sudo apt install libxcb-icccm4" in text and "Wayland session" in text


@pytest.mark.parametrize("soname, package", [
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libEGL.so.1", "libegl1"),
    ("libdbus-1.so.3", "libdbus-1-3"),
    ("libglib-2.0.so.0", "libglib2.0-0"),
])
def test_debian_package_names(soname, package):
    assert debian_package(soname) == package


def test_ldd_finds_what_a_plugin_cannot_load(tmp_path):
    plugin = xcb_plugin()
    if plugin is None or shutil.which("ldd") is None:
        pytest.skip("needs PySide6's xcb plugin and ldd")
    assert not any(name.startswith("libQt6") for name in unresolved(plugin))  # Qt's own, beside it, are found
    stray = tmp_path / plugin.name  # away from the Qt libraries it links to
    shutil.copy(plugin, stray)
    missing = unresolved(stray)
    assert "libQt6XcbQpa.so.6" in missing and len(missing) == len(set(missing))
    text, fatal = xcb_problem({"DISPLAY": ":0"}, lambda: missing)
    assert fatal and "pip install --force-reinstall PySide6-Essentials" in text
    assert "libqt6" not in text  # no apt package for what the wheel ships


def test_the_app_stops_with_the_message_before_qt_starts(monkeypatch, capsys):
    monkeypatch.setattr(app, "xcb_problem", lambda: ("missing: libxcb-cursor.so.0 ...", True))
    assert app.main([]) == 1
    assert capsys.readouterr().err == "annolid-depth-gui: missing: libxcb-cursor.so.0 ...\n"
