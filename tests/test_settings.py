"""DepthSettings and the video_depth_anything section of ~/.labelmerc, on real files."""
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from annolid_depth.settings import (
    DepthSettings,
    config_path,
    default_output_dir,
    load_settings,
    save_settings,
)

DEFAULTS = {
    "encoder": "vits",
    "metric": False,
    "input_size": 518,
    "max_res": 1280,
    "target_fps": -1,
    "max_frames": -1,
    "streaming": True,
    "fp32": False,
    "precision": "",
    "grayscale": False,
    "save_depth_video": False,
    "save_depth_frames": False,
    "save_point_clouds": False,
    "point_cloud_format": "csv",
    "point_cloud_stride": 1,
    "point_cloud_voxel": 0.0,
    "save_npz": False,
    "save_exr": False,
    "include_region_labels": False,
    "save_region_stats": False,
    "output_dir": "",
    "focal_length_x": 470.4,
    "focal_length_y": 470.4,
    "checkpoint_root": "",
    "device": "",
    "backend": "auto",
}

# The Configuration example of the user documentation, verbatim.
DOCUMENTED_EXAMPLE = """\
video_depth_anything:
  encoder: vits
  streaming: true
  target_fps: 15
  max_res: 1280
  save_depth_video: false
  save_depth_frames: false
  save_point_clouds: false
  output_dir: /path/to/depth_outputs
"""

OTHER_PROGRAMS = """\
auto_save: true
shortcuts:
  close: Ctrl+W
  open: [Ctrl+O, Ctrl+Shift+O]
label_colors:
  mouse: [255, 0, 0]
"""


def test_defaults():
    settings = DepthSettings()
    assert asdict(settings) == DEFAULTS
    assert list(asdict(settings)) == list(DEFAULTS)
    settings.validate()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("encoder", "vitx", "encoder must be one of vits, vitb, vitl, got 'vitx'"),
        ("input_size", 0, "input_size must be an integer from 1 to 2044 (518 is the trained size), got 0"),
        ("input_size", 70.5, "input_size must be an integer from 1 to 2044 (518 is the trained size), got 70.5"),
        ("input_size", 4000, "input_size must be an integer from 1 to 2044 (518 is the trained size), got 4000"),
        ("max_res", "1280", "max_res must be an integer > 0, or -1 (no limit), got '1280'"),
        ("target_fps", float("nan"), "target_fps must be a number > 0, or -1 (every frame), got nan"),
        ("max_frames", True, "max_frames must be an integer > 0, or -1 (all frames), got True"),
        ("streaming", "false", "streaming must be true or false, got 'false'"),
        ("focal_length_x", 0.0, "focal_length_x must be a number of pixels > 0, got 0.0"),
        ("focal_length_y", -1, "focal_length_y must be a number of pixels > 0, got -1"),
        ("point_cloud_format", "las", "point_cloud_format must be one of csv, ply, got 'las'"),
        ("point_cloud_stride", 0, "point_cloud_stride must be an integer >= 1 (1: every pixel), got 0"),
        ("point_cloud_stride", -2, "point_cloud_stride must be an integer >= 1 (1: every pixel), got -2"),
        ("point_cloud_stride", 2.5, "point_cloud_stride must be an integer >= 1 (1: every pixel), got 2.5"),
        ("point_cloud_voxel", -0.01, "point_cloud_voxel must be a size >= 0 in the point clouds' unit (0: off), got -0.01"),
        ("point_cloud_voxel", "1cm", "point_cloud_voxel must be a size >= 0 in the point clouds' unit (0: off), got '1cm'"),
        ("device", "gpu", "device must be \"\" (automatic), cpu, cuda, cuda:N or mps, got 'gpu'"),
        ("precision", "fp8", "precision must be \"\" (automatic) or one of fp32, bf16, fp16, got 'fp8'"),
        ("device", "cuda:", "device must be \"\" (automatic), cpu, cuda, cuda:N or mps, got 'cuda:'"),
        ("streaming", "yes", "streaming must be true or false, got 'yes'"),
        ("backend", "tensorrt", "backend must be one of auto, torch, onnxruntime, openvino, got 'tensorrt'"),
        ("output_dir", None, "output_dir must be a string (empty for the default), got None"),
    ],
)
def test_validate_names_field_value_and_accepted_values(field, value, message):
    with pytest.raises(ValueError) as caught:
        DepthSettings(**{field: value}).validate()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "changes",
    [
        {"device": "cuda:1", "target_fps": 7.5, "max_res": -1, "input_size": 364},
        {"input_size": 500, "max_res": 0, "target_fps": 0, "max_frames": 0},  # Annolid's "off" is 0
        {"input_size": 64, "max_res": 10, "target_fps": -2, "max_frames": -5},
        {"device": "mps", "encoder": "vitl", "point_cloud_format": "ply", "max_frames": 1, "max_res": 14},
        {"device": "cpu", "encoder": "vitb"},
        {"point_cloud_stride": 4, "point_cloud_voxel": 0.02},
        {"point_cloud_stride": 1, "point_cloud_voxel": 1},  # a whole number of metres is a size too
    ],
)
def test_validate_accepts_values_in_range(changes):
    DepthSettings(**changes).validate()


def test_config_path(_isolated_home, monkeypatch, tmp_path):
    monkeypatch.delenv("ANNOLID_CONFIG", raising=False)
    assert config_path() == _isolated_home / ".labelmerc"
    monkeypatch.setenv("ANNOLID_CONFIG", str(tmp_path / "annolid.yaml"))
    assert config_path() == tmp_path / "annolid.yaml"


def test_missing_file_or_section_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("ANNOLID_CONFIG", raising=False)
    assert load_settings() == DepthSettings()
    config = tmp_path / "labelmerc"
    config.write_text(OTHER_PROGRAMS)
    assert load_settings(config) == DepthSettings()
    config.write_text("")
    assert load_settings(config) == DepthSettings()
    config.write_text("video_depth_anything:\n")
    assert load_settings(config) == DepthSettings()


def test_documented_example_loads(_isolated_home, monkeypatch):
    monkeypatch.delenv("ANNOLID_CONFIG", raising=False)
    (_isolated_home / ".labelmerc").write_text(OTHER_PROGRAMS + DOCUMENTED_EXAMPLE)
    assert load_settings() == DepthSettings(target_fps=15, output_dir="/path/to/depth_outputs")


def test_aliases_unknown_keys_and_empty_values(tmp_path):
    config = tmp_path / "labelmerc"
    config.write_text(
        "video_depth_anything:\n  max_len: 40\n  future_option: 3\n  checkpoint_root:\n  device: cuda:0\n"
    )
    assert load_settings(config) == DepthSettings(max_frames=40, device="cuda:0")
    config.write_text("video_depth_anything:\n  max_len: 40\n  max_frames: 8\n")
    assert load_settings(config).max_frames == 8


@pytest.mark.parametrize(
    "line, message",
    [
        ("streaming: 'yes'", "streaming must be true or false, got 'yes'"),
        ("max_res: big", "max_res must be an integer > 0, or -1 (no limit), got 'big'"),
        ("encoder: vitx", "encoder must be one of vits, vitb, vitl, got 'vitx'"),
        ("output_dir: 3", "output_dir must be a string (empty for the default), got 3"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path, line, message):
    config = tmp_path / "labelmerc"
    config.write_text(f"video_depth_anything:\n  {line}\n")
    with pytest.raises(ValueError) as caught:
        load_settings(config)
    assert str(caught.value) == f"{config}: video_depth_anything.{message}; fix or delete that line"


def test_a_file_that_does_not_parse_names_the_file_and_line(tmp_path):
    config = tmp_path / "labelmerc"
    config.write_text("auto_save: true\nvideo_depth_anything:\n  encoder: [vits\n  streaming: true\n")
    with pytest.raises(ValueError, match=rf"^{config} is not valid YAML \(line 4: "):
        load_settings(config)
    config.write_text("video_depth_anything: 3\n")
    with pytest.raises(ValueError, match=f"^{config}: video_depth_anything should be a mapping"):
        load_settings(config)
    config.write_text("- a list\n")
    with pytest.raises(ValueError, match=f"^{config} should hold a mapping of sections"):
        load_settings(config)


def test_save_keeps_other_sections_and_unknown_keys(tmp_path):
    config = tmp_path / "labelmerc"
    config.write_text(OTHER_PROGRAMS + "video_depth_anything:\n  future_option: [1, 2]\n  max_len: 9\n")
    os.chmod(config, 0o640)
    settings = DepthSettings(encoder="vitb", save_npz=True, max_frames=25, output_dir="/data/depth")
    assert save_settings(settings, config) == config
    document = yaml.safe_load(config.read_text())
    assert {key: document[key] for key in ("auto_save", "shortcuts", "label_colors")} == yaml.safe_load(OTHER_PROGRAMS)
    assert document["video_depth_anything"] == {"future_option": [1, 2], **asdict(settings)}
    assert load_settings(config) == settings
    assert config.stat().st_mode & 0o777 == 0o640
    assert sorted(path.name for path in tmp_path.iterdir()) == ["labelmerc"]  # no temporary file left
    save_settings(DepthSettings(), config)
    assert load_settings(config) == DepthSettings()
    assert yaml.safe_load(config.read_text())["video_depth_anything"]["future_option"] == [1, 2]


def test_save_creates_the_default_file(_isolated_home, monkeypatch):
    monkeypatch.delenv("ANNOLID_CONFIG", raising=False)
    assert save_settings(DepthSettings(streaming=False)) == _isolated_home / ".labelmerc"
    assert load_settings() == DepthSettings(streaming=False)


def test_save_follows_a_symlinked_config(tmp_path):
    real = tmp_path / "dotfiles" / "labelmerc"
    real.parent.mkdir()
    real.write_text(OTHER_PROGRAMS)
    link = tmp_path / ".labelmerc"
    link.symlink_to(real)
    save_settings(DepthSettings(grayscale=True), link)
    assert link.is_symlink()
    assert load_settings(real) == DepthSettings(grayscale=True)


def test_save_refuses_invalid_settings_and_unparseable_files(tmp_path):
    config = tmp_path / "labelmerc"
    broken = "auto_save: true\nshortcuts: {close: [\n"
    config.write_text(broken)
    with pytest.raises(ValueError, match="is not valid YAML"):
        save_settings(DepthSettings(), config)
    assert config.read_text() == broken
    with pytest.raises(ValueError, match="encoder must be"):
        save_settings(DepthSettings(encoder="big"), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_default_output_dir():
    assert default_output_dir("videos/mice.mp4") == Path("videos/mice")
    assert default_output_dir(Path("/data/videos/mice.avi"), "") == Path("/data/videos/mice")
    assert default_output_dir("videos/mice.mp4", "/data/depth") == Path("/data/depth/mice")
    assert default_output_dir("videos/mice.mp4", "~/depth") == Path.home() / "depth" / "mice"


def test_arguments_are_the_run_options_as_they_are():
    settings = DepthSettings(encoder="vitl", max_frames=10, output_dir="/data/depth", checkpoint_root="/weights")
    expected = {**DEFAULTS, "encoder": "vitl", "max_frames": 10, "checkpoint_root": "/weights"}
    del expected["output_dir"]  # the runner's output_dir is the exact folder, not this root
    assert settings.arguments() == expected
    assert DepthSettings.from_arguments(settings.arguments()) == DepthSettings(encoder="vitl", max_frames=10,
                                                                                checkpoint_root="/weights")


def test_identity_leaves_out_how_a_run_goes():
    assert set(DEFAULTS) - set(DepthSettings().identity()) == {"output_dir", "checkpoint_root", "device", "fp32",
                                                                "precision", "backend"}


def test_from_arguments_takes_annolids_names_none_and_paths():
    assert DepthSettings.from_arguments({"max_len": 12, "max_frames": None}).max_frames == 12
    assert DepthSettings.from_arguments({"max_len": 12, "max_frames": 5}).max_frames == 5
    made = DepthSettings.from_arguments({"checkpoint_root": Path("/w"), "device": None, "input_video": "v.mp4",
                                         "output_dir": "/exact/folder", "progress_callback": print})
    assert made == DepthSettings(checkpoint_root="/w")  # not options: the video, the folder, the callbacks
    with pytest.raises(ValueError, match="metric must be true or false, got None"):
        DepthSettings.from_arguments({"metric": None})


def test_off_values_normalise_to_minus_one():
    settings = DepthSettings(max_res=0, target_fps=0, max_frames=-7).normalized()
    assert (settings.max_res, settings.target_fps, settings.max_frames) == (-1, -1, -1)
    assert DepthSettings(max_res=900).normalized().max_res == 900


def test_unknown_keys_warn_with_the_closest_name(tmp_path, caplog):
    config = tmp_path / "labelmerc"
    config.write_text("video_depth_anything:\n  encodr: vitb\n")
    assert load_settings(config) == DepthSettings()
    assert "encodr" in caplog.text and "did you mean encoder?" in caplog.text


def test_a_config_that_is_not_utf8_names_the_file(tmp_path):
    config = tmp_path / "labelmerc"
    config.write_bytes(b"video_depth_anything:\n  output_dir: /caf\xe9\n")
    with pytest.raises(ValueError, match=f"^{config} is not UTF-8 text"):
        load_settings(config)
