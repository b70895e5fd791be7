"""Depth options, their defaults, and the `video_depth_anything` section of ~/.labelmerc.

The config file is shared with other programs (LabelMe, the Annolid GUI), so saving only
touches this section: every other section, and keys in this section that this version does
not know, are written back as they were. Only the file's comments are lost (PyYAML drops them).
"""
from __future__ import annotations

import difflib
import logging
import math
import numbers
import os
import re
import tempfile
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from .model.config import ENCODERS, PATCH

log = logging.getLogger(__name__)

SECTION = "video_depth_anything"
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
POINT_CLOUD_FORMATS = ("csv", "ply")
MAX_INPUT_SIZE = 2044  # 146 patches a side: a vitl window there already needs tens of GB
ALIASES = {"max_len": "max_frames"}  # the reference scripts' name
GROUPS = ("model", "sampling", "outputs", "camera", "advanced")  # how the GUI groups the options


@dataclass(frozen=True)
class Option:
    """Everything the API, the CLI, the settings file and the GUI say about one setting."""

    label: str  # the GUI's name for it
    help: str  # CLI help and GUI tooltip
    group: str
    choices: tuple = ()  # (value, text) pairs; the value alone where text is empty
    accepts: Callable[[object], bool] | None = None  # beyond the field's type and bounds
    accepted: str = ""  # what the option takes, in words, for error messages
    off: str = ""  # what any value <= 0 means (numbers only; Annolid's scripts pass 0 or -1)
    minimum: float | None = None  # numbers: the bounds taken, and the GUI field's
    maximum: float | None = None
    decimals: int = 1  # floats: the GUI field's
    identity: bool = True  # runs that differ in it are different runs (resume, skip); False: how, not what
    run_argument: bool = True  # run_video_depth_anything takes it (output_dir: there the exact folder)


def option(default, label: str, help: str, group: str, **details):
    return field(default=default, metadata={"option": Option(label, help, group, **details)})


@dataclass
class DepthSettings:
    """Every option of a depth run, with its default, label, help and rule (see `Option`)."""

    encoder: str = option("vits", "Encoder", "model size: vits (fast), vitb, vitl (best)", "model",
                          choices=tuple((e, "") for e in ENCODERS))
    metric: bool = option(False, "Metric depth (metres)",
                          "use the metric checkpoints (depth in metres) instead of relative disparity", "model")
    input_size: int = option(518, "Input size",
                             f"network input size for the short side, rounded to the {PATCH}-pixel patch grid "
                             "as the reference does (518 is the trained size)", "model",
                             minimum=1, maximum=MAX_INPUT_SIZE,
                             accepted=f"an integer from 1 to {MAX_INPUT_SIZE} (518 is the trained size)")
    max_res: int = option(1280, "Max resolution",
                          "downscale frames so the longer side is at most this many pixels", "sampling",
                          off="no limit")
    target_fps: float = option(-1, "Target FPS",
                               "process this many frames per second of video (every round(fps / target) "
                               "-th frame)", "sampling", off="every frame", decimals=2)
    max_frames: int = option(-1, "Max frames", "stop after this many processed frames", "sampling",
                             off="all frames")
    streaming: bool = option(True, "Streaming mode (recommended)",
                             "streaming mode (one frame at a time) instead of 32-frame windows", "model")
    fp32: bool = option(False, "Force FP32", "force FP32 on GPUs (default there: FP16)", "advanced", identity=False)
    precision: str = option("", "Precision",
                            "fp32, bf16 (CPUs with AVX512-BF16 or AMX: about twice as fast, about 1% of the "
                            "depth range off) or fp16 (GPUs); automatic: fp32 on CPUs, fp16 on GPUs", "advanced",
                            choices=(("", "automatic"), ("fp32", ""), ("bf16", ""), ("fp16", "fp16 (GPU)")), identity=False)
    grayscale: bool = option(False, "Grayscale (instead of inferno)",
                             "grayscale instead of the inferno colour map for the depth video and frames", "outputs")
    save_depth_video: bool = option(False, "Save depth video", "write <stem>_vis.mp4", "outputs")
    save_depth_frames: bool = option(False, "Save depth frames", "write depth_frames/depth_NNNNN.png", "outputs")
    save_point_clouds: bool = option(False, "Save point clouds",
                                     "write point_clouds/point_NNNN.csv (or .ply)", "outputs")
    point_cloud_format: str = option("csv", "Point cloud format", "point cloud file format", "outputs",
                                     choices=tuple((f, "") for f in POINT_CLOUD_FORMATS))
    point_cloud_stride: int = option(1, "Point cloud stride",
                                     "thin the point clouds to every Nth pixel in x and y: 2 keeps a quarter of "
                                     "the points (and of the file size), 4 a sixteenth; 1: every pixel", "outputs",
                                     minimum=1, accepted="an integer >= 1 (1: every pixel)")
    point_cloud_voxel: float = option(0.0, "Point cloud voxel size",
                                      "thin the point clouds to one point per cube of this edge (the cube's first "
                                      "pixel in image order), in the clouds' own unit: metres for metric models, "
                                      "the unit of z = 1 / disparity for relative ones; 0: no voxel grid", "outputs",
                                      minimum=0, decimals=4, accepted="a size >= 0 in the point clouds' unit (0: off)")
    save_npz: bool = option(False, "Save NPZ", "write <stem>_depths.npz", "outputs")
    save_exr: bool = option(False, "Save EXR", "write <stem>_depths_exr/ (needs the OpenEXR package)", "outputs")
    include_region_labels: bool = option(False, "Region labels in point clouds",
                                         "label point cloud points with Annolid's tracking shapes of the video "
                                         "(<video folder>/<stem>/)", "outputs")
    save_region_stats: bool = option(False, "Save depth per region (CSV and plot)",
                                     "write depth_regions.csv (depth statistics per tracked shape and frame, from "
                                     "Annolid's <video folder>/<stem>/ annotations) and its plot depth_regions.png",
                                     "outputs")
    output_dir: str = option("", "Output folder",
                             "folder for the outputs: <folder>/<video stem>/ (empty: next to the video, "
                             "in a folder named after it)", "outputs", identity=False, run_argument=False)
    focal_length_x: float = option(470.4, "Focal length x (px)", "focal length in pixels for point clouds", "camera",
                                   accepts=lambda v: v > 0, accepted="a number of pixels > 0")
    focal_length_y: float = option(470.4, "Focal length y (px)", "focal length in pixels for point clouds", "camera",
                                   accepts=lambda v: v > 0, accepted="a number of pixels > 0")
    checkpoint_root: str = option("", "Checkpoint folder",
                                  "folder with the .pth checkpoints (empty: the default checkpoint folder)", "advanced", identity=False)
    device: str = option("", "Device", "cpu, cuda, cuda:N or mps (empty: cuda, then mps, then cpu)", "advanced",
                         accepts=lambda v: re.fullmatch(r"(cpu|mps|cuda(:\d+)?)?", v) is not None,
                         accepted='"" (automatic), cpu, cuda, cuda:N or mps', identity=False)
    backend: str = option("auto", "Backend",
                          "what runs the network: auto (on a CPU torch, or OpenVINO where it is installed (pip install "
                          "'annolid-depth[fast]'), runs faster on this CPU and passes a self-check; torch on GPUs), "
                          "torch, or on a CPU a compiled runtime (onnxruntime, openvino; exported once, then cached)",
                          "advanced", choices=tuple((b, "") for b in BACKENDS), identity=False)

    def validate(self) -> None:
        """Raise ValueError for the first option that is out of range or of the wrong type."""
        for name in FIELDS:
            check_option(name, getattr(self, name))

    def normalized(self) -> DepthSettings:
        """Validated, with every "off" value (<= 0) written as -1, so equal runs compare equal."""
        self.validate()
        off = {name: -1 for name, o in OPTIONS.items() if o.off and getattr(self, name) <= 0}
        return replace(self, **off)

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, object]) -> DepthSettings:
        """The options among a call's arguments (`run_video_depth_anything`'s, the CLI's, a
        batch's), in one step, validated and normalised. Arguments that are not run options
        (the video, the callbacks, `output_dir`) are left out; an alias (Annolid's `max_len`)
        counts where its option is None; None for a text option is its empty value; a path
        becomes its string."""
        values = {name: arguments[name] for name in RUN_OPTIONS if name in arguments}
        for alias, name in ALIASES.items():
            if values.get(name) is None and alias in arguments:
                values[name] = arguments[alias]
            if name in values and values[name] is None:
                del values[name]
        for name, value in values.items():
            if value is None and FIELDS[name] is str:
                values[name] = ""
            elif isinstance(value, os.PathLike):
                values[name] = os.fspath(value)
        return cls(**values).normalized()

    def arguments(self) -> dict:
        """The run options as keyword arguments of `run_video_depth_anything`."""
        return {name: getattr(self, name) for name in RUN_OPTIONS}

    def identity(self) -> dict:
        """The options that make two runs of one video the same run (run.json's `settings`)."""
        return {name: getattr(self, name) for name, opt in OPTIONS.items() if opt.identity}


FIELDS = typing.get_type_hints(DepthSettings)  # name -> type, in declaration order
OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in fields(DepthSettings)}
RUN_OPTIONS = tuple(name for name, opt in OPTIONS.items() if opt.run_argument)
DEFAULT = DepthSettings()  # every option's default, written once: the runner's signature reads them here


def _has_type(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def accepted_values(name: str) -> str:
    """What an option takes, in words."""
    opt, kind = OPTIONS[name], FIELDS[name]
    if opt.choices:
        values = [value for value, _ in opt.choices]
        if values[0] == "":
            return '"" (automatic) or one of ' + ", ".join(values[1:])
        return "one of " + ", ".join(values)
    if opt.accepted:
        return opt.accepted
    if opt.off:
        what = "an integer" if kind is int else "a number"
        return f"{what} > 0, or -1 ({opt.off})"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string (empty for the default)"}[kind]


def check_option(name: str, value) -> None:
    """Raise ValueError naming the option, the bad value and what is accepted. Types are
    strict: `"false"` is not a bool and `70.5` is not an integer."""
    opt, kind = OPTIONS[name], FIELDS[name]
    ok = _has_type(value, kind)
    if ok and opt.choices:
        ok = value in [choice for choice, _ in opt.choices]
    if ok and opt.minimum is not None:
        ok = value >= opt.minimum
    if ok and opt.maximum is not None:
        ok = value <= opt.maximum
    if ok and opt.accepts is not None:
        ok = opt.accepts(value)
    if not ok:
        raise ValueError(f"{name} must be {accepted_values(name)}, got {value!r}")


def user_cache(*parts: str) -> Path:
    """A folder of this package's per-user files: `$XDG_CACHE_HOME/annolid/depth/...`
    (`~/.cache/...` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache, "annolid", "depth", *parts)


def config_path() -> Path:
    """~/.labelmerc, or the file named by $ANNOLID_CONFIG."""
    override = os.environ.get("ANNOLID_CONFIG")
    return Path(override).expanduser() if override else Path.home() / ".labelmerc"


def _read_config(path: Path) -> dict:
    """The whole config document ({} when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValueError(f"cannot read the config file {path} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 or move it away") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ValueError(f"{path} is not valid YAML ({where}{problem}); fix the file or move it away") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError(f"{path} should hold a mapping of sections, not a {type(document).__name__}; fix the file")
    return document


def _section(document: dict, path: Path) -> dict:
    section = document.get(SECTION)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: {SECTION} should be a mapping of options, not {section!r}")
    return section


def load_settings(path: str | Path | None = None) -> DepthSettings:
    """Settings from the config file; defaults for whatever it does not set.

    Unknown keys are ignored with a warning naming the closest known key; a value of the wrong type or out of range is an error that
    names the key and the file, so a typo never silently falls back to a default.
    """
    path = Path(path) if path else config_path()
    section = _section(_read_config(path), path)
    values = {}
    for key, value in section.items():
        name = ALIASES.get(key, key)
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            log.warning("%s: unknown setting %s.%s ignored%s", path, SECTION, key, hint)
            continue
        if key != name and name in section:
            continue  # an alias next to its own name: the name wins
        if value is None and FIELDS[name] is str:
            value = ""
        values[name] = value
    settings = DepthSettings(**values)
    try:
        settings.validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {SECTION}.{exc}; fix or delete that line") from None
    return settings


def save_settings(settings: DepthSettings, path: str | Path | None = None) -> Path:
    """Write `settings` into the config file's section and return the file's path.

    The file is replaced atomically (a temporary file in the same folder, then a rename), so
    a crash never leaves a half-written config. A symlinked config is updated at its target.
    A file that does not parse is left alone (ValueError) rather than overwritten.
    """
    settings.validate()
    path = Path(path) if path else config_path()
    target = path.resolve() if path.is_symlink() else path
    document = _read_config(target)
    section = dict(_section(document, target))
    for alias in ALIASES:
        section.pop(alias, None)
    section.update(asdict(settings))
    document[SECTION] = section
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yaml.safe_dump(document, stream, sort_keys=False, allow_unicode=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def default_output_dir(video_path: str | Path, output_dir_setting: str = "") -> Path:
    """Where a video's outputs go when no folder is given for the run.

    Empty setting: beside the video, named after its stem (`videos/mice.mp4` ->
    `videos/mice/`). Set: `<output_dir_setting>/<stem>`, so several videos sharing one
    configured folder do not overwrite each other.
    """
    video = Path(video_path)
    root = Path(output_dir_setting).expanduser() if output_dir_setting else video.parent
    return root / video.stem
