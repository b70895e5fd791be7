import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from parity_recipe import PARITY, SHARED, write_checkpoint  # noqa: E402

MEDIA_CLIP = SHARED / "media" / "davis_rollercoaster.mp4"


@pytest.fixture
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY} (the shared folder sits beside the checkout)")
    return PARITY


@pytest.fixture
def media_clip() -> Path:
    if not MEDIA_CLIP.exists():
        pytest.skip(f"test clip not found at {MEDIA_CLIP} (the shared folder sits beside the checkout)")
    return MEDIA_CLIP


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never read or write the real ~/.labelmerc or the real checkpoint folder in tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("ANNOLID_DEPTH_CHECKPOINTS", str(home / "checkpoints"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def video(tmp_path, media_clip) -> Path:
    """A private copy of the test clip at videos/mice.mp4, so outputs land in the test's folder."""
    target = tmp_path / "videos" / "mice.mp4"
    target.parent.mkdir()
    shutil.copy(media_clip, target)
    return target


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """A checkpoint folder holding the parity recipe's vits weights under the published name."""
    folder = tmp_path_factory.mktemp("weights")
    write_checkpoint(folder / "video_depth_anything_vits.pth")
    return folder
