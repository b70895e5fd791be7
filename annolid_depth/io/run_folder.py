"""One run per output folder: its lock, its description (`run.json`) and its resume state.

The rule: final file names only ever hold a complete run, which `run.json` describes. A run
writes under `.partial` names (`files.partial`) and publishes them all at once when it
completes, removing whatever an earlier run left that this one did not write; until then the
earlier complete result stays as it was. A run that is cancelled, fails or is killed leaves
its partial files, its last resume state (`run.state.<frames>.partial`) and a `run.json` that says
so, and `resume=True` continues it. `run.lock` keeps a second process out while a run is live.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import errno
import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .. import __version__
from ..errors import OutputError
from .files import partial, publish, remove

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
LOCK = "run.lock"
STATE_NAME = re.compile(r"run\.state\.\d+\.partial")  # a resume state's file: run.state.<frames>.partial
FORMAT = 1  # of run.json; a newer one is not read
HEAD_BYTES = 1 << 20  # the video's first bytes go into its fingerprint


class Status(str, Enum):
    """How a run stands (run.json's `status`), and how a batch's video ended (its record):
    a run is running, publishing (its outputs being put in place), complete, cancelled or
    failed; a batch's video may also be skipped (a complete run with the same video and
    settings was there) or not started (the batch stopped first). Equal to its text, and
    written as it."""

    RUNNING = "running"
    PUBLISHING = "publishing"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_STARTED = "not started"

    def __str__(self) -> str:
        return self.value


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json_atomically(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def video_fingerprint(path: Path) -> dict:
    """Cheap identity of a video file: its size, modification time and first megabyte."""
    stat = path.stat()
    with open(path, "rb") as stream:
        head = hashlib.sha256(stream.read(HEAD_BYTES)).hexdigest()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}


def save_tensors(state: dict, stream) -> str:
    """torch.save into `stream`, with the stream's own write error (a full disk) raised as
    such rather than as the RuntimeError torch turns it into; returns the SHA-256 of what it
    wrote."""
    import torch  # here: the batch and the CLI read run folders without loading torch

    failures, digest = [], hashlib.sha256()

    class Writer:
        def write(self, data):
            digest.update(data)
            try:
                return stream.write(data)
            except OSError as exc:
                failures.append(exc)
                raise

        def flush(self):
            stream.flush()

    try:
        torch.save(state, Writer())
    except RuntimeError:
        if failures:
            raise failures[0] from None
        raise
    stream.flush()
    return digest.hexdigest()


# --------------------------------------------------------------------------- lock


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


# --------------------------------------------------------------------------- run.json


def read_record(folder: Path) -> dict | None:
    """The folder's run.json, or None (with one warning) when it is missing, damaged, names
    files that are not this package's outputs in this folder, or comes from a newer version
    of this package: the run then starts afresh. A run.json is input like any other file
    (folders are shared, copied and synced): it is checked whole before anything is used."""
    path = folder / RUN_JSON
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); starting afresh", path, getattr(exc, "strerror", None) or exc)
        return None
    if not isinstance(record, dict) or not is_int(record.get("format")):
        log.warning("%s is not a run description; starting afresh", path)
        return None
    if record["format"] > FORMAT:
        log.warning("%s was written by a newer annolid-depth (%s); starting afresh", path, record.get("version"))
        return None
    problem = record_problem(record)
    if problem is not None:
        log.warning("%s is damaged (%s); ignoring it and starting afresh (the outputs it names are left as they are)",
                    path, problem)
        return None
    return record


# The names a run gives its outputs (io/sinks): fixed ones, and ones after the video's stem.
OUTPUT_NAMES = frozenset({"depth.ndjson", "depth_regions.csv", "depth_regions.png", "depth_floor.json", "depth_paths.png",
                          "depth_frames", "point_clouds"})
STEM_OUTPUT = re.compile(r".+_(depths\.npz|depths_exr|vis\.mp4)")
RUN_STATUSES = tuple(s.value for s in (Status.RUNNING, Status.PUBLISHING, Status.COMPLETE, Status.CANCELLED,
                                       Status.FAILED))


def is_int(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def own_output_name(name) -> bool:
    """Whether `name` is one this package gives an output: a plain name inside the folder (no
    separator, no `..`, not hidden), of the form of one of its outputs."""
    return (isinstance(name, str) and name == Path(name).name and not name.startswith(".") and "\0" not in name
            and (name in OUTPUT_NAMES or STEM_OUTPUT.fullmatch(name) is not None))


def record_problem(record: dict, nested: bool = False) -> str | None:
    """What is wrong with a run.json's content (types, ranges, names), or None."""
    if record.get("status") not in (("complete",) if nested else RUN_STATUSES):
        return f"status {record.get('status')!r}"
    for part in ("video", "settings", "model") + (() if nested else ("previous",)):
        if record.get(part) is not None and not isinstance(record[part], dict):
            return f"{part} is {type(record[part]).__name__}, not an object"
    if not isinstance((record.get("model") or {}).get("key", ""), str):
        return "model key is not text"
    outputs = record.get("outputs", {})
    if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
        return "outputs is not an object of names"
    replaces = record.get("replaces", [])
    if not isinstance(replaces, list):
        return "replaces is not a list"
    foreign = [name for name in [*outputs.values(), *replaces] if not own_output_name(name)]
    if foreign:
        return f"it names {foreign[0]!r}, which is not an output of this package in this folder"
    for key in ("frames_done", "frames_expected", "skipped_frames"):
        if record.get(key) is not None and not is_int(record[key]):
            return f"{key} is {record[key]!r}"
    if not isinstance(record.get("warnings", []), list) or not isinstance(record.get("error") or "", str):
        return "warnings or error of the wrong type"
    if record.get("previous") is not None:
        inner = record_problem(record["previous"], nested=True)
        if inner is not None:
            return f"previous run: {inner}"
    return None if nested else resume_point_problem(record.get("resume_point"))


def resume_point_problem(point) -> str | None:
    """What is wrong with a resume point's fields (the sinks check their own marks against
    their files), or None."""
    if point is None:
        return None
    if not isinstance(point, dict):
        return f"resume_point is {type(point).__name__}, not an object"
    if not is_int(point.get("frames")) or not (point.get("last_frame_index") is None or is_int(point["last_frame_index"])):
        return f"resume_point frames {point.get('frames')!r}, last frame {point.get('last_frame_index')!r}"
    if point["frames"] and (point.get("last_frame_index") is None or not isinstance(point.get("state"), str)
                            or not STATE_NAME.fullmatch(point["state"])):
        return f"resume_point of {point['frames']} frames without its last frame or a state file of its own"
    if not isinstance(point.get("marks", {}), dict) or not isinstance(point.get("state_sha256", ""), str):
        return "resume_point marks or state checksum of the wrong type"
    return None


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two runs' identities, in words ("encoder vits -> vitb")."""
    changes = []
    for part in ("video", "settings", "model"):
        a, b = old.get(part) or {}, new.get(part) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append(f"{'video ' if part == 'video' else ''}{key} {a.get(key)!r} -> {b.get(key)!r}")
    return changes


@dataclass
class Plan:
    """What a run does in its folder: `done` (a complete run with the same identity is there),
    `resume_at` frames already done (0: from the start) with the engine `state`."""

    record: dict
    done: bool = False
    resume_at: int = 0
    last_index: int | None = None
    state: dict | None = None
    notes: list[str] = field(default_factory=list)


class RunFolder:
    """The folder of one run: reads and writes run.json, the resume state, and publishes."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = FolderLock(path)
        self._writing = threading.Lock()  # run.json is written from the run's thread and the resume points'
        self.notes: list[str] = []  # what a run should hear about its folder (a filesystem without atomic rename)

    def __enter__(self) -> RunFolder:
        self.notes = [note] if (note := warn_without_atomic_rename(self.path)) else []
        self.lock.__enter__()
        for stale in self.path.glob(f".{RUN_JSON}.*.tmp"):
            stale.unlink(missing_ok=True)  # what a process killed mid-write left; ours now, under the lock
        return self

    def __exit__(self, *exc_info) -> None:
        self.lock.__exit__(*exc_info)

    def plan(self, identity: dict, resume: bool) -> Plan:
        """Decide, from the folder's record, whether this run is already done, resumes or
        starts afresh (saying why when `resume` was asked for and cannot be honoured)."""
        old = read_record(self.path)
        if old is not None and old.get("status") == Status.PUBLISHING:  # killed while publishing: finish it
            self._publish(old)
            old = read_record(self.path)
        complete = old if old is not None and old.get("status") == Status.COMPLETE else (old or {}).get("previous")
        record = {"format": FORMAT, "version": __version__, **identity, "status": Status.RUNNING, "previous": complete}
        if old is None or not resume:
            return Plan(record)
        changed = differences(old, identity)
        if changed:
            message = f"{self.path}: settings or video differ from the run there ({'; '.join(changed)}); starting over"
            log.warning(message)
            return Plan(record, notes=[message])
        if old["status"] == Status.COMPLETE:
            return Plan(old, done=all((self.path / name).exists() for name in old.get("outputs", {}).values()))
        point = old.get("resume_point") or {}
        state = self._read_state(point) if point.get("frames") else None
        if point.get("frames") and state is None:
            return Plan(record)
        return Plan({**old, "status": Status.RUNNING, "error": None}, resume_at=point.get("frames", 0),
                    last_index=point.get("last_frame_index"), state=state)

    def _read_state(self, point: dict) -> dict | None:
        """The resume state run.json's resume point names, once its checksum and frame count
        match; None (with a warning saying why: the run starts over) otherwise."""
        path = self.path / point["state"]
        try:
            data = path.read_bytes() if not path.is_symlink() else None
        except OSError as exc:
            data, reason = None, f"it cannot be read ({exc.strerror})"
        else:
            reason = "it is a symbolic link" if data is None else None
        if data is not None and hashlib.sha256(data).hexdigest() != point.get("state_sha256"):
            data, reason = None, "it does not match its checksum in run.json"
        state = None
        if data is not None:
            import torch

            try:
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - unreadable for any reason: start over
                reason = f"it cannot be read ({exc})"
            if state is not None and (not isinstance(state, dict) or state.get("frames") != point["frames"]):
                state, reason = None, "it does not match run.json"
        if state is None:
            log.warning("%s: the resume state %s: %s; starting over", self.path, path.name, reason)
        return state

    def write(self, record: dict) -> None:
        with self._writing:
            self._write(record)

    def _write(self, record: dict) -> None:
        if self.lock.lost:  # the folder is another run's now: write nothing more
            raise LockLost(f"{self.path} was taken over by another run (this run's heartbeat was judged stale, "
                           f"as a process stopped for over {FolderLock.STALE_S:.0f} s looks); this run stopped")
        record["updated"] = now()
        write_json_atomically(self.path / RUN_JSON, record)

    def save_state(self, state: dict) -> tuple[str, str]:
        """Write `state` to a state file of its own (`run.state.<frames>.partial`), on any thread;
        returns its name and SHA-256. It becomes the resume point only with `point_at`, so a
        kill while writing leaves the previous resume point as it was."""
        name = f"run.state.{state['frames']}.partial"
        try:
            with open(self.path / name, "wb") as stream:
                digest = save_tensors(state, stream)
                os.fsync(stream.fileno())
        except BaseException:
            (self.path / name).unlink(missing_ok=True)
            raise
        return name, digest

    def point_at(self, record: dict, state: tuple[str, str], frames: int, last_index: int, marks: dict) -> None:
        """Make the state file `state` (name, SHA-256; after `frames` frames, all written) the
        resume point, then remove the one before; `marks` tell each sink where its output stood."""
        with self._writing:
            before = (record.get("resume_point") or {}).get("state")
            record["resume_point"] = {"frames": frames, "last_frame_index": last_index, "marks": marks,
                                      "state": state[0], "state_sha256": state[1]}
            self._write(record)
        if before not in (None, state[0]):
            (self.path / before).unlink(missing_ok=True)

    def discard_unfinished(self) -> None:
        """Clear what an unfinished run left (starting over): every `.partial` file or
        folder in the folder, the resume state among them."""
        for path in self.path.glob("*.partial"):
            remove(path)

    def complete(self, record: dict) -> None:
        """Publish every partial output under its final name, as one step that a kill
        cannot leave half done: the record says `publishing` until all are in place."""
        record["status"] = Status.PUBLISHING
        self.write(record)
        self._publish(record)

    def _publish(self, record: dict) -> None:
        for name in record.get("outputs", {}).values():
            if partial(self.path / name).exists():
                publish(partial(self.path / name), self.path / name)
        for name in record.get("replaces", []):  # what an earlier run made and this one did not
            if own_output_name(name):  # (read_record refuses a run.json naming anything else)
                remove(self.path / name)
        for path in self.path.glob("*.partial"):  # the resume state and raw files the outputs were made from
            remove(path)
        record.update(status=Status.COMPLETE, resume_point=None, previous=None)
        self.write(record)


def unfinished_run(folder: Path, video: Path, settings: dict) -> dict | None:
    """The folder's record when it holds an unfinished run of this video file with these
    settings (a dict as in run.json) and a resume point: what a user may resume."""
    record = read_record(folder)
    if record is None or record.get("status") == Status.COMPLETE or not (record.get("resume_point") or {}).get("frames"):
        return None
    try:
        stat = video.stat()
    except OSError:
        return None
    known = record.get("video") or {}
    same_video = (known.get("path"), known.get("size"), known.get("mtime_ns")) == (str(video.resolve()), stat.st_size,
                                                                                  stat.st_mtime_ns)
    same_settings = all(record.get("settings", {}).get(key) == value for key, value in settings.items()
                        if key in record.get("settings", {}))
    return record if same_video and same_settings else None


def shown_outputs(folder: Path) -> tuple[Path | None, dict | None]:
    """The depth.ndjson of the run a folder's run.json describes, with that record: the
    partial one while that run is unfinished (a folder from before run.json existed: its
    depth.ndjson, without a record)."""
    record = read_record(folder)
    from .records import NDJSON  # here: the record codec needs OpenCV, a batch reads run folders first

    name = ((record or {}).get("outputs") or {}).get("depth_ndjson", NDJSON)
    unfinished = record is not None and record.get("status") != Status.COMPLETE
    for path in (partial(folder / name), folder / name) if unfinished else (folder / name,):
        if path.is_file() and path.stat().st_size:
            return path, record
    return None, record


def depth_of(folder: Path, video: Path) -> tuple[Path, dict | None]:
    """`shown_outputs` of a folder the user picked for `video`, once it is sure to hold depth
    of that video: the same size and first megabyte as run.json records (so a moved or
    copied video still matches), or, in a folder without run.json, the same file name in its
    records. Otherwise ValueError saying what the folder holds."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    ndjson, record = shown_outputs(folder)
    if ndjson is None:
        raise ValueError(f"{folder} holds no depth (no depth.ndjson with records); choose the output folder of a depth run")
    if record is not None:
        known, this = record.get("video") or {}, video_fingerprint(video)
        if (known.get("size"), known.get("head_sha256")) != (this["size"], this["head_sha256"]):
            raise ValueError(f"{folder} holds depth of another video ({known.get('path')}), not of {video}")
        return ndjson, record
    from .records import iter_records

    try:
        name = next(iter_records(ndjson)).get("video_name")
    except (StopIteration, ValueError, AttributeError):
        raise ValueError(f"{ndjson} is not a depth record file") from None
    if name != video.name:
        raise ValueError(f"{folder} holds depth of another video ({name}), not of {video.name}")
    return ndjson, None
