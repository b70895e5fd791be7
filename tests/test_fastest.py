"""auto's choice on a CPU: a real timing of torch and OpenVINO on one encoder block, kept
per machine in the user's cache."""
import json
import sys
from pathlib import Path

import pytest
import torch

from annolid_depth.engine.backends import installed, pick_backend
from annolid_depth.engine.fastest import CHOICES, MARGIN, choice_key, fastest_backend
from annolid_depth.settings import user_cache

CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(not installed("openvino"), reason="needs OpenVINO (what auto may take)")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return user_cache(CHOICES)


@needs_openvino
def test_auto_times_both_once_and_keeps_the_answer(cache):
    chosen = pick_backend("auto", CPU, "fp32")
    entry = json.loads(cache.read_text())[choice_key("fp32", ["openvino"])]
    assert entry["backend"] == chosen
    ms = entry["ms"]
    assert set(ms) == {"torch", "openvino"} and all(t > 0 for t in ms.values())
    # a compiled runtime only when it is at least MARGIN faster than torch
    assert (chosen == "openvino") == (ms["openvino"] * MARGIN <= ms["torch"])
    other = {"torch": "openvino", "openvino": "torch"}[chosen]
    choices = {choice_key("fp32", ["openvino"]): {"backend": other, "ms": ms}}
    cache.write_text(json.dumps(choices))
    assert pick_backend("auto", CPU, "fp32") == other  # the kept answer, not a new timing
    assert json.loads(cache.read_text()) == choices


@needs_openvino
@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", json.dumps({"x": 1}), "keyed"])
def test_a_damaged_answer_is_timed_again(cache, damage):
    cache.parent.mkdir(parents=True)
    if damage == "keyed":  # an answer naming a backend that is not a candidate
        damage = json.dumps({choice_key("fp32", ["openvino"]): {"backend": "tensorrt"}})
    cache.write_text(damage)
    chosen = pick_backend("auto", CPU, "fp32")
    assert chosen in {"torch", "openvino"}
    assert json.loads(cache.read_text())[choice_key("fp32", ["openvino"])]["backend"] == chosen


def test_without_a_compiled_runtime_auto_runs_torch_without_timing(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    assert pick_backend("auto", CPU, "fp32") == "torch"
    assert pick_backend("auto", CPU, "bf16") == "torch"
    assert pick_backend("auto", torch.device("meta"), "fp32") == "torch"  # not a CPU: torch
    assert not cache.exists()
    assert fastest_backend("fp32", []) == "torch"


def test_an_unwritable_cache_only_means_timing_again(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert fastest_backend("fp32", ["openvino"] if installed("openvino") else []) in {"torch", "openvino"}
