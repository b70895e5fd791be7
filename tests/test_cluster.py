"""A node that dies mid-video on a Ray cluster: the video completes once, unattended.

The cluster is real: a head and two worker nodes started with `ray start` on this machine
(each its own raylet and address, as on separate hosts sharing a filesystem). The node running the video
is killed by its process ids once a resume point is saved; Ray runs the video again on the
other node, which takes over the dead node's lock and resumes from that point."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import MEDIA_CLIP, copy_file

from annolid_depth import run_video_depth_anything
from annolid_depth.io.records import decode_depth, iter_records

pytest.importorskip("ray", reason="the Ray tests need the cluster extra: pip install 'annolid-depth[cluster]'")
RAY = Path(sys.executable).with_name("ray")
OPTIONS = {"input_size": 112, "max_res": 320}  # slow enough for a resume point before the end


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parents


def descendants(pid: int) -> list[int]:
    parents, found, frontier = children(), [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, of in parents.items() if of == parent]
        found += kids
        frontier += kids
    return found


def raylet_of(pid: int) -> int | None:
    """The raylet a worker process was started by: the node it runs on."""
    parents = children()
    while pid in parents and pid > 1:
        if b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
            return pid
        pid = parents[pid]
    return None


@pytest.fixture
def three_nodes(monkeypatch):
    """A head (no CPUs: it runs no video) and two worker nodes of one CPU each, on 127.0.0.1,
    without token authentication (the driver here and the nodes share no home folder). Their
    folder is short, directly in /tmp: Ray's sockets live under it, and a socket's path may not
    exceed 107 bytes (pytest's folders under pytest-xdist came within a few of that)."""
    if sys.platform != "linux":
        pytest.skip("the node is killed by its process ids read from /proc")
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = free_port()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "HOME": str(temp), "RAY_USAGE_STATS_ENABLED": "0"}
    def start(*args: str) -> subprocess.CompletedProcess:  # a second try: a loaded machine can miss Ray's start-up wait
        for _ in range(2):
            done = subprocess.run([str(RAY), "start", *args, "--disable-usage-stats"], env=env, capture_output=True,
                                  text=True, timeout=180)
            if done.returncode == 0:
                break
        return done

    # The worker nodes on addresses of their own (127.0.0.2, .3), as on hosts of their own: the
    # driver here then joins the head's node, whose object store (holding the actors' arguments,
    # which a restarted actor needs) outlives the node that is killed.
    started = [start("--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=0",
                     "--include-dashboard=false", f"--temp-dir={temp}")]
    started += [start(f"--address=127.0.0.1:{port}", f"--node-ip-address=127.0.0.{n}", "--num-cpus=1") for n in (2, 3)]
    try:
        assert all(done.returncode == 0 for done in started), [done.stderr[-2000:] for done in started]
        yield f"127.0.0.1:{port}"
    finally:
        for pid, _ in list(children().items()):  # every process of this cluster: its command names its folder
            try:
                if str(temp).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def test_a_node_killed_mid_video_is_resumed_on_another_node_to_the_same_outputs(three_nodes, weights_dir, tmp_path):
    video = copy_file(MEDIA_CLIP, tmp_path / "videos" / "long.mp4")  # 70 frames
    out = tmp_path / "videos" / "long"
    killed: list[int] = []
    done = threading.Event()

    def kill_the_node_once_a_resume_point_is_saved():
        while not killed and not done.is_set():
            try:
                if (json.loads((out / "run.json").read_text()).get("resume_point") or {}).get("frames"):
                    raylet = raylet_of(json.loads((out / "run.lock").read_text())["pid"])
                    if raylet is not None:
                        for pid in [raylet, *descendants(raylet)]:  # the node's raylet and all it started
                            os.kill(pid, signal.SIGKILL)
                        killed.append(raylet)
            except (OSError, ValueError):  # not written yet, or being replaced
                pass
            done.wait(0.01)

    killer = threading.Thread(target=kill_the_node_once_a_resume_point_is_saved)
    killer.start()
    try:  # the user's command, in a process of its own (as a driver on the head node is)
        batch_run = subprocess.run([sys.executable, "-m", "annolid_depth", str(video), "--ray", three_nodes,
                                    "--cpus-per-worker", "1", "--resume", "--report", str(tmp_path / "r.jsonl"),
                                    "--checkpoint-root", str(weights_dir), "--input-size", str(OPTIONS["input_size"]),
                                    "--max-res", str(OPTIONS["max_res"]), "--quiet"],
                                   capture_output=True, text=True, timeout=600)
    finally:
        done.set()
        killer.join()
    assert killed, "the video finished before its node could be killed"
    assert batch_run.returncode == 0, batch_run.stderr[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and not (out / "run.lock").exists()
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["status"], r["frames"]) for r in records] == [("complete", 70)]  # one final record

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker (a 1-CPU actor runs one thread), so the arithmetic is the same
    try:
        run_video_depth_anything(copy_file(MEDIA_CLIP, tmp_path / "here" / "long.mp4"), tmp_path / "single",
                                 checkpoint_root=weights_dir, **OPTIONS)
    finally:
        torch.set_num_threads(threads)
    retried, alone = list(iter_records(out / "depth.ndjson")), list(iter_records(tmp_path / "single" / "depth.ndjson"))
    assert [r["frame_index"] for r in retried] == [r["frame_index"] for r in alone] == list(range(70))
    for a, b in zip(retried, alone):
        scale = b["otherData"]["depth_map"]["scale"]
        assert np.abs(decode_depth(a) - decode_depth(b)).max() <= (scale["max"] - scale["min"]) / 65535
