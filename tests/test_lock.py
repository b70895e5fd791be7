"""The folder lock excludes: two processes hammering it are never inside at once; a lock that
is being written is not taken for a dead process's; leaving removes only one's own lock."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annolid_depth.errors import OutputError
from annolid_depth.io.folder_lock import FolderLock, LockLost, waiting_for_leases
from annolid_depth.io.run_folder import RunFolder

HAMMER = """
import sys, time
from pathlib import Path
from annolid_depth.errors import OutputError
from annolid_depth.io.folder_lock import FolderLock
folder, inside = Path(sys.argv[1]), Path(sys.argv[1]) / "inside"
holds = overlaps = 0
(folder / f"ready.{sys.argv[2]}").touch()
while len(list(folder.glob("ready.*"))) < 2:
    pass
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        with FolderLock(folder):
            try:
                inside.mkdir()  # fails when the other process is inside too
            except FileExistsError:
                overlaps += 1
                continue
            holds += 1
            inside.rmdir()
    except OutputError:
        pass
print(holds, overlaps)
"""


def test_two_processes_are_never_inside_at_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(tmp_path), str(i), "3"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    counts = [tuple(map(int, out.split())) for out, _ in results]
    assert sum(overlaps for _, overlaps in counts) == 0, counts
    assert all(holds > 0 for holds, _ in counts), counts  # both got in, in turn
    assert "which is gone" not in "".join(err for _, err in results)  # no live lock taken over
    assert not (tmp_path / "run.lock").exists() and not list(tmp_path.glob(".run.lock.*"))


def age(path: Path, seconds: float) -> None:
    """Make the lock's heartbeat `seconds` old."""
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("content", ["", "not json", json.dumps({"format": 99, "pid": 1, "host": "h"})])
def test_an_unreadable_lock_is_refused_while_fresh_and_taken_over_once_stale(tmp_path, content, caplog):
    lock = tmp_path / "run.lock"
    lock.write_text(content)  # empty (an older version's mid-write), damaged, or a newer version's
    with pytest.raises(OutputError, match=f"locked by {lock}, which this version cannot read .* delete it if no run"):
        FolderLock(tmp_path).__enter__()
    age(lock, FolderLock.STALE_S + 5)
    with FolderLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists() and "an unreadable lock whose heartbeat stopped 6" in caplog.text


def test_another_hosts_lock_is_respected_while_its_heartbeat_is_fresh_and_taken_over_once_stale(tmp_path, caplog):
    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"format": 1, "pid": 4242, "host": "node-b", "started": "then", "token": "b"}))
    age(lock, FolderLock.STALE_S - 20)
    with pytest.raises(OutputError, match="in use by another run \\(process 4242 on node-b, started then, heartbeat 40 s ago\\)"):
        FolderLock(tmp_path).__enter__()
    assert json.loads(lock.read_text())["token"] == "b"
    age(lock, 30)
    with FolderLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "taking over" in caplog.text and "from process 4242 on node-b" in caplog.text
    assert "heartbeat stopped 70 s ago" in caplog.text


HOLDER = """
import sys, time
from pathlib import Path
from annolid_depth.io.folder_lock import FolderLock
FolderLock.REFRESH_S = 0.05
with FolderLock(Path(sys.argv[1])) as lock:
    print("in", flush=True)
    sys.stdin.readline()  # the lock was replaced: wait for the heartbeat to notice
    deadline = time.monotonic() + 30
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.01)
    print("lost" if lock.lost else "held", flush=True)
"""


def test_a_live_holder_keeps_its_heartbeat_fresh_and_notices_a_take_over(tmp_path):
    lock = tmp_path / "run.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "in\n"
    age(lock, 1000)
    deadline = time.monotonic() + 60
    while lock.stat().st_mtime < time.time() - 500:  # refreshed by the holder's heartbeat
        assert time.monotonic() < deadline, "the heartbeat did not refresh the lock"
    lock.write_text(json.dumps({"format": 1, "pid": 1, "host": "node-c", "started": "now", "token": "c"}))
    out, err = proc.communicate("\n", timeout=60)
    assert out == "lost\n" and "was taken over by another run" in err
    assert json.loads(lock.read_text())["token"] == "c"  # the new owner's lock stays


def test_leaving_keeps_a_lock_that_is_no_longer_ours(tmp_path):
    lock = tmp_path / "run.lock"
    with FolderLock(tmp_path):
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now", "token": "theirs"}))
    assert json.loads(lock.read_text())["token"] == "theirs"


def test_a_dead_processs_lock_is_taken_over_and_a_live_one_refused(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "run.lock"
    import socket

    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}))
    with FolderLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(OutputError, match=f"{tmp_path} is in use by another run \\(process {os.getpid()}, started "):
            FolderLock(Path(tmp_path)).__enter__()
    assert not lock.exists()


def test_a_run_whose_folder_was_taken_over_writes_nothing_more(tmp_path, monkeypatch):
    monkeypatch.setattr(FolderLock, "REFRESH_S", 0.02)
    with RunFolder(tmp_path) as folder:
        (tmp_path / "run.lock").write_text(json.dumps({"format": 1, "pid": 1, "host": "node-c", "token": "c"}))
        deadline = time.monotonic() + 30
        while not folder.lock.lost:
            assert time.monotonic() < deadline, "the heartbeat did not notice the take-over"
            time.sleep(0.01)
        with pytest.raises(LockLost, match=f"{tmp_path} was taken over by another run"):
            folder.write({"status": "running"})
    assert not (tmp_path / "run.json").exists() and json.loads((tmp_path / "run.lock").read_text())["token"] == "c"


def test_a_cluster_retry_waits_for_a_dead_nodes_lease_to_run_out(tmp_path, caplog):
    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"format": 1, "pid": 4242, "host": "node-b", "started": "then", "token": "b"}))
    age(lock, FolderLock.STALE_S - 0.5)  # fresh now, stale within a second: as a node that died a minute ago
    with pytest.raises(OutputError, match="on node-b"):
        FolderLock(tmp_path).__enter__()  # by hand: refused at once
    with waiting_for_leases(), FolderLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "from process 4242 on node-b" in caplog.text and "heartbeat stopped 6" in caplog.text


MOUNTS = """22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
31 27 0:40 / /mnt/bucket rw,nosuid - fuse.s3fs s3fs rw,user_id=0
32 27 0:41 / /mnt/bucket/cache rw - tmpfs tmpfs rw
33 27 0:42 / /mnt/lab\\040data rw - nfs4 server:/lab rw
"""


def test_a_folder_on_a_filesystem_that_renames_by_copying_is_named_in_a_warning(caplog):
    from annolid_depth.io.folder_lock import filesystem_type, warn_without_atomic_rename

    assert filesystem_type(Path("/mnt/bucket/videos/v"), MOUNTS) == "fuse.s3fs"
    assert filesystem_type(Path("/mnt/bucket/cache/v"), MOUNTS) == "tmpfs"  # the deepest mount holding it
    assert filesystem_type(Path("/mnt/lab data/v"), MOUNTS) == "nfs4"
    assert filesystem_type(Path("/mnt/bucketless"), MOUNTS) == "ext4"
    message = warn_without_atomic_rename(Path("/mnt/bucket/videos/v"), MOUNTS)
    assert message.startswith("/mnt/bucket/videos/v is on a fuse.s3fs mount, whose rename copies the file")
    assert message in caplog.text
    assert warn_without_atomic_rename(Path("/mnt/lab data/v"), MOUNTS) is None
