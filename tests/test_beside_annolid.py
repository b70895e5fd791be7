"""This package beside a real Annolid: Annolid 1.6.10 from PyPI in .venv-annolid (built by
`make annolid-env`, which `make test` runs first), and a wheel built from this checkout.

Installed before or after Annolid, and uninstalled again, this package changes no file of
Annolid or of its OpenCV (each file listed in their RECORDs, hashed), and Annolid's command,
modules and depth names stay Annolid's; with docs/annolid-opt-in.patch applied to the installed
Annolid, Annolid's own window runs this engine, and Annolid's own engine where this one is gone
or unfit. Each fixture below changes the environment in one sequence and notes what it sees;
the tests read those notes. The environment is left as it was found: Annolid as its wheel
installed it, without this package. Without these tests: pytest -m "not annolid_env".
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import MEDIA_CLIP, cut_clip
from parity_recipe import write_checkpoint

pytestmark = pytest.mark.annolid_env

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".venv-annolid"
SCRIPTS = Path(__file__).parent / "annolid_env"
PATCH = ROOT / "docs" / "annolid-opt-in.patch"
ANNOLID = "1.6.10"
MODELS = ["video_depth_anything_vits", "video_depth_anything_vitb", "video_depth_anything_vitl",
          "metric_video_depth_anything_vits", "metric_video_depth_anything_vitb", "metric_video_depth_anything_vitl"]
PREFER = "annolid-depth: Annolid's own depth engine stays in use: "


def record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Environment:
    """.venv-annolid, driven through its own pip and Python in child processes."""

    def __init__(self, root: Path, home: Path, checkpoints: Path):
        self.root, self.python = root, root / "bin" / "python"
        (self.site,) = root.glob("lib/python3*/site-packages")
        self.wheels = root / "wheels"  # Annolid's own wheel, kept by `make annolid-env`
        drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
        self.vars = {name: value for name, value in os.environ.items() if name not in drop}
        self.vars.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1",
                         ANNOLID_DEPTH_CHECKPOINTS=str(checkpoints), PIP_DISABLE_PIP_VERSION_CHECK="1")

    def run(self, *args, cwd=None, drop=(), timeout=300) -> subprocess.CompletedProcess:
        env = {name: value for name, value in self.vars.items() if name not in drop}
        command = [str(a) for a in args]
        try:
            return subprocess.run(command, capture_output=True, text=True, cwd=cwd or self.root, env=env, timeout=timeout)
        except FileNotFoundError:  # a command that is not installed, as a shell would say it
            return subprocess.CompletedProcess(command, 127, "", f"{command[0]}: command not found")

    def check(self, *args, **kwargs) -> subprocess.CompletedProcess:
        done = self.run(*args, **kwargs)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}: {done.stderr.strip()[-2000:]}", pytrace=False)
        return done

    def pip(self, *args) -> subprocess.CompletedProcess:
        return self.check(self.python, "-m", "pip", *args)

    def python_json(self, *args, **kwargs):
        return json.loads(self.check(self.python, *args, **kwargs).stdout.splitlines()[-1])

    def reinstall(self, *requirements: str, force: bool = False) -> subprocess.CompletedProcess:
        """From the wheels in wheels/, so no index is asked."""
        return self.pip("install", "-q", "--no-deps", "--no-index", "--find-links", self.wheels,
                        *(["--force-reinstall"] if force else []), *requirements)

    def opencv(self) -> str:
        """The requirement that reinstalls the OpenCV Annolid brought, at its version."""
        return "opencv-contrib-python==" + self.dist_info("opencv-contrib-python").name.removesuffix(".dist-info").split("-")[1]

    # ------------------------------------------------------------------ what is installed
    def dist_info(self, name: str) -> Path | None:
        found = sorted(self.site.glob(f"{name.replace('-', '_')}-*.dist-info"))
        return found[0] if found else None

    def distributions(self, prefix: str) -> list[str]:
        return sorted(p.name.split("-")[0] for p in self.site.glob(f"{prefix}*.dist-info"))

    def record(self, name: str) -> list[tuple[str, str]]:
        rows = (line.rsplit(",", 2) for line in (self.dist_info(name) / "RECORD").read_text().splitlines() if line)
        return [(path, digest) for path, digest, _ in rows]

    def files(self, name: str) -> dict[str, str]:
        """Every file the distribution's RECORD lists, with its hash as RECORD writes one."""
        seen = {}
        for path, _ in self.record(name):
            file = (self.site / path).resolve()
            seen[path] = record_hash(file) if file.is_file() else "missing"
        return seen

    def unlike_record(self, name: str) -> list[str]:
        """The files that differ from the hash RECORD gives them, or are gone."""
        files = self.files(name)
        return sorted(path for path, digest in self.record(name) if files[path] == "missing" or digest and files[path] != digest)

    def snapshot(self) -> dict[str, dict[str, str]]:
        return {"annolid": self.files("annolid"), "opencv-contrib-python": self.files("opencv-contrib-python")}

    def pip_show_files(self, *names: str) -> dict[str, set[str]]:
        """`pip show -f` per distribution: the paths each one installed."""
        shown, name, listing = {}, None, False
        for line in self.check(self.python, "-m", "pip", "show", "-f", *names).stdout.splitlines():
            if line.startswith("Name: "):
                name, listing = line[len("Name: "):], False
                shown[name] = set()
            elif line.startswith("Files:"):
                listing = True
            elif listing and line.startswith("  "):
                shown[name].add(line.strip())
        return shown

    def restore(self) -> None:
        """Back to where the tests start: Annolid as its wheel installed it, this package absent."""
        if self.dist_info("annolid-depth"):
            self.pip("uninstall", "-q", "-y", "annolid-depth")
        if not self.dist_info("annolid") or self.unlike_record("annolid"):
            self.reinstall(f"annolid=={ANNOLID}", force=True)
        others = [name for name in self.distributions("opencv") if name != "opencv_contrib_python"]
        if others:  # another OpenCV over Annolid's, as an earlier annolid-depth brought
            self.pip("uninstall", "-q", "-y", *others)
        if self.unlike_record("opencv-contrib-python"):
            self.reinstall(self.opencv(), force=True)
        broken = self.unlike_record("annolid") + self.unlike_record("opencv-contrib-python")
        if broken:
            pytest.fail(f"{ENV} differs from its wheels ({broken[:3]}...): rebuild it with rm -r {ENV} && make annolid-env",
                        pytrace=False)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(tmp_path_factory, checkpoints) -> Environment:
    if not all((ENV / stamp).exists() for stamp in (".deps", ".wheels")):
        message = f"Annolid's environment {ENV} is not built: make annolid-env"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)  # CI builds it first: its absence there is a fault
        pytest.skip(message)
    environment = Environment(ENV, tmp_path_factory.mktemp("annolid_home"), checkpoints)
    environment.restore()
    yield environment
    environment.restore()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """The parity recipe's deterministic weights under the published name."""
    folder = tmp_path_factory.mktemp("annolid_env_checkpoints")
    write_checkpoint(folder / "video_depth_anything_vits.pth")
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if not MEDIA_CLIP.exists():
        pytest.skip(f"test clip not found at {MEDIA_CLIP} (the shared folder sits beside the checkout)")
    return cut_clip(MEDIA_CLIP, tmp_path_factory.mktemp("annolid_env_clip") / "clip.mp4", 12)


@pytest.fixture(scope="module")
def wheel(env, tmp_path_factory) -> Path:
    """This checkout as a wheel (not editable), built from a copy so no earlier build output rides along."""
    source, dist = tmp_path_factory.mktemp("annolid_depth_source"), tmp_path_factory.mktemp("annolid_depth_dist")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "annolid_depth", source / "annolid_depth",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pth", "*.safetensors", "*.sha256"))
    env.pip("wheel", "-q", "--no-deps", source, "-w", dist)
    (built,) = dist.glob("annolid_depth-*.whl")
    return built


def observe(env: Environment, clip: Path, out: Path, *, ours: bool) -> dict:
    """What one state of the environment with Annolid looks like: files, Annolid's view, this package's commands."""
    script = env.root / "bin" / "annolid"
    seen = {"files": env.snapshot(), "opencv": env.distributions("opencv"),
            "unlike_record": env.unlike_record("annolid") + env.unlike_record("opencv-contrib-python"),
            "probe": env.python_json(SCRIPTS / "probe.py"), "annolid --version": env.run(script, "--version"),
            "annolid script": script.read_text() if script.exists() else "missing"}
    if ours:
        seen["pip show"] = env.pip_show_files("annolid", "annolid-depth")
        bin_ = env.root / "bin"
        seen["commands"] = {
            "annolid-depth --help": env.run(bin_ / "annolid-depth", "--help"),
            # no display at all: a window would fail to open
            "annolid-depth-gui --help": env.run(bin_ / "annolid-depth-gui", "--help", drop=("QT_QPA_PLATFORM", "DISPLAY")),
            "download_weights --list": env.run(env.python, "-m", "annolid_depth.download_weights", "--list"),
            "annolid-depth clip": env.run(bin_ / "annolid-depth", clip, "--input-size", "56", "--max-res", "160",
                                          "--output-dir", out, "--quiet"),
        }
        seen["output"] = out
    return seen


@pytest.fixture(scope="module")
def states(env, wheel, clip, tmp_path_factory) -> dict[str, dict]:
    """Both install orders, each followed by an uninstall."""
    out = tmp_path_factory.mktemp("annolid_env_runs")
    states = {"Annolid alone": observe(env, clip, out / "alone", ours=False)}
    env.pip("install", "-q", wheel)
    states["installed after Annolid"] = observe(env, clip, out / "after", ours=True)
    env.pip("uninstall", "-q", "-y", "annolid-depth")
    states["uninstalled after Annolid"] = observe(env, clip, out / "after-uninstalled", ours=False)

    env.pip("uninstall", "-q", "-y", "annolid")
    env.pip("install", "-q", wheel)
    states["without Annolid"] = {
        "import": env.run(env.python, "-c", "import annolid.depth as d; print(d.__file__, "
                                            "d.run_video_depth_anything.__module__, d.download_weights.__name__)"),
        "metadata": env.run(env.python, "-c", "import importlib.metadata as m; m.version('annolid')"),
        "download_weights --list": env.run(env.python, "-m", "annolid.depth.download_weights", "--list"),
    }
    env.reinstall(f"annolid=={ANNOLID}")
    states["installed before Annolid"] = observe(env, clip, out / "before", ours=True)
    env.pip("uninstall", "-q", "-y", "annolid-depth")
    states["uninstalled before Annolid"] = observe(env, clip, out / "before-uninstalled", ours=False)
    return states


@pytest.fixture(scope="module")
def opted_in(env, wheel, clip, states, tmp_path_factory) -> dict:
    """The patch applied to the installed Annolid: this engine in Annolid's window, the entry point,
    Annolid's own engine where this one does not load, where its API differs, where this package
    is gone; then the README's repair of damaged Annolid files."""
    seen = {}
    env.pip("install", "-q", wheel)
    seen["patch"] = env.check("patch", "-p1", "--forward", "-i", PATCH, cwd=env.site)
    videos = tmp_path_factory.mktemp("annolid_window")
    runs = [videos / "complete" / "mice.mp4", videos / "stopped" / "mice.mp4"]
    for video in runs:
        video.parent.mkdir()
        shutil.copy(clip, video)
    seen["window"] = env.python_json(SCRIPTS / "depth_window.py", runs[0], runs[1], "--stop", cwd=videos)
    seen["videos"] = runs
    seen["entry point"] = env.run(env.python, "-c", ENTRY_POINT_LOOKUP)

    where = "import annolid.depth, annolid.depth.run; print(annolid.depth.run_video_depth_anything.__module__)"
    seen["engine does not load"] = env.run(env.python, "-c", f"import sys; sys.modules['annolid_depth.runner'] = None; {where}")
    run_py = env.site / "annolid" / "depth" / "run.py"
    own = run_py.read_text()
    assert own.count("    input_size: int = 518,\n") == 1
    run_py.write_text(own.replace("    input_size: int = 518,\n", "    input_size: int = 518,\n    crop: bool = False,\n"))
    seen["another Annolid API"] = env.run(env.python, "-c", where)
    env.pip("uninstall", "-q", "-y", "annolid-depth")
    seen["uninstalled"] = env.run(env.python, "-c", where)

    # what an earlier annolid-depth did: Annolid's files and OpenCV's overwritten, deleted on its uninstall
    (env.site / "annolid" / "gui" / "app.py").unlink()
    (env.site / "annolid" / "depth" / "download_weights.py").write_text("raise ImportError('not Annolid')\n")
    (env.site / "cv2" / "version.py").write_text("opencv_version = '5.0.0'\n")
    seen["damaged"] = env.unlike_record("annolid") + env.unlike_record("opencv-contrib-python")
    # the README's repair, with the wheels kept here in place of the index
    seen["repair"] = [env.run(env.python, "-m", "pip", "uninstall", "-y", "annolid-depth", "opencv-python-headless"),
                      env.reinstall(f"annolid=={ANNOLID}", env.opencv(), force=True)]
    seen["repaired"] = env.unlike_record("annolid") + env.unlike_record("opencv-contrib-python")
    return seen


# The entry point variant of the opt-in, as README.md shows it for Annolid's annolid/depth/__init__.py
ENTRY_POINT_LOOKUP = """
from importlib.metadata import entry_points
from annolid.depth.run import run_video_depth_anything
for engine in entry_points(group="annolid.depth_engines"):
    try:
        run_video_depth_anything = engine.load()(run_video_depth_anything)
    except Exception:
        continue
    break
print(run_video_depth_anything.__module__)
"""

INSTALLED = ["installed after Annolid", "installed before Annolid"]
WITH_ANNOLID = ["Annolid alone", *INSTALLED, "uninstalled after Annolid", "uninstalled before Annolid"]


# ------------------------------------------------------------------------ own files only


@pytest.mark.parametrize("state", WITH_ANNOLID)
def test_annolid_and_its_opencv_are_byte_for_byte_as_their_wheels_installed_them(states, state):
    assert states[state]["unlike_record"] == []
    assert states[state]["opencv"] == ["opencv_contrib_python"]  # no second OpenCV installed over Annolid's


@pytest.mark.parametrize("before, after", [
    ("Annolid alone", "installed after Annolid"), ("Annolid alone", "uninstalled after Annolid"),
    ("installed before Annolid", "uninstalled before Annolid"),
])
def test_no_file_of_annolid_or_its_opencv_changes(states, before, after):
    """Every file both RECORDs list, the compiled ones without a hash there included."""
    assert states[after]["files"] == states[before]["files"]
    assert len(states[before]["files"]["annolid"]) > 1000 and len(states[before]["files"]["opencv-contrib-python"]) > 100


@pytest.mark.parametrize("state", INSTALLED)
def test_no_path_in_common_with_annolid_and_no_annolid_command(states, state):
    shown = states[state]["pip show"]
    assert shown["annolid"] and shown["annolid-depth"]
    assert shown["annolid"].isdisjoint(shown["annolid-depth"])
    opencv = set(states[state]["files"]["opencv-contrib-python"])
    assert opencv.isdisjoint(shown["annolid-depth"])
    assert not any(path.startswith("annolid/") for path in shown["annolid-depth"])
    scripts = states[state]["probe"]["console_scripts"]
    assert scripts["annolid"] == ["annolid.gui.launcher:main", "annolid"]
    assert {name for name, (_, dist) in scripts.items() if dist == "annolid-depth"} == {"annolid-depth", "annolid-depth-gui"}


@pytest.mark.parametrize("state", WITH_ANNOLID)
def test_annolid_keeps_its_command_modules_opencv_and_depth_names(states, state):
    seen, alone = states[state], states["Annolid alone"]
    probe = seen["probe"]
    assert probe["imports"] == dict.fromkeys(probe["imports"], "ok") and len(probe["imports"]) == 5
    assert probe["cv2"] == alone["probe"]["cv2"] and probe["cv2"]["version"].startswith("5.1.")
    site = str(ENV.resolve() / "lib")
    assert probe["download_weights"]["module"] == "annolid.depth.download_weights" and probe["download_weights"]["name"] == "main"
    assert probe["download_weights"]["file"].startswith(site) and "/annolid/depth/download_weights.py" in probe["download_weights"]["file"]
    assert probe["run_video_depth_anything"]["module"] == "annolid.depth.run"  # without the opt-in: Annolid's own
    assert seen["annolid --version"].returncode == 0 and seen["annolid --version"].stdout.strip() == ANNOLID
    assert "from annolid.gui.launcher import main" in seen["annolid script"]
    installed = state in INSTALLED
    assert probe["depth_engines"] == ({"annolid-depth": ["annolid_depth.for_annolid:prefer", "annolid-depth"]} if installed else {})


@pytest.mark.parametrize("state", INSTALLED)
def test_this_packages_commands_work_beside_annolid(states, state):
    commands = states[state]["commands"]
    for name in ("annolid-depth --help", "annolid-depth-gui --help"):
        assert commands[name].returncode == 0, commands[name].stderr
        assert commands[name].stdout.startswith(f"usage: {name.split()[0]}") and not commands[name].stderr
    listing = commands["download_weights --list"]
    assert listing.returncode == 0 and all(model in listing.stdout for model in MODELS), listing.stderr
    run = commands["annolid-depth clip"]
    assert run.returncode == 0, run.stderr
    records = (states[state]["output"] / "depth.ndjson").read_text().splitlines()
    assert [json.loads(line)["frame_index"] for line in records] == list(range(12))


def test_without_annolid_the_wheel_answers_to_annolid_depth(states):
    """The standalone contract, from the wheel: `annolid.depth` is this package while Annolid is absent."""
    seen = states["without Annolid"]
    assert seen["import"].returncode == 0, seen["import"].stderr
    file, engine, downloader = seen["import"].stdout.split()
    assert file.endswith("annolid_depth/_standalone/annolid/depth/__init__.py")
    assert engine == "annolid_depth.runner" and downloader == "annolid_depth.download_weights"
    assert "PackageNotFoundError: No package metadata was found for annolid" in seen["metadata"].stderr  # nor said to be
    listing = seen["download_weights --list"]
    assert listing.returncode == 0 and all(model in listing.stdout for model in MODELS), listing.stderr


ANNOLIDS_OWN_RUN = """
import sys
from annolid.depth.run import run_video_depth_anything
run_video_depth_anything(sys.argv[1], sys.argv[2], encoder="vits", input_size=56, max_res=160, max_len=6,
                         checkpoint_root=sys.argv[3], fp32=True)
"""


def test_region_tables_are_rebuilt_from_annolids_own_depth_records(env, clip, checkpoints, tmp_path):
    from annolid_depth.errors import OutputError
    from annolid_depth.recompute import recompute_region_stats

    video = tmp_path / "videos" / "clip.mp4"
    video.parent.mkdir()
    shutil.copy(clip, video)
    out = tmp_path / "videos" / "annolid_depth"
    env.check(env.python, "-c", ANNOLIDS_OWN_RUN, video, out, checkpoints, timeout=600)  # Annolid's engine, not ours
    assert sorted(p.name for p in out.iterdir()) == ["depth.ndjson"]  # no run.json, records without a kind
    for frame in range(0, 6, 2):
        shape = {"label": "mouse", "shape_type": "rectangle", "points": [[20 + frame, 10], [60 + frame, 40]]}
        path = video.parent / "clip" / f"clip_{frame:09d}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"shapes": [shape]}))
    with pytest.raises(OutputError, match="do not say what their values are .* metric=False \\(--relative\\)"):
        recompute_region_stats(out, video)
    result = recompute_region_stats(out, video, metric=False)
    rows = (out / "depth_regions.csv").read_text().splitlines()
    assert [row.split(",")[:3] for row in rows[1:]] == [[str(f), f"{f / 24:.6f}", "mouse"] for f in (0, 2, 4)]
    assert {row.split(",")[16] for row in rows[1:]} == {"disparity"} and result["region_stats"]


# ------------------------------------------------------------------------------ the opt-in


def test_the_patch_applies_to_annolid_as_installed(opted_in):
    assert "patching file annolid/depth/__init__.py" in opted_in["patch"].stdout


def test_annolids_window_runs_this_engine_to_the_end(opted_in):
    complete, _ = opted_in["window"]
    assert complete["engine"] == "annolid.gui.widgets.depth_manager: depth_run = annolid_depth.runner"
    percents = complete["percents"]
    assert percents == sorted(percents) and percents[-1] == 100 and percents.count(100) == 1
    previews = complete["previews"]
    assert [p["frame_index"] for p in previews] == list(range(12))
    for preview in previews:
        assert preview["overlay_shape"] == [90, 160, 3] and preview["overlay_dtype"] == "uint8"
        stats = preview["depth_stats"]
        assert stats["min"] <= stats["display_min"] < stats["display_max"] <= stats["max"]
        assert stats["min"] <= stats["mean"] <= stats["max"]
        # Annolid's preview slot put the overlay on its canvas and moved to that frame
        assert preview["canvas"] == [160, 90] and preview["window_frame"] == preview["frame_index"]

    folder = opted_in["videos"][0].parent / "mice"  # Annolid's choice: beside the video, named after it
    result = complete["result"]
    assert result["status"] == "complete" and result["frames"] == 12
    assert result["output_dir"] == [str(folder)]
    assert result["depth_ndjson"] == [str(folder / "depth.ndjson")]
    assert result["depth_visualization"] == [str(folder / "mice_vis.mp4")]
    assert result["npz"] == [str(folder / "mice_depths.npz")]
    assert result["depth_frames"] == [str(folder / "depth_frames" / f"depth_{i:05d}.png") for i in range(12)]
    assert result["point_cloud_csv"] == [str(folder / "point_clouds" / f"point_{i:04d}.csv") for i in range(12)]
    assert all(Path(path).is_file() for key in ("depth_ndjson", "depth_visualization", "npz", "depth_frames",
                                                "point_cloud_csv") for path in result[key])
    # Annolid's end-of-run slot read the records back, and draws its overlay from them
    assert complete["status_bar"] == "Video Depth Anything complete."
    assert complete["annolid_records"] == list(range(12)) and complete["annolid_overlay_shape"] == [180, 320, 4]


def test_annolids_stop_ends_the_run_as_a_cancel(opted_in):
    _, stopped = opted_in["window"]
    result = stopped["result"]
    assert result["status"] == "cancelled" and 1 <= result["frames"] < 12
    assert 100 not in stopped["percents"] and len(stopped["previews"]) == result["frames"]
    kept = Path(result["depth_ndjson"][0]).read_text().splitlines()  # the frames done are kept, to resume
    assert len(kept) == result["frames"]


def test_the_entry_point_lookup_finds_this_engine(opted_in):
    done = opted_in["entry point"]
    assert done.returncode == 0 and done.stdout.strip() == "annolid_depth.runner", done.stderr


@pytest.mark.parametrize("case, line", [
    ("engine does not load", "this engine did not load (ModuleNotFoundError: import of annolid_depth.runner halted; "
                             "None in sys.modules)"),
    ("another Annolid API", "parameter 5 is 'crop' in Annolid's engine and 'max_res' in this one"),
])
def test_annolid_keeps_its_own_engine_with_one_line(opted_in, case, line):
    done = opted_in[case]
    assert done.returncode == 0 and done.stdout.strip() == "annolid.depth.run"
    assert done.stderr.splitlines() == [PREFER + line]


def test_with_this_package_gone_the_patched_annolid_runs_its_own_engine_silently(opted_in):
    done = opted_in["uninstalled"]
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "annolid.depth.run", "")


def test_the_readmes_repair_restores_annolids_files_and_its_opencv(opted_in):
    assert {"annolid/gui/app.py", "annolid/depth/download_weights.py", "cv2/version.py"} <= set(opted_in["damaged"])
    assert all(done.returncode == 0 for done in opted_in["repair"]), [done.stderr for done in opted_in["repair"]]
    assert opted_in["repaired"] == []  # the patch and the edited run.py undone too
