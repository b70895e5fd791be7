"""Checkpoint registry, downloads against a local Hub stand-in, and safe loading."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import huggingface_hub
import pytest
import torch
from fake_hub import PAYLOAD, VITS, leftovers
from parity_recipe import official_keys, recipe_state_dict
from safetensors.torch import save_file

from annolid_depth import weights
from annolid_depth.download_weights import main as download_main
from annolid_depth.errors import WeightsError
from annolid_depth.model import VideoDepthAnything
from annolid_depth.weights import (
    CHECKPOINTS,
    checkpoint_dir,
    checkpoint_key,
    checkpoint_path,
    download_checkpoint,
    ensure_checkpoint,
    get_checkpoint,
    load_weights,
    read_state_dict,
)

# --------------------------------------------------------------------------- registry and folders


def test_registry_names_repos_and_files():
    assert list(CHECKPOINTS) == [
        "video_depth_anything_vits", "video_depth_anything_vitb", "video_depth_anything_vitl",
        "metric_video_depth_anything_vits", "metric_video_depth_anything_vitb", "metric_video_depth_anything_vitl",
    ]
    assert CHECKPOINTS["video_depth_anything_vitb"].repo_id == "depth-anything/Video-Depth-Anything-Base"
    large = CHECKPOINTS["metric_video_depth_anything_vitl"]
    assert (large.repo_id, large.filename, large.encoder, large.metric) == (
        "depth-anything/Metric-Video-Depth-Anything-Large", "metric_video_depth_anything_vitl.pth", "vitl", True)
    assert large.url() == "https://huggingface.co/depth-anything/Metric-Video-Depth-Anything-Large/resolve/main/metric_video_depth_anything_vitl.pth"
    assert checkpoint_key("vits", metric=True) == "metric_video_depth_anything_vits"
    assert get_checkpoint(" Video_Depth_Anything_VITS.pth ") is VITS
    with pytest.raises(ValueError, match="vits, vitb, vitl"):
        checkpoint_key("vitg")
    with pytest.raises(ValueError, match="metric_video_depth_anything_vitl"):
        get_checkpoint("depth_anything_v2")


def test_folder_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("ANNOLID_DEPTH_CHECKPOINTS", str(tmp_path / "from_env"))
    assert checkpoint_dir() == tmp_path / "from_env"
    assert checkpoint_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert checkpoint_path("VIDEO_DEPTH_ANYTHING_VITS", tmp_path) == tmp_path / "video_depth_anything_vits.pth"

    monkeypatch.delenv("ANNOLID_DEPTH_CHECKPOINTS")
    assert checkpoint_dir() == weights.PACKAGE_CHECKPOINTS  # writable in a source checkout

    blocker = tmp_path / "a_file"  # the package folder cannot be created under a file
    blocker.write_text("")
    monkeypatch.setattr(weights, "PACKAGE_CHECKPOINTS", blocker / "checkpoints")
    user_dir = Path(os.environ["XDG_CACHE_HOME"]) / "annolid" / "depth" / "checkpoints"
    assert checkpoint_dir() == user_dir
    user_dir.mkdir(parents=True)
    (user_dir / VITS.filename).write_bytes(b"x")
    assert ensure_checkpoint("vits", download=False) == user_dir / VITS.filename


# --------------------------------------------------------------------------- downloads


def test_download_lands_in_place_once(hub):
    hub.serve(VITS, PAYLOAD)
    folder = Path(os.environ["ANNOLID_DEPTH_CHECKPOINTS"])
    path = ensure_checkpoint("vits")
    assert path == folder / "video_depth_anything_vits.pth"
    assert path.read_bytes() == PAYLOAD
    assert leftovers(folder) == [VITS.filename, f"{VITS.filename}.sha256"]  # no staging folder, no hub metadata
    seen = len(hub.requests)
    assert download_checkpoint("video_depth_anything_vits") == path
    assert ensure_checkpoint("vits") == path
    assert len(hub.requests) == seen  # present files cost no request at all


def test_explicit_root_wins_and_token_reaches_server(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_TOKEN", "hf_test_token_123")
    hub.token = "hf_test_token_123"
    entry = CHECKPOINTS["metric_video_depth_anything_vitb"]
    hub.serve(entry, PAYLOAD)
    path = ensure_checkpoint("vitb", metric=True, root=tmp_path / "mine")
    assert path == tmp_path / "mine" / entry.filename and path.read_bytes() == PAYLOAD
    assert hub.body_requests() and all(auth == "Bearer hf_test_token_123" for _, _, auth in hub.requests)


def test_refused_without_token_says_to_set_it(hub):
    hub.token = "needed"
    hub.serve(VITS, PAYLOAD)
    with pytest.raises(WeightsError, match="HTTP 401.*HF_HUB_TOKEN"):
        download_checkpoint(VITS.key)


def test_missing_on_server(hub):
    with pytest.raises(WeightsError, match="HTTP 404") as caught:
        download_checkpoint(VITS.key)
    assert f"{hub.url}/{VITS.repo_id}/resolve/main/{VITS.filename}" in str(caught.value)


def test_server_down_names_the_manual_route(monkeypatch, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    folder = tmp_path / "ckpt"
    with pytest.raises(WeightsError) as caught:
        ensure_checkpoint("vits", root=folder)
    message = str(caught.value)
    for part in (VITS.filename, VITS.repo_id, str(folder), f"http://127.0.0.1:{port}/{VITS.repo_id}/resolve/main/",
                 "python -m annolid_depth.download_weights --model video_depth_anything_vits"):
        assert part in message
    assert leftovers(folder) == []


def test_offline_mode_is_read_at_call_time(hub, monkeypatch):
    hub.serve(VITS, PAYLOAD)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        download_checkpoint(VITS.key)
    assert hub.requests == []
    # As if huggingface_hub had been imported while the variable was set, then it was unset.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert download_checkpoint(VITS.key).read_bytes() == PAYLOAD
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True  # the library's own setting is left as found


def test_no_final_file_while_downloading(hub, tmp_path):
    hub.serve(VITS, PAYLOAD)
    hub.hold = True
    result = {}
    worker = threading.Thread(target=lambda: result.update(path=download_checkpoint(VITS.key, tmp_path)))
    worker.start()
    assert hub.stalled.wait(10)
    assert not (tmp_path / VITS.filename).exists()
    hub.stall.set()
    worker.join(10)
    assert result["path"].read_bytes() == PAYLOAD


def test_connection_dropped_mid_body_leaves_nothing(hub, tmp_path):
    hub.serve(VITS, PAYLOAD)
    hub.cut_body_at = len(PAYLOAD) // 3
    with pytest.raises(WeightsError, match=VITS.filename):
        download_checkpoint(VITS.key, tmp_path)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- command line


def test_cli_list_shows_place_and_presence(tmp_path, capsys):
    (tmp_path / VITS.filename).write_bytes(b"x")
    assert download_main(["--list", "--dest", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows[VITS.key][1:] == ["vits", "relative", "~116", "MB", "present", str(tmp_path / VITS.filename)]
    vitl = rows["metric_video_depth_anything_vitl"]
    assert vitl[2] == "metric" and vitl[-2:] == ["missing", str(tmp_path / "metric_video_depth_anything_vitl.pth")]


def test_cli_list_as_documented():
    done = subprocess.run([sys.executable, "-m", "annolid.depth.download_weights", "--list"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert os.environ["ANNOLID_DEPTH_CHECKPOINTS"] in done.stdout
    assert all(key in done.stdout for key in CHECKPOINTS)


def test_cli_models_are_case_insensitive_and_repeatable(hub, tmp_path, capsys):
    metric = CHECKPOINTS["metric_video_depth_anything_vits"]
    hub.serve(VITS, PAYLOAD)
    hub.serve(metric, PAYLOAD[::-1])
    argv = ["--model", "VIDEO_Depth_Anything_vits", "--model", "metric_video_depth_anything_VITS",
            "--model", "video_depth_anything_vits", "--dest", str(tmp_path)]
    assert download_main(argv) == 0
    assert (tmp_path / VITS.filename).read_bytes() == PAYLOAD
    assert (tmp_path / metric.filename).read_bytes() == PAYLOAD[::-1]
    assert len(hub.body_requests()) == 2
    assert download_main(argv) == 0
    assert "already present" in capsys.readouterr().out
    assert len(hub.body_requests()) == 2


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        download_main(["--model", "video_depth_anything_vitg"])
    assert caught.value.code == 2
    assert "metric_video_depth_anything_vitb" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        download_main([])
    assert caught.value.code == 2


def test_cli_failed_download_exits_1_without_traceback(capsys, tmp_path):
    assert download_main(["--all", "--dest", str(tmp_path)]) == 1  # conftest keeps the Hub offline
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and str(tmp_path) in err and "Traceback" not in err


# --------------------------------------------------------------------------- loading


def shaped_state(encoder: str) -> dict[str, torch.Tensor]:
    """Right names and shapes at the cost of one number: every entry views the same scalar."""
    one = torch.zeros(())
    return {name: one.expand(shape) for name, shape in official_keys(encoder)}


@pytest.fixture(scope="module")
def vits_model():
    torch.manual_seed(0)
    return VideoDepthAnything("vits")


@pytest.fixture(scope="module")
def recipe_vits():
    return recipe_state_dict("vits")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_recipe_checkpoint_loads(suffix, tmp_path, vits_model, recipe_vits):
    path = tmp_path / f"video_depth_anything_vits{suffix}"
    if suffix == ".pth":
        torch.save(recipe_vits, path)
    else:
        save_file(recipe_vits, path)
    load_weights(vits_model, path)
    loaded = vits_model.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in recipe_vits.items())


def test_training_wrappers_are_unwrapped(tmp_path):
    state = {"a.weight": torch.ones(2), "b.bias": torch.zeros(1)}
    wrapped = {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3, "optimizer": {}}
    torch.save(wrapped, tmp_path / "trained.pth")
    assert read_state_dict(tmp_path / "trained.pth").keys() == state.keys()
    torch.save({"state_dict": state}, tmp_path / "lightning.ckpt")
    assert read_state_dict(tmp_path / "lightning.ckpt").keys() == state.keys()


@pytest.mark.parametrize("make, expected", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("<html>404: not found</html>\n"), "not a PyTorch checkpoint"),
    (lambda p: p.write_bytes(_saved({"w": torch.zeros(1000)})[:3000]), "truncated"),
    (lambda p: torch.save([torch.zeros(1)], p), "holds a list"),
    (lambda p: torch.save({"w": torch.zeros(1), "step": 3}, p), "step"),
])
def test_unreadable_files_are_named(make, expected, tmp_path):
    path = tmp_path / "video_depth_anything_vits.pth"
    make(path)
    with pytest.raises(WeightsError, match=expected) as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "video_depth_anything_vits.safetensors"
    save_file({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(WeightsError, match="safetensors") as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_pickled_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "payload": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match="could run code") as caught:
        read_state_dict(path)
    assert str(path) in str(caught.value)
    assert not marker.exists()


def test_wrong_encoder_is_named(tmp_path, vits_model):
    path = tmp_path / "video_depth_anything_vitb.pth"
    torch.save(shaped_state("vitb"), path)
    with pytest.raises(WeightsError, match="is a vitb checkpoint, but encoder vits was asked for") as caught:
        load_weights(vits_model, path)
    assert str(path) in str(caught.value)


def test_missing_and_unexpected_keys_are_listed(tmp_path, vits_model):
    state = shaped_state("vits")
    del state["head.scratch.output_conv2.2.weight"], state["pretrained.norm.bias"]
    state["head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as caught:
        load_weights(vits_model, path)
    message = str(caught.value)
    assert str(path) in message
    assert "2 missing keys" in message and "head.scratch.output_conv2.2.weight" in message
    assert "1 unexpected keys: head.extra.weight" in message


def _saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
