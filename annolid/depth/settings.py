"""Depth options, their defaults, and the `video_depth_anything` section of ~/.labelmerc.

The config file is shared with other programs (LabelMe, the Annolid GUI), so saving only
touches this section: every other section, and keys in this section that this version does
not know, are written back as they were. Only the file's comments are lost (PyYAML drops them).
"""
from __future__ import annotations

import math
import numbers
import os
import re
import tempfile
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

SECTION = "video_depth_anything"
ENCODERS = ("vits", "vitb", "vitl")
PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("torch", "auto", "onnxruntime", "openvino")
POINT_CLOUD_FORMATS = ("csv", "ply")
PATCH_SIZE = 14
ALIASES = {"max_len": "max_frames"}  # the reference scripts' name


@dataclass
class DepthSettings:
    """Every option of a depth run, with its default."""

    encoder: str = "vits"
    metric: bool = False
    input_size: int = 518
    max_res: int = 1280
    target_fps: float = -1
    max_frames: int = -1
    streaming: bool = True
    fp32: bool = False
    precision: str = ""  # empty: fp32 on a CPU, fp16 on a GPU (fp32 there with fp32=True)
    grayscale: bool = False
    save_depth_video: bool = False
    save_depth_frames: bool = False
    save_point_clouds: bool = False
    point_cloud_format: str = "csv"
    save_npz: bool = False
    save_exr: bool = False
    include_region_labels: bool = False
    output_dir: str = ""  # empty: next to the video; see default_output_dir
    focal_length_x: float = 470.4
    focal_length_y: float = 470.4
    checkpoint_root: str = ""  # empty: the package's checkpoints folder
    device: str = ""  # empty: cuda, then mps, then cpu
    backend: str = "torch"  # auto: the fastest installed CPU runtime (see engine.backends)

    def validate(self) -> None:
        """Raise ValueError for the first option that is out of range or of the wrong type."""
        for field in fields(self):
            check_option(field.name, getattr(self, field.name))

    def run_kwargs(self) -> dict:
        """Keyword arguments for `run_video_depth_anything`, empty strings as None.

        `output_dir` is left out: here it is the root that gets one `<stem>/` folder per
        video, while the runner's `output_dir` is the exact folder. Pass
        `default_output_dir(video, settings.output_dir)`, or nothing to let the runner
        resolve it from the config file.
        """
        return {
            name: (None if value == "" else value)
            for name, value in asdict(self).items()
            if name != "output_dir"
        }


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(value) -> bool:
    return _is_number(value) and value > 0


_RULES = {
    "encoder": (lambda v: v in ENCODERS, "one of " + ", ".join(ENCODERS)),
    "input_size": (
        lambda v: _is_int(v) and v > 0 and v % PATCH_SIZE == 0,
        f"a positive multiple of {PATCH_SIZE} (e.g. 518)",
    ),
    "max_res": (
        lambda v: _is_int(v) and (v == -1 or v >= PATCH_SIZE),
        f"-1 (no limit) or an integer >= {PATCH_SIZE}",
    ),
    "target_fps": (lambda v: _is_number(v) and (v == -1 or v > 0), "-1 (every frame) or a number > 0"),
    "max_frames": (lambda v: _is_int(v) and (v == -1 or v >= 1), "-1 (all frames) or an integer >= 1"),
    "point_cloud_format": (lambda v: v in POINT_CLOUD_FORMATS, "one of " + ", ".join(POINT_CLOUD_FORMATS)),
    "precision": (lambda v: v == "" or v in PRECISIONS, '"" (automatic) or one of ' + ", ".join(PRECISIONS)),
    "backend": (lambda v: v in BACKENDS, "one of " + ", ".join(BACKENDS)),
    "focal_length_x": (_positive_number, "a number of pixels > 0"),
    "focal_length_y": (_positive_number, "a number of pixels > 0"),
    "device": (
        lambda v: isinstance(v, str) and re.fullmatch(r"(cpu|mps|cuda(:\d+)?)?", v) is not None,
        '"" (automatic), cpu, cuda, cuda:N or mps',
    ),
}
_TYPE_RULES = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "a string (empty for the default)"),
}
_FIELD_TYPES = typing.get_type_hints(DepthSettings)


def check_option(name: str, value) -> None:
    """Raise ValueError naming the option, the bad value and what is accepted."""
    accepts, accepted = _RULES.get(name) or _TYPE_RULES[_FIELD_TYPES[name]]
    if not accepts(value):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


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

    Unknown keys are ignored; a value of the wrong type or out of range is an error that
    names the key and the file, so a typo never silently falls back to a default.
    """
    path = Path(path) if path else config_path()
    section = _section(_read_config(path), path)
    values = {}
    for key, value in section.items():
        name = ALIASES.get(key, key)
        if name not in _FIELD_TYPES or (key != name and name in section):
            continue  # unknown, or an alias next to its own name (the name wins)
        if value is None and _FIELD_TYPES[name] is str:
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
