"""Batches: folders, lists, the report, the summary, exit codes, output folders; on this machine and on Ray."""
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import MEDIA_CLIP, copy_file, wait_for

from annolid_depth import batch, cli, run_video_depth_anything, runner
from annolid_depth.io.records import decode_depth, iter_records

SMALL = ["--input-size", "56", "--max-res", "160", "--quiet"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    handlers = logging.root.handlers[:]
    try:
        code = cli.main([*map(str, args), *SMALL])
    finally:
        logging.root.handlers[:] = handlers  # main's handler writes to this test's captured stderr
    out, err = capsys.readouterr()
    return code, out, err


def test_a_folder_goes_on_past_a_bad_video(folder, weights_dir, tmp_path, capsys):
    report = tmp_path / "report.jsonl"
    code, out, err = run_cli(capsys, folder, "--checkpoint-root", weights_dir, "--report", report)

    assert code == 1
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["path"], r["status"], r["frames"], r["output_dir"]) for r in lines] == [
        (str(folder / "a.mp4"), "complete", 3, str(folder / "a")),
        (str(folder / "broken.mp4"), "failed", None, str(folder / "broken")),
        (str(folder / "sub" / "b.mp4"), "complete", 4, str(folder / "sub" / "b")),
        (str(folder / "sub" / "c.mov"), "complete", 2, str(folder / "sub" / "c")),
    ]
    assert set(lines[0]) == {"path", "status", "frames", "seconds", "output_dir", "error"}
    assert lines[1]["error"].startswith(f"cannot read {folder / 'broken.mp4'} as a video")
    assert all(r["error"] is None and r["seconds"] > 0 for r in lines if r["status"] == "complete")
    assert [r["frame_index"] for r in iter_records(folder / "sub" / "b" / "depth.ndjson")] == [0, 1, 2, 3]
    assert f"annolid-depth: {folder / 'broken.mp4'}: cannot read" in err and "Traceback" not in err

    table = out.splitlines()
    assert table[0].split() == ["video", "status", "frames", "seconds", "output", "folder"]
    assert table[1].split()[:3] == [str(folder / "a.mp4"), "complete", "3"] and table[1].endswith(str(folder / "a"))
    assert table[2].split()[:2] == [str(folder / "broken.mp4"), "failed"] and table[2].endswith("(error above)")
    assert (out + err).count("cannot read") == 1  # the error once, on stderr as it happened
    assert table[-1] == "3 complete, 1 failed"

    code, _, _ = run_cli(capsys, folder / "a.mp4", "--checkpoint-root", weights_dir, "--report", report)
    assert code == 0
    assert len(report.read_text().splitlines()) == 5  # appended


def test_same_stems_into_one_output_folder_are_told_apart(clips, weights_dir, tmp_path, capsys):
    first = copy_file(clips[2], tmp_path / "day1" / "cage" / "mice.mp4")
    second = copy_file(clips[3], tmp_path / "day2" / "cage" / "mice.mp4")
    third = copy_file(clips[2], tmp_path / "day2" / "mice.avi")
    code, out, _ = run_cli(capsys, first, second, third, "--output-dir", tmp_path / "out", "--checkpoint-root", weights_dir)

    assert code == 0, out
    folders = {tmp_path / "out" / name: frames for name, frames in
               [("day1_cage_mice", 2), ("day2_cage_mice", 3), ("day2_mice", 2)]}
    for path, frames in folders.items():
        assert len(list(iter_records(path / "depth.ndjson"))) == frames
        assert str(path) in out  # the summary says where each went
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in folders)


def test_output_folder_rules(tmp_path):
    one = copy_text(tmp_path / "a" / "mice.mp4")
    other = copy_text(tmp_path / "b" / "mice.mp4")
    avi = copy_text(tmp_path / "a" / "mice.avi")
    assert batch.plan([one], tmp_path / "out") == [batch.Job(one, tmp_path / "out")]  # one video: the exact folder
    assert [j.output_dir for j in batch.plan([tmp_path / "a"], tmp_path / "out")] == [
        tmp_path / "out" / "a_mice_avi", tmp_path / "out" / "a_mice_mp4"
    ]
    assert [j.output_dir for j in batch.plan([one, other])] == [tmp_path / "a" / "mice", tmp_path / "b" / "mice"]
    copy_text(tmp_path / "a" / "mice" / "mice_vis.mp4")  # an earlier run's depth video is no input
    copy_text(tmp_path / "a" / "mice" / "run.json")
    copy_text(tmp_path / "a" / ".hidden" / "mice.mp4")
    assert [j.video for j in batch.plan([tmp_path])] == [avi, one, other]
    assert [j.output_dir for j in batch.plan([one, other, one, avi], "out")] == [
        Path("out/a_mice_mp4"), Path("out/b_mice"), Path("out/a_mice_avi")
    ]


def test_links_that_lead_nowhere_are_skipped_and_reported(folder, tmp_path, weights_dir, capsys):
    (folder / "self.mp4").symlink_to("self.mp4")  # a loop
    (folder / "gone.mp4").symlink_to(tmp_path / "moved-away.mp4")  # dangling
    report = tmp_path / "report.jsonl"
    code, out, err = run_cli(capsys, folder / "sub", folder / "self.mp4", folder, "--checkpoint-root", weights_dir,
                             "--report", report)
    lines = {r["path"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert lines[str(folder / "self.mp4")]["error"] == "is a symbolic link that loops back on itself; skipped"
    assert lines[str(folder / "gone.mp4")]["error"] == (f"is a symbolic link to {tmp_path / 'moved-away.mp4'}, "
                                                        "which does not exist; skipped")
    assert lines[str(folder / "sub" / "b.mp4")]["status"] == "complete"  # the batch went on
    assert lines[str(folder / "a.mp4")]["status"] == "complete" and "Traceback" not in err


def test_a_list_of_videos_with_a_byte_order_mark_or_another_encoding(folder, tmp_path, weights_dir, capsys):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{folder / 'a.mp4'}\n".encode())  # as Notepad saves UTF-8
    assert batch.read_list(listing) == [folder / "a.mp4"]
    listing.write_bytes("vidéo.mp4\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "--from-list", listing, "--checkpoint-root", weights_dir)
    assert code == 1
    assert f"the list of videos {listing} is not UTF-8 text (byte 4 is not); save it as UTF-8" in err and "Traceback" not in err


def copy_text(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stands in for a video: planning never opens it")
    return path


def test_missing_paths_and_empty_folders_are_reported(folder, tmp_path, weights_dir, capsys):
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "deeper" / "readme.txt").write_text("no videos here")
    listing = tmp_path / "list.txt"
    listing.write_text("# sessions\nvideos/a.mp4\n\nnope.mp4\n")
    code, out, err = run_cli(capsys, tmp_path / "empty", "--from-list", listing, "--checkpoint-root", weights_dir)

    assert code == 1
    assert f"annolid-depth: {tmp_path / 'empty'}: no video files (.mp4 .avi" in err
    assert f"annolid-depth: {tmp_path / 'nope.mp4'}: does not exist; check the path" in err
    rows = [line.split()[:2] for line in out.splitlines()[1:-1]]
    assert rows == [[str(tmp_path / "empty"), "failed"], [str(folder / "a.mp4"), "complete"], [str(tmp_path / "nope.mp4"), "failed"]]

    code, out, err = run_cli(capsys, tmp_path / "empty")
    assert code == 1 and "no video files" in err and "Traceback" not in err


def test_cancel_stops_the_batch_and_says_what_was_left(folder, weights_dir):
    seen, stages = [], []

    def progress(number, video, payload):
        if payload is not None and "stage" in payload:  # the model's load, before the video's frames
            stages.append((number, payload["stage"], payload["frames_total"]))
        else:
            seen.append((number, video.name) + (() if payload is None else (payload["frames_done"], payload["frames_total"])))

    records = batch.run_many([folder], checkpoint_root=weights_dir, input_size=56, max_res=160, progress=progress,
                             should_cancel=lambda: len(seen) >= 6)
    assert seen == [(0, "a.mp4"), (0, "a.mp4", 1, 3), (0, "a.mp4", 2, 3), (0, "a.mp4", 3, 3),
                    (1, "broken.mp4"), (2, "b.mp4"), (2, "b.mp4", 1, 4)]
    assert stages == [(0, "loading", 3), (0, "running", 3), (2, "loading", 4), (2, "running", 4)]
    assert [r["status"] for r in records] == ["complete", "failed", "cancelled", "not started"]


def test_bad_settings_fail_the_batch_before_any_video(folder, tmp_path):
    with pytest.raises(ValueError, match="encoder must be one of vits, vitb, vitl, got 'vitg'"):
        batch.run_many([folder], encoder="vitg", report=tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists() and not (folder / "a").exists()


def test_resume_skips_complete_videos_without_loading_the_model(folder, weights_dir, tmp_path):
    options = {"checkpoint_root": weights_dir, "input_size": 56, "max_res": 160}
    batch.run_many([folder / "a.mp4", folder / "sub"], **options)
    written = (folder / "a" / "depth.ndjson").stat().st_mtime_ns
    runner.load_model.cache_clear()
    records = batch.run_many([folder / "a.mp4", folder / "sub"], resume=True, **options)

    assert [(r["status"], r["frames"]) for r in records] == [("skipped", 3), ("skipped", 4), ("skipped", 2)]
    assert runner.load_model.cache_info().misses == 0
    assert (folder / "a" / "depth.ndjson").stat().st_mtime_ns == written


# ---------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray instance of this machine: 2 CPUs on 127.0.0.1, no dashboard, stopped after the module;
    a new one (`local`), never the cluster that test_cluster.py may be running beside it."""
    ray = pytest.importorskip("ray", reason="the Ray tests need the cluster extra: pip install 'annolid-depth[cluster]'")
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("ray-home"))  # the workers never see the real ~/.labelmerc
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    finally:
        os.environ["HOME"] = home
    yield ray
    ray.shutdown()


def test_a_folder_on_ray_then_resumed(cluster, folder, weights_dir, tmp_path, capsys):
    report = tmp_path / "report.jsonl"
    code, out, err = run_cli(capsys, folder, "--ray", "auto", "--cpus-per-worker", "1", "--report", report,
                             "--checkpoint-root", weights_dir)

    assert code == 1, err
    lines = sorted((json.loads(line) for line in report.read_text().splitlines()), key=lambda r: r["path"])
    assert [(r["path"], r["status"], r["frames"]) for r in lines] == [
        (str(folder / "a.mp4"), "complete", 3), (str(folder / "broken.mp4"), "failed", None),
        (str(folder / "sub" / "b.mp4"), "complete", 4), (str(folder / "sub" / "c.mov"), "complete", 2),
    ]
    assert "cannot read" in lines[1]["error"] and "as a video" in lines[1]["error"]
    assert lines[2]["output_dir"] == str(folder / "sub" / "b")  # where a run on this machine would write
    assert [r["frame_index"] for r in iter_records(folder / "sub" / "b" / "depth.ndjson")] == [0, 1, 2, 3]
    assert out.splitlines()[-1] == "3 complete, 1 failed"

    written = {p: (p / "depth.ndjson").stat().st_mtime_ns for p in (folder / "a", folder / "sub" / "b", folder / "sub" / "c")}
    code, out, err = run_cli(capsys, folder, "--ray", "auto", "--cpus-per-worker", "1", "--resume",
                             "--checkpoint-root", weights_dir)
    assert code == 1, err
    assert [line.split()[1] for line in out.splitlines()[1:-1]] == ["skipped", "failed", "skipped", "skipped"]
    assert {p: (p / "depth.ndjson").stat().st_mtime_ns for p in written} == written


def test_workers_that_the_cluster_cannot_hold_are_refused(cluster, folder):
    with pytest.raises(batch.RayError, match="no GPUs; leave out --gpus-per-worker"):
        batch.run_many([folder], ray_address="auto", gpus_per_worker=1)
    with pytest.raises(batch.RayError, match="no node of the Ray cluster has 3 CPUs for one worker"):
        batch.run_many([folder], ray_address="auto", cpus_per_worker=3)
    assert not (folder / "a").exists()


def test_without_ray_the_message_says_how_to_install_it(folder, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    code, _, err = run_cli(capsys, folder, "--ray", "local")
    assert code == 1
    assert "annolid-depth: running on a Ray cluster needs Ray Data: pip install 'annolid-depth[cluster]'" in err


def test_an_unreachable_cluster_fails_fast(folder, capsys):
    code, _, err = run_cli(capsys, folder, "--ray", "ray://127.0.0.1:9")  # the discard port: nothing listens
    assert code == 1
    assert "cannot reach the Ray cluster at ray://127.0.0.1:9" in err and "Traceback" not in err
    assert not (folder / "a").exists()


@pytest.mark.parametrize("resume", [False, True], ids=["start-over", "resume"])
def test_a_worker_killed_mid_video_is_retried_to_the_same_outputs(cluster, weights_dir, tmp_path, resume):
    """Ray restarts the killed actor and retries its video, which takes over the dead
    process's lock and starts over (or, with resume, goes on from its last resume point)."""
    video = copy_file(MEDIA_CLIP, tmp_path / "videos" / "long.mp4")  # 70 frames
    size = {"input_size": 112, "max_res": 320} if resume else {"input_size": 56, "max_res": 160}  # slow enough
    options = {"checkpoint_root": weights_dir, **size}  # for a resume point (saved every 2 s at most) before the end
    out = tmp_path / "videos" / "long"
    killed = []

    def mid_video() -> bool:  # records written; with resume, a resume point saved too
        partial = out / "depth.ndjson.partial"
        if not resume:
            return partial.exists() and partial.stat().st_size > 0
        return ((json.loads((out / "run.json").read_text()).get("resume_point") or {}).get("frames") or 0) > 0

    def kill_the_worker():
        while not killed and not done.is_set():
            try:
                if mid_video():
                    killed.append(json.loads((out / "run.lock").read_text())["pid"])  # the process writing there
                    os.kill(killed[0], signal.SIGKILL)
            except (OSError, ValueError):  # not written yet, or being replaced
                pass
            done.wait(0.01)

    done = threading.Event()
    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    try:
        records = batch.run_many([video], ray_address="auto", cpus_per_worker=1, report=tmp_path / "r.jsonl",
                                 resume=resume, **options)
    finally:
        done.set()
        killer.join()

    assert killed and killed[0] != os.getpid(), "the worker finished before it could be killed"
    assert json.loads((out / "run.json").read_text())["status"] == "complete" and not (out / "run.lock").exists()
    assert [(r["status"], r["frames"]) for r in records] == [("complete", 70)]
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker (Ray gives a 1-CPU actor one thread), so the arithmetic is the same
    try:
        run_video_depth_anything(copy_file(MEDIA_CLIP, tmp_path / "here" / "long.mp4"), tmp_path / "single", **options)
    finally:
        torch.set_num_threads(threads)
    retried = list(iter_records(out / "depth.ndjson"))
    alone = list(iter_records(tmp_path / "single" / "depth.ndjson"))
    assert [r["frame_index"] for r in retried] == [r["frame_index"] for r in alone] == list(range(70))
    for a, b in zip(retried, alone):
        scale = b["otherData"]["depth_map"]["scale"]
        step = (scale["max"] - scale["min"]) / 65535
        assert np.abs(decode_depth(a) - decode_depth(b)).max() <= step


def test_ctrl_c_stops_the_batch_and_resume_finishes_it(clips, weights_dir, tmp_path):
    folder = tmp_path / "videos"
    copy_file(MEDIA_CLIP, folder / "a_long.mp4")  # 70 frames: still running when Ctrl-C comes
    copy_file(clips[2], folder / "b.mp4")
    command = [sys.executable, "-m", "annolid_depth", str(folder), "--quiet", "--report", str(tmp_path / "r.jsonl"),
               "--checkpoint-root", str(weights_dir), "--input-size", "56", "--max-res", "160"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = folder / "a_long" / "depth.ndjson.partial"
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0, proc, "a record")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    cancelled, left = out.splitlines()[1:-1]
    assert cancelled.split()[:2] == [str(folder / "a_long.mp4"), "cancelled"]
    assert left.split()[:3] == [str(folder / "b.mp4"), "not", "started"]
    assert "run again with --resume" in err and "Traceback" not in err
    assert [json.loads(line)["status"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == ["cancelled"]

    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [
        "cancelled", "complete", "complete"]
    assert [r["frame_index"] for r in iter_records(folder / "a_long" / "depth.ndjson")] == list(range(70))
