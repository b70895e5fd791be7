"""`annolid-depth-gui [VIDEO]` / `python -m annolid_depth.gui [VIDEO]`: start the desktop app."""
from __future__ import annotations

import argparse
import sys

from ..errors import require_opencv
from .system_libraries import xcb_problem

PROG = "annolid-depth-gui"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Per-frame depth for videos (desktop app)")
    parser.add_argument("video", nargs="?", help="a video to open")
    args = parser.parse_args(argv)
    try:
        require_opencv()
    except ImportError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    problem = xcb_problem()  # before Qt loads: it aborts the process when its platform plugin cannot
    if problem is not None:
        text, fatal = problem
        print(f"{PROG}: {text}", file=sys.stderr)
        if fatal:
            return 1
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.show()
    if args.video:
        window.open_video(args.video)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
