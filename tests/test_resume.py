"""Runs that survive: one run per folder, exact resume after a cancel, an error or kill -9,
a lock against a second process, a full disk, damaged videos."""
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import MEDIA_CLIP, wait_for

from annolid_depth import run_video_depth_anything, runner
from annolid_depth.errors import OutputError
from annolid_depth.io.records import decode_depth, iter_records
from annolid_depth.io.sinks import Sink

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 30  # windows start at 0 and 22: a resume point after the first
SMALL = {"input_size": 28, "max_res": 128, "max_frames": FRAMES}
OUTPUTS = {"save_depth_video": True, "save_depth_frames": True, "save_point_clouds": True, "save_npz": True,
           "save_exr": True}
FLAGS = ["--input-size", "28", "--max-res", "128", "--max-frames", str(FRAMES), "--save-depth-video",
         "--save-depth-frames", "--save-point-clouds", "--save-npz", "--save-exr", "--quiet"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if not MEDIA_CLIP.exists():
        pytest.skip(f"test clip not found at {MEDIA_CLIP}")
    target = tmp_path_factory.mktemp("videos") / "mice.mp4"
    target.write_bytes(MEDIA_CLIP.read_bytes())
    return target


@pytest.fixture(scope="module")
def uninterrupted(clip, weights_dir, tmp_path_factory):
    """One complete run per mode, the yardstick of every resumed one."""
    runs = {}
    for streaming in (True, False):
        out = tmp_path_factory.mktemp("whole") / "out"
        run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=streaming, **SMALL, **OUTPUTS)
        runs[streaming] = out
    return runs


def assert_same_outputs(out: Path, reference: Path, frames: int = FRAMES) -> None:
    """Every output equals the uninterrupted run's: the same records in the same order, each
    depth within one quantisation step, the same files, and nothing else in the folder."""
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["frames_done"] == frames and record["resume_point"] is None
    ours, theirs = list(iter_records(out / "depth.ndjson")), list(iter_records(reference / "depth.ndjson"))
    assert [r["frame_index"] for r in ours] == [r["frame_index"] for r in theirs] == list(range(frames))
    for a, b in zip(ours, theirs):
        expected = decode_depth(b)
        step = float(expected.max() - expected.min()) / 65535
        assert np.abs(decode_depth(a) - expected).max() <= step * 1.01, a["frame_index"]
    with np.load(out / "mice_depths.npz") as a, np.load(reference / "mice_depths.npz") as b:
        np.testing.assert_array_equal(a["frame_indices"], b["frame_indices"])
        np.testing.assert_allclose(a["depths"], b["depths"], rtol=0, atol=2e-5 * float(b["depths"].max()))
    for folder in ("depth_frames", "point_clouds", "mice_depths_exr"):
        assert sorted(os.listdir(out / folder)) == sorted(os.listdir(reference / folder)), folder
    for name in ("depth_00000.png", "depth_00025.png", f"depth_{frames - 1:05d}.png"):
        a, b = (cv2.imread(str(root / "depth_frames" / name)).astype(int) for root in (out, reference))
        assert np.abs(a - b).max() <= 1, name
    a, b = (np.loadtxt(root / "point_clouds" / "point_0025.csv", delimiter=",", skiprows=1) for root in (out, reference))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    with av.open(str(out / "mice_vis.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames


def start_cli(clip, out, weights_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "annolid_depth", str(clip), "--output-dir", str(out),
                             "--checkpoint-root", str(weights_dir), *FLAGS, *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.parametrize("streaming, moment", [(True, "mid-window"), (False, "mid-window"), (False, "finishing")])
def test_kill_9_then_resume_gives_the_uninterrupted_outputs(clip, weights_dir, uninterrupted, tmp_path, streaming, moment):
    out = tmp_path / "out"
    proc = start_cli(clip, out, weights_dir, *([] if streaming else ["--no-streaming"]))
    if moment == "mid-window":
        wait_for(lambda: lines(out / "depth.ndjson.partial") >= 26, proc, "26 records")
    else:  # every record written: the video, npz and folders are being finished and published
        deadline = time.monotonic() + 120
        while lines(out / "depth.ndjson.partial") < FRAMES and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    record = json.loads((out / "run.json").read_text())
    if record["status"] == "complete":  # it finished before the kill: nothing to resume
        assert moment == "finishing"
    else:
        assert (out / "run.lock").exists()  # what a killed run leaves
        assert not (out / "depth.ndjson").exists() or record["status"] == "publishing"  # nothing unfinished under a final name

    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=streaming, resume=True,
                                      **SMALL, **OUTPUTS)
    assert result["status"] == "complete"
    assert_same_outputs(out, uninterrupted[streaming])


@pytest.mark.parametrize("streaming", [True, False])
def test_cancel_then_resume_recomputes_at_most_a_window(clip, weights_dir, uninterrupted, tmp_path, streaming):
    out = tmp_path / "out"
    cancelled = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=streaming,
                                         should_cancel=lambda: True, **SMALL, **OUTPUTS)
    assert cancelled["status"] == "cancelled" and 1 <= cancelled["frames"] < FRAMES
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "cancelled" and record["resume_point"]["frames"] == cancelled["frames"]
    seen = []
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=streaming, resume=True,
                                      frame_callback=lambda p: seen.append(p["frame_index"]), **SMALL, **OUTPUTS)
    assert seen == list(range(cancelled["frames"], FRAMES))  # nothing done twice
    assert result["status"] == "complete" and result["frames"] == FRAMES
    assert_same_outputs(out, uninterrupted[streaming])


def test_a_cancel_in_the_last_window_finishes_the_video(clip, weights_dir, uninterrupted, tmp_path):
    """Offline, 30 frames: windows at 0 and 22. A cancel during the second (last) window's
    frames finishes the frames it computed, which are the rest of the video: complete."""
    out = tmp_path / "out"
    asked = []
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=False,
                                      frame_callback=lambda p: asked.append(p["frame_index"]),
                                      should_cancel=lambda: bool(asked) and asked[-1] >= 25, **SMALL, **OUTPUTS)
    assert result["status"] == "complete" and result["frames"] == FRAMES and asked == list(range(FRAMES))
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert_same_outputs(out, uninterrupted[False])


class FailingSink(Sink):
    def name(self, info):
        return "failing.partial-test"

    def write(self, frame_index, payload):
        if frame_index == 26:
            raise RuntimeError("the sink broke")
        super().write(frame_index, payload)


@pytest.mark.parametrize("writers", [0, 1], ids=["sinks-on-the-network-thread", "sinks-on-a-writer-thread"])
def test_an_error_in_a_sink_leaves_a_resumable_run(writers, clip, weights_dir, uninterrupted, tmp_path, monkeypatch):
    """Also when the failing write runs behind the network (a spare core: beside a GPU, or
    torch on fewer threads than cores) and surfaces only after the last frame was computed."""
    monkeypatch.setattr(runner, "spare_cores", lambda device: writers)
    out = tmp_path / "out"
    real = runner.build_sinks
    monkeypatch.setattr(runner, "build_sinks", lambda info: [*real(info), FailingSink()])
    with pytest.raises(RuntimeError, match="the sink broke"):
        run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=False, **SMALL, **OUTPUTS)
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    monkeypatch.setattr(runner, "build_sinks", real)
    (out / "failing.partial-test.partial").unlink()
    run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=False, resume=True, **SMALL, **OUTPUTS)
    assert_same_outputs(out, uninterrupted[False])


class Ticking(runner.ResumeTimer):
    """A resume-point timer on a clock that moves half a second at every reading: due every few
    frames, so mostly in the middle of a group."""

    def __init__(self):
        ticks = itertools.count(0.0, 0.5)
        super().__init__(clock=lambda: next(ticks))


def test_a_resume_point_due_mid_group_is_taken_at_the_group_end(clip, weights_dir, tmp_path, monkeypatch):
    """In a stream one comes due between group ends (at input 28, frames 0-24 are one group;
    only a group's end can be resumed from): it is taken at the next end, not dropped with the
    interval started again (which left long runs without any)."""
    monkeypatch.setattr(runner, "ResumeTimer", Ticking)
    taken = []
    real_put = runner.ResumeSaver.put
    monkeypatch.setattr(runner.ResumeSaver, "put", lambda saver, state, *rest: (taken.append(state["frames"]),
                                                                                 real_put(saver, state, *rest)))
    result = run_video_depth_anything(clip, tmp_path / "out", checkpoint_root=weights_dir, streaming=True, **SMALL)
    assert result["status"] == "complete"
    assert taken == [25]


def test_resume_of_a_complete_run_is_instant(clip, weights_dir, uninterrupted, monkeypatch):
    out = uninterrupted[True]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    monkeypatch.setattr(runner, "load_model", lambda *a: pytest.fail("the model was loaded"))
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=True, resume=True,
                                      **SMALL, **OUTPUTS)
    assert result["status"] == "complete" and result["frames"] == FRAMES
    assert result["depth_ndjson"] == [str(out / "depth.ndjson")] and len(result["depth_frames"]) == FRAMES
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_changed_point_cloud_stride_is_another_run(clip, weights_dir, uninterrupted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(uninterrupted[True], out)
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=True, resume=True,
                                      point_cloud_stride=4, **SMALL, **OUTPUTS)
    assert result["status"] == "complete" and any("(point_cloud_stride 1 -> 4); starting over" in w for w in result["warnings"])
    assert json.loads((out / "run.json").read_text())["settings"]["point_cloud_stride"] == 4
    with np.load(out / "mice_depths.npz") as saved:
        depth = saved["depths"][25]
    usable = depth > 1e-6 * depth.max()
    _, rows = (out / "point_clouds" / "point_0025.csv").read_text().split("\n", 1)
    assert rows.count("\n") == usable[::4, ::4].sum() > (depth.size // 16) // 2  # every point of the 4-pixel grid, no other


def test_a_rerun_keeps_the_complete_result_until_it_completes(clip, weights_dir, tmp_path):
    out = tmp_path / "out"
    run_video_depth_anything(clip, out, checkpoint_root=weights_dir, save_npz=True, save_depth_frames=True, **SMALL)
    complete = (out / "depth.ndjson").read_bytes()
    cancelled = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, should_cancel=lambda: True,
                                         **{**SMALL, "max_frames": 20})
    assert cancelled["status"] == "cancelled"
    assert (out / "depth.ndjson").read_bytes() == complete  # the earlier complete result is intact
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "cancelled" and record["previous"]["status"] == "complete"
    # a re-run with fewer outputs: once complete, nothing of the earlier run is left beside it
    run_video_depth_anything(clip, out, checkpoint_root=weights_dir, **{**SMALL, "max_frames": 20})
    assert sorted(p.name for p in out.iterdir()) == ["depth.ndjson", "run.json"]
    assert len(list(iter_records(out / "depth.ndjson"))) == 20


def test_a_second_run_into_a_busy_folder_refuses(clip, weights_dir, tmp_path):
    out = tmp_path / "out"
    proc = start_cli(clip, out, weights_dir, "--max-frames", "70", "--input-size", "56")
    try:
        wait_for(lambda: (out / "run.lock").exists(), proc, "the lock")
        with pytest.raises(OutputError, match=rf"in use by another run \(process {proc.pid}"):
            run_video_depth_anything(clip, out, checkpoint_root=weights_dir, **SMALL)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    # the lock of a process that is gone is taken over
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, **SMALL, **OUTPUTS)
    assert result["status"] == "complete" and not (out / "run.lock").exists()


def test_sigterm_stops_like_ctrl_c_and_resumes(clip, weights_dir, tmp_path):
    """The whole clip (windows at 0, 22, 44, 66), so that when the first records are on disk
    the network has windows left, whether the outputs are written on its thread or beside it."""
    longer = {**SMALL, "max_frames": 70, "input_size": 56}
    whole = tmp_path / "whole"
    run_video_depth_anything(clip, whole, checkpoint_root=weights_dir, streaming=False, **longer, **OUTPUTS)
    out = tmp_path / "out"
    proc = start_cli(clip, out, weights_dir, "--no-streaming", "--max-frames", "70", "--input-size", "56")
    wait_for(lambda: lines(out / "depth.ndjson.partial") >= 5, proc, "5 records")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "cancelled" and record["resume_point"]["frames"] == record["frames_done"]
    assert 0 < record["frames_done"] < 70
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, streaming=False, resume=True,
                                      **longer, **OUTPUTS)
    assert result["status"] == "complete"
    assert_same_outputs(out, whole, frames=70)


@pytest.mark.parametrize("content", ["", "{not json", '{"format": 99, "status": "complete"}', "[1, 2]"])
def test_a_damaged_or_future_run_json_starts_afresh(clip, weights_dir, tmp_path, content, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(content)
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, **{**SMALL, "max_frames": 3})
    assert result["status"] == "complete" and result["frames"] == 3
    assert "starting afresh" in caplog.text


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 8 MiB (tmpfs; needs the right to mount, as root has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_keeps_the_complete_result_and_the_run_resumable(clip, weights_dir, small_disk):
    out = small_disk / "out"
    run_video_depth_anything(clip, out, checkpoint_root=weights_dir, **{**SMALL, "max_frames": 3})
    complete = (out / "depth.ndjson").read_bytes()
    ballast = small_disk / "ballast"  # fills the disk but for about 100 kB
    ballast.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - 100_000))
    with pytest.raises(OutputError, match=f"no space left on the device holding {out}"):
        run_video_depth_anything(clip, out, checkpoint_root=weights_dir, **SMALL)
    assert (out / "depth.ndjson").read_bytes() == complete  # never replaced by a cut file
    record = json.loads((out / "run.json").read_text())  # its last state: the disk may have taken no more
    assert record["status"] in ("running", "failed") and record["previous"]["status"] == "complete"
    ballast.unlink()  # space freed: go on
    result = run_video_depth_anything(clip, out, checkpoint_root=weights_dir, resume=True, **SMALL)
    assert result["status"] == "complete" and not result["warnings"]  # resumed, not started over
    assert [r["frame_index"] for r in iter_records(out / "depth.ndjson")] == list(range(FRAMES))


def size_changing_video(path: Path) -> Path:
    """An MPEG-TS stream whose frame size changes after 12 frames, as a camera that switched
    resolution: two encodings of the clip's frames at two sizes, one after the other."""
    parts = []
    for size in ((96, 64), (128, 64)):
        part = path.with_suffix(f".{size[0]}.ts")
        with av.open(str(part), "w", format="mpegts") as container:
            stream = container.add_stream("mpeg2video", rate=25)
            stream.width, stream.height = size
            for i in range(12):
                image = np.full((size[1], size[0], 3), 40 + 15 * i, np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        parts.append(part.read_bytes())
    path.write_bytes(b"".join(parts))
    return path


def test_a_frame_size_change_stops_there_with_a_warning(weights_dir, tmp_path):
    video = size_changing_video(tmp_path / "switch.ts")
    result = run_video_depth_anything(video, tmp_path / "out", checkpoint_root=weights_dir, input_size=28)
    assert result["status"] == "complete" and 10 <= result["frames"] <= 12  # the frames before the change
    assert len(result["warnings"]) == 1
    assert re.search(r"size changes from 96x64 to 128x64 at frame 1[0-2]; depth stops there", result["warnings"][0])


def test_a_truncated_video_is_processed_as_far_as_it_goes(weights_dir, tmp_path):
    """An MP4 whose index (moov, written first) states 40 frames, cut off halfway through its data."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 96, 64
        for i in range(40):
            image = np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    result = run_video_depth_anything(cut, tmp_path / "out", checkpoint_root=weights_dir, input_size=28)
    assert result["status"] == "complete" and 10 <= result["frames"] < 40
    assert len(result["warnings"]) == 1 and "header states 40" in result["warnings"][0]


def test_resume_points_are_written_beside_the_network_and_named_only_once_whole(clip, weights_dir, uninterrupted,
                                                                                tmp_path, monkeypatch):
    from annolid_depth.io.run_folder import RunFolder

    writers, named_while_writing = [], []
    save_state = RunFolder.save_state

    def watched(folder, state):
        writers.append(threading.current_thread().name)
        name = f"run.state.{state['frames']}.partial"
        named_while_writing.append(json.loads((folder.path / "run.json").read_text()).get("resume_point", {}) or {})
        written = save_state(folder, state)
        assert (folder.path / name).stat().st_size > 0
        return written

    monkeypatch.setattr(runner, "CHECKPOINT_MIN_S", 0.0)  # a resume point at every boundary
    monkeypatch.setattr(RunFolder, "save_state", watched)
    seen = []
    result = run_video_depth_anything(clip, tmp_path / "out", checkpoint_root=weights_dir, streaming=True,
                                      frame_callback=seen.append, should_cancel=lambda: len(seen) >= 20,
                                      **SMALL, **OUTPUTS)
    assert result["status"] == "cancelled" and len(writers) >= 2
    assert set(writers) == {"resume points"}  # never the network's thread
    frames = [json.loads((tmp_path / "out" / "run.json").read_text())["resume_point"]["frames"]]
    assert frames == [result["frames"]] and all(p.get("frames", 0) < frames[0] for p in named_while_writing)
    states = sorted(p.name for p in (tmp_path / "out").glob("run.state.*"))
    assert states == [f"run.state.{result['frames']}.partial"]  # the older ones removed once replaced
    assert 0 <= result["resume_points_s"] < result["elapsed_s"]
    run_video_depth_anything(clip, tmp_path / "out", checkpoint_root=weights_dir, streaming=True, resume=True,
                             **SMALL, **OUTPUTS)
    assert_same_outputs(tmp_path / "out", uninterrupted[True])
