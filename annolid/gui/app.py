"""`annolid [VIDEO]` / `python -m annolid.gui [VIDEO]`: start the desktop app."""
from __future__ import annotations

import argparse
import sys

from .system_libraries import xcb_problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="annolid", description="Per-frame depth for videos (desktop app)")
    parser.add_argument("video", nargs="?", help="a video to open")
    args = parser.parse_args(argv)
    problem = xcb_problem()  # before Qt loads: it aborts the process when its platform plugin cannot
    if problem is not None:
        text, fatal = problem
        print(f"annolid: {text}", file=sys.stderr)
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
