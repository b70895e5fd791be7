"""Before Qt starts on Linux: are the system libraries of its X11 platform plugin there?

PySide6 brings Qt itself, but Qt's X11 plugin (xcb) links to system libraries that a fresh
or minimal Linux often lacks (libxcb-cursor0 and friends). Without them Qt aborts the whole
process with "Could not load the Qt platform plugin "xcb"", naming no library. So the
plugin's libraries are looked up first (`ldd`), and what is missing is named together with
the Debian/Ubuntu packages that provide it. Nothing is checked where Qt will not use xcb.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

NOT_FOUND = re.compile(r"^\s*(\S+) => not found", re.MULTILINE)
PYSIDE_OWN = ("libQt6", "libpyside6", "libshiboken6")  # shipped in the PySide6 wheel, not by the system
PACKAGES = {  # the plugin's libraries whose package breaks Debian's naming rule
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libGLdispatch.so.0": "libglvnd0",
    "libbrotlicommon.so.1": "libbrotli1",
    "libbrotlidec.so.1": "libbrotli1",
    "libgcc_s.so.1": "libgcc-s1",
    "libz.so.1": "zlib1g",
}


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the installed PySide6 (None: no PySide6, or none there)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or spec.origin is None:
        return None
    plugin = Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def unresolved(library: Path | None) -> list[str]:
    """The shared libraries that `library` needs, directly or not, and that the dynamic
    loader cannot find, each once ([] when that cannot be told: no ldd, no library)."""
    if library is None:
        return []
    try:
        listing = subprocess.run(["ldd", str(library)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(NOT_FOUND.findall(listing)))


def debian_package(soname: str) -> str:
    """The package that ships a library, by Debian's naming rule: libxcb-cursor.so.0 ->
    libxcb-cursor0; a name that ends in a digit takes a hyphen (libxkbcommon-x11.so.0 ->
    libxkbcommon-x11-0). `PACKAGES` holds the exceptions."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    name, _, version = soname.partition(".so.")
    name = name.lower()
    return f"{name}-{version}" if name[-1:].isdigit() else f"{name}{version}"


def uses_xcb(environ: Mapping[str, str]) -> tuple[bool, bool]:
    """(whether Qt may start its xcb plugin here, whether it will use nothing else)."""
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        first = chosen.split(";")[0].split(":")[0]
        return first == "xcb", first == "xcb"
    if not environ.get("DISPLAY"):
        return False, False
    return True, not environ.get("WAYLAND_DISPLAY")  # in a Wayland session Qt may take its wayland plugin


def xcb_problem(environ: Mapping[str, str] | None = None,
                missing: Callable[[], list[str]] = lambda: unresolved(xcb_plugin())) -> tuple[str, bool] | None:
    """(what to tell the user, whether the GUI cannot start) when Qt's xcb plugin lacks
    libraries here; None when it does not, or Qt will not use it (not Linux, another
    QT_QPA_PLATFORM, no display). `missing()` lists the libraries not found."""
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    maybe, only = uses_xcb(environ)
    if not maybe:
        return None
    libraries = missing()
    if not libraries:
        return None
    system = [name for name in libraries if not name.startswith(PYSIDE_OWN)]
    lines = [f"Qt's X11 platform plugin (xcb) cannot load: these libraries are missing: {', '.join(libraries)}."]
    if system:
        packages = " ".join(dict.fromkeys(debian_package(name) for name in system))
        lines += ["On Debian or Ubuntu install them with:", f"    sudo apt install {packages}",
                  "(elsewhere, the packages of your system that provide these files)."]
    if len(system) < len(libraries):
        lines.append("PySide6 itself is incomplete: pip install --force-reinstall PySide6-Essentials")
    if not only:
        lines.append("In a Wayland session Qt may not need them; if the window does not open, this is why.")
    return "\n".join(lines), only
