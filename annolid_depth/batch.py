"""Many videos in one call: folders, lists, a JSON-lines report, and the same batch on Ray.

A batch is a list of videos, each with its output folder fixed before anything runs. Each
video is one `run_video_depth_anything` call; a failing video becomes a record and the
batch goes on. On Ray, each video is one row of a Ray Data dataset handed to a pool of
actors that keep the model loaded between videos (the runner caches it per process), and
Ray retries a video whose worker died; the run's lock and resume (run.json) make the retry
finish the folder exactly once.
"""
from __future__ import annotations

import errno
import functools
import json
import logging
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import DepthError
from .io.folder_lock import waiting_for_leases
from .io.run_folder import RUN_JSON, Status
from .settings import ALIASES, RUN_OPTIONS, DepthSettings, default_output_dir, load_settings

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
INSTALL_RAY = "pip install 'annolid-depth[cluster]'"
CONNECT_TIMEOUT_S = 5.0
CPUS_PER_WORKER = 4  # a CPU actor's share when --cpus-per-worker is not given (capped at a node's CPUs)
RAY_ATTEMPTS = 3  # runs of the unfinished videos when Ray loses workers it cannot restart (a node that died)


# video number, video, and the runner's per-frame payload (frames_done, frames_total, depth, ...),
# its stage payload (a `stage`: the model's load) or None as the video starts
BatchProgress = Callable[[int, Path, "dict | None"], None]


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch; `records` says what happened to every video up to then."""

    def __init__(self, records: list[dict]):
        super().__init__()
        self.records = records


@dataclass(frozen=True)
class Job:
    """One video of a batch and the folder its outputs go to (None: a path that failed to expand)."""

    video: Path
    output_dir: Path | None
    error: str | None = None


def record(path: Path, status: str, output_dir: Path | None = None, frames: int | None = None,
           seconds: float | None = None, error: str | None = None) -> dict:
    """The per-video line of the report and the summary."""
    return {
        "path": str(path),
        "status": status,
        "frames": frames,
        "seconds": None if seconds is None else round(seconds, 3),
        "output_dir": None if output_dir is None else str(output_dir),
        "error": error,
    }


# ---------------------------------------------------------------------------- the videos


def read_list(path: str | Path) -> list[Path]:
    """Paths from a text file, one a line; blank lines and `#` comments are skipped.
    Relative paths are taken from the list file's folder, so a list moves with its videos."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # with or without a byte-order mark
    except OSError as exc:
        raise ValueError(f"cannot read the list of videos {path} ({exc.strerror}); check the path") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the list of videos {path} is not UTF-8 text (byte {exc.start + 1} is not); save it as UTF-8") from None
    entries = (line.strip() for line in lines)
    return [path.parent / Path(entry).expanduser() for entry in entries if entry and not entry.startswith("#")]


def find_videos(folder: Path) -> list[Path]:
    """Video files under `folder`, at any depth, by extension, in a stable (sorted) order.
    Hidden entries and this package's output folders are skipped: a depth video
    (`mice/mice_vis.mp4`) is not an input for the next batch over the same folder."""
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".") and not is_output_folder(Path(root, name))]
        found += [Path(root, name) for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(found)


def is_output_folder(folder: Path) -> bool:
    """Whether a run wrote into `folder`: every run leaves its description and its records there."""
    from .io.records import NDJSON  # the record codec needs OpenCV, which a batch checks for later

    return any((folder / name).exists() for name in (RUN_JSON, NDJSON))


def plan(paths: Iterable[str | Path], output_dir: str | Path | None = None) -> list[Job]:
    """The batch's videos and their output folders, before anything runs.

    A file is taken as a video whatever its extension (it fails clearly if it is not one);
    a folder contributes its video files; a missing path or a folder without videos is a
    job that has already failed. Without `output_dir` each video goes where a single run
    would put it. `output_dir` is the exact folder when the batch is one video file, else a
    root with one folder per video; videos whose folders would coincide (the same stem
    from different folders) get folders named after their parent folders as well.
    """
    jobs: list[Job] = []
    seen: set[Path] = set()
    single_file = False
    for entry in paths:
        entry = Path(entry).expanduser()
        if entry.is_dir():
            found = find_videos(entry)
            if not found:
                jobs.append(Job(entry, None, f"no video files ({' '.join(VIDEO_EXTENSIONS)}) in this folder"))
        elif entry.exists():
            found, single_file = [entry], True
        else:
            jobs.append(Job(entry, None, broken_link(entry) or "does not exist; check the path"))
            continue
        for video in found:
            problem = broken_link(video)
            if problem is not None:  # a link in a folder that leads nowhere: that one is skipped
                log.warning("%s %s", video, problem)
                jobs.append(Job(video, None, problem))
            elif video.resolve() not in seen:
                seen.add(video.resolve())
                jobs.append(Job(video, None))
    videos = [job.video for job in jobs if job.error is None]
    if output_dir and single_file and len(videos) == 1 and len(jobs) == 1:
        return [Job(videos[0], Path(output_dir))]
    folders = dict(zip(videos, output_folders(videos, output_dir)))
    return [job if job.error else Job(job.video, folders[job.video]) for job in jobs]


def broken_link(path: Path) -> str | None:
    """What is wrong with a symbolic link that leads to no file (a loop, a missing target), or None."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13 reports a loop so
        return "is a symbolic link that loops back on itself; skipped"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that loops back on itself; skipped"
        return f"is a symbolic link to {os.readlink(path)}, which does not exist; skipped"
    return None


def output_folders(videos: list[Path], output_dir: str | Path | None) -> list[Path]:
    """One folder per video by the usual rule (`default_output_dir`; `output_dir` None: the
    settings file's), told apart where two coincide."""
    root = load_settings().output_dir if output_dir is None else str(output_dir)
    folders = [default_output_dir(video, root) for video in videos]
    groups: dict[Path, list[int]] = defaultdict(list)
    for i, folder in enumerate(folders):
        groups[folder].append(i)
    for folder, members in groups.items():
        if len(members) > 1:
            for i, name in zip(members, distinct_names([videos[i] for i in members])):
                folders[i] = folder.parent / name
    return folders


def distinct_names(videos: list[Path]) -> list[str]:
    """Folder names for videos that share a stem: `<parent>_<stem>`, each with as few parent
    folders as tell it apart, then the extension (`mice.mp4`, `mice.avi` in one folder)."""
    parents = [v.resolve().parent.parts[1:] for v in videos]
    names: dict[int, str] = {}
    pending = list(range(len(videos)))
    for depth in range(1, max(len(p) for p in parents) + 1):
        candidates = {i: "_".join((*parents[i][-depth:], videos[i].stem)) for i in pending}
        counts = Counter(candidates.values())
        names.update({i: name for i, name in candidates.items() if counts[name] == 1 and name not in names.values()})
        pending = [i for i in pending if i not in names]
    for i in pending:
        names[i] = "_".join((*parents[i][-1:], videos[i].stem, videos[i].suffix.lstrip(".")))
    return [names[i] for i in range(len(videos))]


# ---------------------------------------------------------------------------- one video


def batch_settings(options: dict) -> DepthSettings:
    """The batch's settings from `run_video_depth_anything`'s keyword arguments: an unknown
    name or a bad value fails the whole batch at once, not once per video."""
    unknown = sorted(set(options) - set(RUN_OPTIONS) - set(ALIASES))
    if unknown:
        raise TypeError(f"run_many() got unexpected keyword arguments: {', '.join(unknown)}")
    return DepthSettings.from_arguments(options)


def run_one(job: Job, resume: bool, settings: DepthSettings, progress=None, should_cancel=None) -> dict:
    """Depth for one video of a batch; every failure becomes the record's error.

    `progress(payload)` gets the runner's per-frame payloads and its stage payloads (those
    with a `stage`: the model's load, `run_video_depth_anything(stage_callback=)`). A complete result for which
    no frame was computed is a complete run found in the folder by `resume`: "skipped"."""
    from .runner import run_video_depth_anything  # torch loads with the first video, not with the batch

    if job.error is not None:
        return record(job.video, Status.FAILED, error=job.error)
    computed = False

    def on_frame(payload: dict) -> None:
        nonlocal computed
        computed = True
        if progress is not None:
            progress(payload)

    started = time.perf_counter()
    try:
        result = run_video_depth_anything(
            job.video, job.output_dir, resume=resume, frame_callback=on_frame, should_cancel=should_cancel,
            stage_callback=progress,
            **settings.arguments(),
        )
    except (DepthError, ValueError) as exc:
        return record(job.video, Status.FAILED, job.output_dir, seconds=time.perf_counter() - started, error=str(exc))
    except Exception as exc:  # out of memory, a decoder crash: this video fails, the batch goes on
        log.debug("%s failed", job.video, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
        return record(job.video, Status.FAILED, job.output_dir, seconds=time.perf_counter() - started, error=error)
    status = Status.CANCELLED if result["cancelled"] else Status.COMPLETE if computed or not result["frames"] else Status.SKIPPED
    return record(job.video, status, job.output_dir, result["frames"], time.perf_counter() - started)


# ---------------------------------------------------------------------------- the batch


def run_many(
    paths: Iterable[str | Path],
    *,
    output_dir: str | Path | None = None,
    resume: bool = False,
    report: str | Path | None = None,
    ray_address: str | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    progress: BatchProgress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_record: Callable[[dict], None] | None = None,
    **options,
) -> list[dict]:
    """Depth for every video in `paths` (videos and folders); one record per video, in order.

    `options` are `run_video_depth_anything`'s. `report` gets each record as a JSON line as
    soon as its video ends, so a batch that dies still says what finished. `resume` skips
    complete videos without loading the model and continues unfinished ones. With
    `ray_address` ("auto", "ray://host:port", "host:port" or "local") the videos run on a
    Ray cluster; `progress` and `should_cancel` are for local batches. Ctrl-C raises
    `BatchInterrupted` carrying the records so far.
    """
    settings = batch_settings(options)
    if ray_address is not None and (progress is not None or should_cancel is not None):
        raise ValueError("progress and should_cancel are for local batches; leave them out with ray_address")
    jobs = plan(paths, output_dir)
    with ReportFile(report) as sink:
        def ended(entry: dict) -> None:
            sink.write(entry)
            if on_record is not None:
                on_record(entry)

        if ray_address is not None:
            return run_on_ray(jobs, ray_address, resume, settings, ended, gpus_per_worker, cpus_per_worker)
        return run_here(jobs, resume, settings, ended, progress, should_cancel)


def run_here(jobs: list[Job], resume: bool, settings: DepthSettings, ended, progress, should_cancel) -> list[dict]:
    """The videos one after another in this process; the model loads once for all of them."""
    records: list[dict | None] = [None] * len(jobs)
    for number, job in enumerate(jobs):
        if should_cancel is not None and should_cancel():
            break
        report_progress = None
        if progress is not None:
            progress(number, job.video, None)
            report_progress = functools.partial(progress, number, job.video)
        try:
            records[number] = run_one(job, resume, settings, report_progress, should_cancel)
        except KeyboardInterrupt:
            records[number] = record(job.video, Status.CANCELLED, job.output_dir, error="interrupted")
            ended(records[number])
            raise BatchInterrupted(unfinished(jobs, records)) from None
        ended(records[number])
    return unfinished(jobs, records)


class ReportFile:
    """The JSON-lines report: appended to, one line per video as it ends, flushed to disk."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        self.stream = None

    def __enter__(self):
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.stream = open(self.path, "a", encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot write the report {self.path} ({exc.strerror}); choose another path") from None
        return self

    def write(self, entry: dict) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps(entry) + "\n")
            self.stream.flush()
            os.fsync(self.stream.fileno())

    def __exit__(self, *exc_info) -> None:
        if self.stream is not None:
            self.stream.close()


# ---------------------------------------------------------------------------- Ray


class RayError(DepthError):
    """Ray is not installed, or the cluster cannot be reached or cannot hold a worker."""


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayError(f"running on a Ray cluster needs Ray Data: {INSTALL_RAY}") from None
    return ray


def check_reachable(address: str) -> None:
    """Fail within seconds, naming the address, when nothing listens there (Ray itself
    keeps retrying for a minute or more)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"Ray address {address!r} is not host:port; use auto, local, ray://HOST:PORT or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
            "check that its head node is running (ray start --head) and the address and port"
        ) from None


def connect(ray, address: str) -> bool:
    """Join (or for `local`, start) a Ray instance; True when this call started the connection.
    `auto` in a process already connected (`ray.init()` by the caller) uses that cluster."""
    if address == "auto" and ray.is_initialized():
        return False
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address not in ("auto", "local"):
        check_reachable(address)
    if ray.is_initialized():
        raise RayError(f"this process is already connected to a Ray cluster; use the address auto to run there, not {address!r}")
    try:
        ray.init(address=address, include_dashboard=False if address == "local" else None,
                 logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise RayError(f"cannot join a Ray cluster with address {address!r} ({exc}); "
                       "start one (ray start --head), set RAY_ADDRESS, or use --ray local") from None
    return True


def worker_resources(ray, gpus_per_worker: float | None, cpus_per_worker: float | None) -> tuple[dict, int]:
    """Resources of one actor, and how many such actors the cluster holds at once: a GPU
    each where the cluster has GPUs (unless `gpus_per_worker` is 0), else CPUs."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    has_gpus = any(node.get("GPU", 0) for node in nodes)
    if gpus_per_worker and not has_gpus:
        raise RayError("the Ray cluster has no GPUs; leave out --gpus-per-worker to run on its CPUs")
    if has_gpus and gpus_per_worker != 0:
        kind, need = "GPU", {"num_gpus": gpus_per_worker or 1, "num_cpus": cpus_per_worker or 1}
    else:
        most = max(node.get("CPU", 0) for node in nodes)
        kind, need = "CPU", {"num_gpus": 0, "num_cpus": cpus_per_worker or min(CPUS_PER_WORKER, most)}
    per_worker = need[f"num_{kind.lower()}s"]
    fits = sum(int(node.get(kind, 0) // per_worker) for node in nodes if node.get("CPU", 0) >= need["num_cpus"])
    if fits == 0:
        raise RayError(f"no node of the Ray cluster has {per_worker:g} {kind}s for one worker; "
                       f"lower --{kind.lower()}s-per-worker")
    return need, fits


class VideoWorker:
    """A Ray Data actor: whole videos, one after another, with the model kept loaded."""

    def __init__(self, settings: DepthSettings, resume: bool):
        self.settings, self.resume = settings, resume

    def __call__(self, batch: dict) -> dict:
        from .engine import reuse_freed_memory

        entries = []
        for video, output_dir, error in zip(batch["video"], batch["output_dir"], batch["error"]):
            job = Job(Path(video), Path(output_dir) if output_dir else None, error or None)
            # this process is the actor's alone, as the CLI's is its own; a retry of a video whose node
            # died finds that node's lock and waits for its lease to run out, then takes it over
            with reuse_freed_memory(), waiting_for_leases():
                entries.append(json.dumps(run_one(job, self.resume, self.settings)))
        return {"index": batch["index"], "record": entries}


def run_on_ray(jobs: list[Job], address: str, resume: bool, settings: DepthSettings, ended,
               gpus_per_worker: float | None, cpus_per_worker: float | None) -> list[dict]:
    """The batch as a Ray Data dataset of one row per video, mapped by a pool of VideoWorkers.

    Workers get absolute paths, the same folders a local run would write, so the cluster's
    nodes must see them at those paths (shared storage). Records are reported as videos
    finish, in any order, and returned in the batch's order. When Ray loses workers it cannot
    bring back (their node died), the videos without a record run again, up to RAY_ATTEMPTS
    times: their folders' locks and resume points make that exact.
    """
    ray = import_ray()
    started = connect(ray, address)
    try:
        need, fits = worker_resources(ray, gpus_per_worker, cpus_per_worker)
        records: list[dict | None] = [None] * len(jobs)
        ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI says when each video ends
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        for attempt in range(1, RAY_ATTEMPTS + 1):
            left = [i for i, entry in enumerate(records) if entry is None]
            if not left:
                break
            try:
                for row in ray_rows(ray, jobs, left, settings, resume, need, min(fits, len(left))):
                    job = jobs[row["index"]]
                    entry = {**json.loads(row["record"]), "path": str(job.video)}
                    if entry["output_dir"] is not None:
                        entry["output_dir"] = str(job.output_dir)
                    records[row["index"]] = entry
                    ended(entry)
            except KeyboardInterrupt:
                raise BatchInterrupted(unfinished(jobs, records)) from None
            except ray.exceptions.RayError as exc:  # a worker that Ray could not bring back (its node died)
                if attempt == RAY_ATTEMPTS:
                    raise RayError(f"the Ray cluster lost the workers of this batch {attempt} times ({exc}); "
                                   f"run it again with --resume to go on") from None
                log.warning("the Ray cluster lost a worker (%s); running the %d unfinished videos again",
                            str(exc).splitlines()[0], sum(entry is None for entry in records))
        return unfinished(jobs, records)
    finally:
        if started:
            ray.shutdown()


def ray_rows(ray, jobs: list[Job], indices: list[int], settings: DepthSettings, resume: bool, need: dict, workers: int):
    """The records of `jobs[indices]`, one row per video as each ends, from a pool of VideoWorkers."""
    rows = [
        {"index": i, "video": str(jobs[i].video.absolute()),
         "output_dir": str(jobs[i].output_dir.absolute()) if jobs[i].output_dir else "", "error": jobs[i].error or ""}
        for i in indices
    ]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        VideoWorker,
        fn_constructor_kwargs={"settings": settings, "resume": resume},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        **need,
    )
    return dataset.iter_rows()


def unfinished(jobs: list[Job], records: list[dict | None]) -> list[dict]:
    """Every video's record, "not started" for those without one."""
    return [entry or record(job.video, Status.NOT_STARTED, job.output_dir) for job, entry in zip(jobs, records)]
