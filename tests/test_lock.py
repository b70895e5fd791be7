"""The folder lock excludes: two processes hammering it are never inside at once; a lock that
is being written is not taken for a dead process's; leaving removes only one's own lock."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from annolid_depth.errors import OutputError
from annolid_depth.io.run_folder import FolderLock

HAMMER = """
import sys, time
from pathlib import Path
from annolid_depth.errors import OutputError
from annolid_depth.io.run_folder import FolderLock
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


def test_an_unreadable_fresh_lock_is_in_use_and_a_stale_one_is_taken_over(tmp_path):
    lock = tmp_path / "run.lock"
    lock.write_text("")  # as a process of an older version left it mid-write, a moment ago
    with pytest.raises(OutputError, match=f"in use by another run that is starting \\({lock}\\); try again"):
        FolderLock(tmp_path).__enter__()
    old = lock.stat().st_mtime - 60
    os.utime(lock, (old, old))
    with FolderLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


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
