"""`annolid [VIDEO]` / `python -m annolid.gui [VIDEO]`: start the desktop app."""
from __future__ import annotations

import argparse
import sys

from PySide6.QtWidgets import QApplication

from .main_window import MainWindow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="annolid", description="Per-frame depth for videos (desktop app)")
    parser.add_argument("video", nargs="?", help="a video to open")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow()
    window.show()
    if args.video:
        window.open_video(args.video)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
