import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from fake_hub import FakeHub  # noqa: E402
from helpers import MEDIA_CLIP, copy_file, cut_clip  # noqa: E402
from parity_recipe import PARITY, write_checkpoint  # noqa: E402


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


@pytest.fixture(scope="session", autouse=True)
def _cores_shared_between_workers():
    """Under pytest-xdist each worker runs torch on its share of the cores (one thread each for
    two workers on two cores), and so do the processes its tests start: workers that each ran
    a thread per core would slow each other down."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        from annolid_depth.io.pipeline import usable_cores

        threads = max(1, usable_cores() // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> Path:
    """One cache for the session: the compiled graphs of the default backend (auto) are
    exported once per checkpoint file, not once per test; tests of the cache set their own."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch, _session_cache):
    """Never read or write the real ~/.labelmerc, cache or checkpoint folder in tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))
    monkeypatch.setenv("ANNOLID_DEPTH_CHECKPOINTS", str(home / "checkpoints"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def vits_export(tmp_path_factory):
    """The recipe's vits weights, exported once for the session into a cache of their own.
    Tests that change the export work on a copy."""
    from annolid_depth.engine.backends import exported
    from annolid_depth.engine.loading import load_model

    root = tmp_path_factory.mktemp("vits")
    checkpoint = write_checkpoint(root / "checkpoints" / "video_depth_anything_vits.pth")
    model = load_model(str(checkpoint), checkpoint.stat().st_mtime_ns, "vits", False, "cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        folder = exported(model, checkpoint)
    return SimpleNamespace(model=model, checkpoint=checkpoint, folder=folder, cache=root / "cache")


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


@pytest.fixture
def hub(monkeypatch):
    """A running FakeHub with the environment pointed at it, set after huggingface_hub's import."""
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.stall.set()
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[int, Path]:
    """Short real videos cut once for the module, by frame count."""
    if not MEDIA_CLIP.exists():
        pytest.skip(f"test clip not found at {MEDIA_CLIP}")
    folder = tmp_path_factory.mktemp("clips")
    return {n: cut_clip(MEDIA_CLIP, folder / f"clip{n}.mp4", n) for n in (2, 3, 4)}


@pytest.fixture
def folder(tmp_path, clips) -> Path:
    """videos/: three short videos (one in a subfolder, one .mov), a text file named .mp4, and notes."""
    root = tmp_path / "videos"
    copy_file(clips[3], root / "a.mp4")
    copy_file(clips[4], root / "sub" / "b.mp4")
    copy_file(clips[2], root / "sub" / "c.mov")
    (root / "broken.mp4").write_text("not a video")
    (root / "notes.txt").write_text("ignored: not a video extension")
    return root
