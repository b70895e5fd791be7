"""`annolid.depth` where Annolid is not installed: this package under the documented name, the
same module objects, and the names Annolid's code takes from its depth package with Annolid's
meaning. (Beside a real Annolid, Annolid's own `annolid.depth` wins: test_beside_annolid.py.)"""
import importlib
import inspect
import subprocess
import sys

import pytest

import annolid_depth


def test_the_documented_import_is_this_package():
    import annolid.depth
    from annolid.depth import run_video_depth_anything

    from annolid_depth.runner import run_video_depth_anything as ours

    assert run_video_depth_anything is ours
    assert annolid.depth.__version__ == annolid_depth.__version__
    assert "_standalone" in annolid.depth.__file__  # the shim beside the package, not a package of its own


@pytest.mark.parametrize("name", ["batch", "recompute", "io.records", "engine.streaming", "errors", "gui.app"])
def test_every_submodule_is_the_same_module_object(name):
    alias = importlib.import_module(f"annolid.depth.{name}")
    real = importlib.import_module(f"annolid_depth.{name}")
    assert alias is real
    assert real.__spec__.name == f"annolid_depth.{name}"  # the module keeps its own identity


def test_errors_raised_under_one_name_are_caught_under_the_other():
    from annolid.depth.errors import DepthError

    from annolid_depth.errors import VideoError

    assert issubclass(VideoError, DepthError)


def test_an_unknown_submodule_is_not_found():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("annolid.depth.no_such_module")


def test_annolids_names_with_annolids_meaning(tmp_path, capsys, monkeypatch):
    from annolid.depth import download_weights, ensure_checkpoints

    # Annolid: `from .download_weights import main as download_weights`, called with argv
    assert download_weights(["--list", "--dest", str(tmp_path)]) == 0
    assert "video_depth_anything_vits" in capsys.readouterr().out
    assert download_weights is annolid_depth.download_weights
    assert list(inspect.signature(ensure_checkpoints).parameters) == ["models", "dest"]
    assert inspect.signature(ensure_checkpoints).parameters["dest"].kind is inspect.Parameter.KEYWORD_ONLY
    (tmp_path / "video_depth_anything_vits.pth").write_bytes(b"present")
    assert ensure_checkpoints(["video_depth_anything_vits"], dest=tmp_path) is None  # present: nothing to fetch
    with pytest.raises(ValueError, match="unknown model 'vit_huge'"):
        ensure_checkpoints(["video_depth_anything_vits", "vit_huge"], dest=tmp_path)


@pytest.mark.parametrize("module", ["annolid.depth", "annolid.depth.download_weights", "annolid_depth.download_weights",
                                    "annolid.depth.export", "annolid_depth.gui"])
def test_python_dash_m_runs_each_documented_command(module):
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", module, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and not done.stderr


def test_importing_the_package_loads_neither_torch_nor_opencv():
    code = "import annolid.depth, sys; print('torch' in sys.modules, 'cv2' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.parametrize("entry", ["annolid_depth.cli", "annolid_depth.gui.app"])
def test_without_opencv_the_commands_say_what_to_install(entry, tmp_path):
    """An environment with no OpenCV at all (this package does not require one, so as not to
    replace Annolid's): `cv2` made unimportable in the child process."""
    code = f"import sys; sys.modules['cv2'] = None; from {entry} import main; sys.exit(main([{str(tmp_path)!r}]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "needs OpenCV and none is installed: pip install opencv-python-headless" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_opencv_the_library_raises_an_import_error_that_says_so():
    code = ("import sys; sys.modules['cv2'] = None\n"
            "try:\n    from annolid_depth import run_video_depth_anything\n"
            "except ImportError as exc:\n    print(exc.name, '|', exc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    name, message = done.stdout.split(" | ")
    assert name == "cv2" and "pip install opencv-python-headless" in message, done.stderr
