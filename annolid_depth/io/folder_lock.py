"""`run.lock`: the lease a run holds on its output folder (see `FolderLock`), and a warning for
folders on filesystems where no lock or rename can be trusted.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import errno
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import OutputError

log = logging.getLogger(__name__)

LOCK = "run.lock"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class LockLost(OutputError):
    """Another process took this run's folder over (its heartbeat was judged stale)."""


class HeldElsewhere(OutputError):
    """The folder's lock is held by a process on another host whose heartbeat is fresh."""


# How long taking a lock waits for a lock of another host to be released or go stale: 0 for
# a run started by hand (refused at once, naming the holder); a cluster's retry of a video
# whose node died sets it past the lease's timeout (`waiting_for_leases`).
LEASE_WAIT: contextvars.ContextVar[float] = contextvars.ContextVar("lease_wait", default=0.0)


@contextlib.contextmanager
def waiting_for_leases():
    """Runs in this context wait, where a folder is locked by another host, until that lock is
    released or its heartbeat goes stale (then taken over), instead of refusing at once."""
    token = LEASE_WAIT.set(FolderLock.STALE_S + 3 * FolderLock.REFRESH_S)
    try:
        yield
    finally:
        LEASE_WAIT.reset(token)


class FolderLock:
    """`run.lock`: a lease on the folder, holding this process's id, host and a token of its own.

    It appears whole: its content is written to a temporary file first and hard-linked into
    place, which fails when a lock is there (never replacing one). While held, a thread
    refreshes its heartbeat (the lock file's modification time) every REFRESH_S. A lock is
    taken over when its owner is provably gone: a process of this host that no longer exists,
    or a heartbeat older than STALE_S, whatever the host (a node that died). Its age is read
    against the shared filesystem's own clock (the time of a file written there just now),
    so clocks that differ between nodes do not matter. A take-over renames the lock aside and
    checks that what was renamed is what was judged gone. Leaving removes the lock only while
    it is still ours; a holder that finds its lock taken over says so (`lost`) and stops."""

    FORMAT = 1  # of the lock's content; a newer one is not read (taken over only once stale)
    REFRESH_S = 5.0
    STALE_S = 60.0  # 12 refreshes missed: longer than any save, a node that stopped beating is gone

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.mine: bytes | None = None
        self.lost = False
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def __enter__(self) -> FolderLock:
        me = {"format": self.FORMAT, "pid": os.getpid(), "host": socket.gethostname(), "started": now(),
              "token": os.urandom(8).hex(), "refresh_s": self.REFRESH_S}
        content = json.dumps(me).encode()
        deadline, tries = time.monotonic() + LEASE_WAIT.get(), 0
        while True:
            try:
                self._place(content, me["token"])
                break
            except FileExistsError:
                tries += 1
                try:
                    self._take_over_if_gone(me["host"])
                except HeldElsewhere:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(self.REFRESH_S)  # a node that died: its lease runs out within STALE_S
                    continue
                if tries >= 3:
                    raise OutputError(f"{self.path.parent} is in use by another run that just started; try again") from None
            except OSError as exc:
                raise OutputError(f"cannot write to output folder {self.path.parent} ({exc.strerror})") from None
        self.mine, self.lost = content, False
        self._stop.clear()
        self._beating = threading.Thread(target=self._beat, name="run.lock heartbeat", daemon=True)
        self._beating.start()
        return self

    def _place(self, content: bytes, token: str) -> None:
        """The lock with `content`, visible only once whole; FileExistsError when one is there."""
        tmp = self.path.with_name(f".{LOCK}.{token}.tmp")
        tmp.write_bytes(content)
        try:
            os.link(tmp, self.path)  # FileExistsError (EEXIST) passes through the clause below
        except OSError as exc:  # a filesystem without hard links: exclusive creation, then the content
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(handle, "wb") as stream:
                stream.write(content)
        finally:
            tmp.unlink(missing_ok=True)

    def _beat(self) -> None:
        """Refresh the heartbeat while the lock is ours; note when it is not any more."""
        while not self._stop.wait(self.REFRESH_S):
            try:
                if self.path.read_bytes() != self.mine:
                    raise FileNotFoundError
                os.utime(self.path)
            except FileNotFoundError:
                self.lost = True
                log.warning("%s was taken over by another run; this run stops at its next step", self.path)
                return
            except OSError as exc:  # a passing filesystem error: the next beat tries again
                log.debug("heartbeat of %s: %s", self.path, exc)

    def _take_over_if_gone(self, host: str) -> None:
        """Remove the lock when its owner is provably gone, else refuse with who holds it."""
        try:
            seen = self.path.read_bytes()
            age = self._filesystem_now() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        owner = self._parse(seen)
        stale = age > self.STALE_S
        if not stale and owner is None:
            raise OutputError(f"{self.path.parent} is locked by {self.path}, which this version cannot read "
                              f"(written {age:.0f} s ago); it is taken over once {self.STALE_S:.0f} s old, "
                              f"or delete it if no run is using the folder")
        same_host = owner is not None and owner.get("host") == host
        if not stale and (not same_host or process_alive(int(owner["pid"]))):
            where = "" if same_host else f" on {owner.get('host')}"
            raise (OutputError if same_host else HeldElsewhere)(
                f"{self.path.parent} is in use by another run (process {owner.get('pid')}{where}, "
                f"started {owner.get('started')}, heartbeat {age:.0f} s ago); wait for it to end or choose another "
                f"output folder" + ("" if same_host else f" (a run whose node died is taken over once its heartbeat "
                                                         f"is {self.STALE_S:.0f} s old)")
            )
        aside = self.path.with_name(f".{LOCK}.{os.urandom(8).hex()}.stale")
        try:
            os.rename(self.path, aside)  # one contender wins; the others find no lock, or a new one
        except FileNotFoundError:
            return
        if aside.read_bytes() != seen:  # a new owner's lock came in between: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        elif owner is None:
            log.warning("taking over %s, an unreadable lock whose heartbeat stopped %.0f s ago", self.path, age)
        else:
            why = f"whose heartbeat stopped {age:.0f} s ago" if stale else "which is gone"
            log.warning("taking over %s from process %s on %s (started %s), %s", self.path, owner.get("pid"),
                        owner.get("host"), owner.get("started"), why)
        aside.unlink(missing_ok=True)

    def _filesystem_now(self) -> float:
        """The time now by the clock that stamps this folder's files (a network filesystem's
        server), read from a file written there; this host's clock where that fails."""
        probe = self.path.with_name(f".{LOCK}.{os.urandom(8).hex()}.clock")
        try:
            probe.write_bytes(b"")
            return probe.stat().st_mtime
        except OSError:
            return time.time()
        finally:
            probe.unlink(missing_ok=True)

    @classmethod
    def _parse(cls, content: bytes) -> dict | None:
        """The lock's owner; None when the content is not a lock this version reads (damaged,
        still being written by an older version, or from a newer one)."""
        try:
            owner = json.loads(content)
        except ValueError:
            return None
        if not isinstance(owner, dict) or not str(owner.get("pid", "")).isdigit():
            return None
        return owner if not isinstance(owner.get("format"), int) or owner["format"] <= cls.FORMAT else None

    def __exit__(self, *exc_info) -> None:
        if self.mine is None:
            return
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        with contextlib.suppress(OSError):
            if self.path.read_bytes() == self.mine:
                self.path.unlink()
        self.mine = None


# Filesystems whose rename copies and deletes (object stores mounted with FUSE): there a file
# under a final name can be seen half written, and the lock's take-over is not exclusive.
NO_ATOMIC_RENAME = ("fuse.s3fs", "fuse.gcsfuse", "fuse.goofys", "fuse.rclone", "fuse.mountpoint-s3", "fuse.blobfuse",
                    "fuse.blobfuse2", "fuse.juicefs-s3")


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding `path` (Linux's /proc/self/mountinfo), or None."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target, best, kind = str(path.resolve()), "", None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, line.split(" - ", 1)[1].split(" ")[0]
    return kind


def warn_without_atomic_rename(folder: Path, mountinfo: str | None = None) -> str | None:
    """A warning (logged, and returned) when `folder` is on a filesystem known to rename by copying."""
    kind = filesystem_type(folder, mountinfo)
    if kind not in NO_ATOMIC_RENAME:
        return None
    message = (f"{folder} is on a {kind} mount, whose rename copies the file: a run killed while writing there can "
               f"leave a file cut under its final name, and two runs may both take its lock; write the outputs to a "
               f"local or network filesystem (NFS, a cluster filesystem) and copy them afterwards")
    log.warning(message)
    return message
