"""Progress a person can trust: rates from this run's own frames after the first group, the
model's load as a step of its own, and on a CPU what the run costs and what makes it faster."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cut_clip

from annolid_depth import progress, run_video_depth_anything
from annolid_depth.progress import Rate, cost, expected

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"input_size": 56, "max_res": 128, "backend": "torch"}


@pytest.fixture
def cancelled(tmp_path, media_clip, weights_dir):
    """A 20-frame clip whose streaming run was cancelled after its first two groups (9 frames)."""
    clip = cut_clip(media_clip, tmp_path / "clip.mp4", 20)
    seen = []
    result = run_video_depth_anything(clip, tmp_path / "out", checkpoint_root=weights_dir, frame_callback=seen.append,
                                      should_cancel=lambda: len(seen) >= 2, **SMALL)
    assert result["status"] == "cancelled" and result["frames"] == 9
    return clip


class Clock:
    """A clock that moves one second each time it is read."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_resumed_run_counts_only_its_own_frames_after_its_first_group(cancelled, tmp_path, weights_dir):
    payloads, stages = [], []
    run_video_depth_anything(cancelled, tmp_path / "out", checkpoint_root=weights_dir, resume=True,
                             frame_callback=payloads.append, stage_callback=stages.append, **SMALL)
    assert [p["frames_done"] for p in payloads] == list(range(10, 21))
    assert [p["frames_computed"] for p in payloads] == list(range(1, 12))
    assert [p["frames_computed"] for p in payloads if p["group_end"]] == [8, 11]
    assert [s["stage"] for s in stages] == ["loading", "running"]
    assert {k: stages[0][k] for k in ("encoder", "device", "backend", "precision", "input_size", "frames_total", "frames_done")} == {
        "encoder": "vits", "device": "cpu", "backend": "torch", "precision": "fp32", "input_size": 56,
        "frames_total": 20, "frames_done": 9}
    assert stages[1]["load_s"] >= 0

    rate = Rate(Clock())  # read once per group end: the first at 101 s, the second at 102 s
    texts = []
    for payload in payloads:
        rate.update(payload)
        texts.append(rate.text())
    assert texts[:8] == ["measuring speed"] * 8  # the first group (8 frames) starts the clock
    assert rate.per_second == 3.0  # the 3 frames of the second group in its one second, not 11 frames or 20
    assert texts[-1] == "3.00 frames/s, 0:00 left"


def test_the_time_left_counts_the_frames_still_to_do():
    rate = Rate(Clock())
    for computed, end in [(1, True), (2, False), (9, True)]:
        rate.update({"frames_done": 40 + computed, "frames_total": 100, "frames_computed": computed, "group_end": end})
    assert rate.per_second == 8.0 and rate.seconds_left() == 51 / 8
    assert rate.text() == "8.00 frames/s, 0:06 left"
    assert expected(rate) == "about 0:06 more at 8.00 frames/s"


def test_the_cost_on_a_cpu_names_what_makes_it_faster(monkeypatch):
    facts = {"encoder": "vits", "device": "cpu", "backend": "torch", "precision": "fp32", "input_size": 518,
             "frames_total": 70, "frames_done": 0}
    monkeypatch.setattr(progress, "fast_runtime_installed", lambda: False)
    assert cost(facts) == ("70 frames at input size 518 on the CPU (vits, torch, fp32); this takes a while; faster: "
                           "--input-size 252, --target-fps 5 (fewer frames), "
                           "the compiled runtime (pip install 'annolid-depth[fast]')")
    monkeypatch.setattr(progress, "fast_runtime_installed", lambda: True)
    assert cost({**facts, "backend": "openvino", "frames_done": 12}) == (
        "58 frames (from frame 12 on) at input size 518 on the CPU (vits, openvino, fp32); this takes a while; "
        "faster: --input-size 252, --target-fps 5 (fewer frames)")
    assert cost({**facts, "device": "cuda"}) is None


def test_the_cli_says_the_cost_then_the_load_then_shows_this_runs_rate(cancelled, tmp_path, weights_dir):
    done = subprocess.run(
        [sys.executable, "-m", "annolid_depth", str(cancelled), "--output-dir", str(tmp_path / "out"), "--resume",
         "--checkpoint-root", str(weights_dir), "--input-size", "56", "--max-res", "128", "--backend", "torch"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in re.split(r"[\r\n]+", done.stderr) if line.strip()]
    assert lines[0].startswith("annolid-depth: clip.mp4: 11 frames (from frame 9 on) at input size 56 on the CPU "
                               "(vits, torch, fp32); this takes a while; faster: --target-fps 5 (fewer frames)")
    assert lines[1] == "annolid-depth: clip.mp4: loading vits on cpu (torch, fp32)..."
    bars = [line for line in lines if line.startswith("clip.mp4:")]
    assert re.fullmatch(r"clip\.mp4:  45%\|.*\| 9/20 \[00:00, measuring speed\]", bars[0]), bars[0]  # where it resumed
    assert re.fullmatch(r"clip\.mp4: 100%\|.*\| 20/20 \[\d\d:\d\d, [\d.]+ frames/s, 0:00 left\]", bars[-1]), bars[-1]
    assert any(re.fullmatch(r"annolid-depth: clip\.mp4: about \d+:\d\d more at [\d.]+ frames/s", line) for line in lines)
    assert lines[-1] == (f"annolid-depth: the depth is in {tmp_path / 'out'}/depth.ndjson (run.json describes the run); "
                         f"see it with annolid-depth-gui {cancelled}, or add --save-depth-video for a depth video beside it")
    assert "Traceback" not in done.stderr
