"""One run per output folder: its lock, its description (`run.json`) and its resume state.

The rule: final file names only ever hold a complete run, which `run.json` describes. A run
writes under `.partial` names (`files.partial`) and publishes them all at once when it
completes, removing whatever an earlier run left that this one did not write; until then the
earlier complete result stays as it was. A run that is cancelled, fails or is killed leaves
its partial files, its last resume state (`run.state.<frames>.partial`) and a `run.json` that says
so, and `resume=True` continues it. `run.lock` keeps a second process out while a run is live.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .. import __version__
from .files import partial, publish, remove
from .folder_lock import FolderLock, LockLost, now, warn_without_atomic_rename

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
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
    if not isinstance(record, dict) or not is_count(record.get("format")):
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


def is_count(value) -> bool:
    """Whether `value` is a whole number >= 0 (not a bool), as run.json's counts must be."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
        if record.get(key) is not None and not is_count(record[key]):
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
    if not is_count(point.get("frames")) or not (point.get("last_frame_index") is None or is_count(point["last_frame_index"])):
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
