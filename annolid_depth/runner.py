"""`run_video_depth_anything`: video in, depth outputs on disk.

Wires a `VideoSource` to an engine and the engine to the sinks, inside a `RunFolder` that
locks the output folder, describes the run in `run.json`, saves resume points and publishes
the outputs once the run completes. Everything that can be checked before inference
(arguments, video, output folder, optional packages, weights) is checked first, so a bad
argument never costs a model load or leaves partial output.

The signature is Annolid's, parameter for parameter and in its order, so Annolid's own code
and scripts drive this package unchanged; everything this package adds is keyword-only. The
defaults are the options' own (`settings.DEFAULT`), and the options become a `DepthSettings`
in one step.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .background import Relay
from .engine import Engine, OfflineEngine, StreamingEngine, pick_device, pick_precision
from .engine.backends import pick_backend
from .engine.loading import load_model
from .errors import OutputError
from .io.colour import colorize
from .io.files import partial
from .io.folder_lock import now
from .io.pipeline import OrderedWriter, spare_cores
from .io.records import KINDS
from .io.run_folder import RUN_JSON, Plan, RunFolder, Status, video_fingerprint
from .io.sinks import ResumePoint, RunInfo, Sink, build_sinks, close_all, open_sinks, output_names
from .io.source import VideoSource
from .settings import DEFAULT, DepthSettings, default_output_dir, load_settings
from .weights import checkpoint_key, checkpoint_sha256, ensure_checkpoint

log = logging.getLogger(__name__)

RECORD_EVERY_S = 2.0  # run.json's frame count is at most this old
CHECKPOINT_MIN_S = 2.0  # resume points are saved at most this often ...
CHECKPOINT_COST = 10  # ... and at most as often as keeps saving them under 1/10 of the run


def run_video_depth_anything(
    input_video: str | Path,
    output_dir: str | Path | None = None,
    encoder: str = DEFAULT.encoder,
    input_size: int = DEFAULT.input_size,
    max_res: int = DEFAULT.max_res,
    max_len: int = DEFAULT.max_frames,
    target_fps: float = DEFAULT.target_fps,
    metric: bool = DEFAULT.metric,
    fp32: bool = DEFAULT.fp32,
    grayscale: bool = DEFAULT.grayscale,
    save_npz: bool = DEFAULT.save_npz,
    save_exr: bool = DEFAULT.save_exr,
    focal_length_x: float = DEFAULT.focal_length_x,
    focal_length_y: float = DEFAULT.focal_length_y,
    checkpoint_root: str | Path | None = None,
    progress_callback: Callable[[int], None] | None = None,
    preview_callback: Callable[[dict], None] | None = None,
    streaming: bool = DEFAULT.streaming,
    save_depth_video: bool = DEFAULT.save_depth_video,
    save_depth_frames: bool = DEFAULT.save_depth_frames,
    save_point_clouds: bool = DEFAULT.save_point_clouds,
    include_region_labels: bool = DEFAULT.include_region_labels,
    *,
    max_frames: int | None = None,
    point_cloud_format: str = DEFAULT.point_cloud_format,
    point_cloud_stride: int = DEFAULT.point_cloud_stride,
    point_cloud_voxel: float = DEFAULT.point_cloud_voxel,
    device: str | None = None,
    precision: str | None = None,
    save_region_stats: bool = DEFAULT.save_region_stats,
    backend: str = DEFAULT.backend,
    resume: bool = False,
    frame_callback: Callable[[dict], None] | None = None,
    stage_callback: Callable[[dict], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> dict:
    """Estimate depth for every processed frame of `input_video` and write the outputs.

    `output_dir` defaults to a folder next to the video named after its stem (or
    `<video_depth_anything.output_dir>/<stem>` when set in ~/.labelmerc). `max_frames` is an
    alias of `max_len`; 0 or -1 for `max_len`, `max_res` and `target_fps` mean no limit.

    Callbacks each take one argument: `progress_callback(percent)` an int 0-100 that never
    decreases and ends at 100 on a completed run; `preview_callback(payload)` and
    `frame_callback(payload)` a dict per frame with `frame_index`, `frames_done`,
    `frames_total` (None when unknown), `rgb`, `depth` (float32) and `depth_kind`; the
    preview payload adds `overlay` (colour depth, uint8 RGB, range from the 1st to the 99th
    percentile) and `depth_stats`; the per-frame payloads also say how many frames this run
    computed (`frames_computed`, a resumed run's earlier ones not counted) and whether the frame
    ends a group the engine computed together (`group_end`), for rates that mean something.
    `stage_callback(payload)` hears of the model's load before it starts (`stage` "loading")
    and once it is done ("running", with `load_s`), with what the run is: `encoder`, `device`,
    `backend`, `precision`, `input_size`, `width` x `height`, `frames_total`, `frames_done`
    (a resume's start). `should_cancel()` or a set `stop_event` ends the run as a
    cancel: what was done stays, and `resume=True` continues it. `resume=True` returns a
    complete run with the same video, settings and model at once.

    Relative models give disparity (larger = nearer, unknown scale and shift); metric models
    give metres. Returns Annolid's entries (lists of paths: `output_dir`, `depth_ndjson`, ...)
    and the run's facts (`status`, `frames`, `fps`, ...).
    """
    settings = DepthSettings.from_arguments(locals())
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be true or false, got {resume!r}")
    torch_device = pick_device(settings.device or None)
    run_precision = pick_precision(torch_device, settings.fp32, settings.precision or None)
    run_backend = pick_backend(settings.backend, torch_device, run_precision)
    with VideoSource(input_video, settings.target_fps, settings.max_frames, settings.max_res) as source:
        checkpoint = ensure_checkpoint(settings.encoder, settings.metric, settings.checkpoint_root or None)
        out = Path(output_dir) if output_dir else default_output_dir(source.path, load_settings().output_dir)
        prepare_output_dir(out)
        with RunFolder(out) as folder:
            run = Run(folder, source, settings, checkpoint, torch_device, run_precision, run_backend)
            plan = folder.plan(run.identity(), resume)
            if not plan.done:
                callbacks = Callbacks(progress_callback, preview_callback, frame_callback, source.frame_count, run.info,
                                      stage_callback)
                stop = (should_cancel or (lambda: False), stop_event or threading.Event())
                run.execute(plan, callbacks, lambda: stop[0]() or stop[1].is_set())
            return run.result(plan.record)


def prepare_output_dir(path: Path) -> None:
    """Create the folder and prove it is writable before any work starts."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is a file; choose a folder (output_dir=...)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {path} ({exc.strerror}); choose another output_dir") from None


@dataclass
class Outcome:
    """How a run ends: its status, and the error that ended it."""

    status: Status = Status.FAILED
    error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        self.status, self.error = Status.FAILED, error


class Run:
    """One run of one video into its folder: what it is (identity), doing it, its result."""

    def __init__(self, folder: RunFolder, source: VideoSource, settings: DepthSettings, checkpoint: Path,
                 device: torch.device, precision: str, backend: str):
        self.folder, self.source, self.settings = folder, source, settings
        self.checkpoint, self.device, self.precision, self.backend = checkpoint, device, precision, backend
        self.info = RunInfo(Path(source.path), folder.path, source.width, source.height, source.output_fps, settings,
                            source_fps=source.fps)
        self.warnings: list[str] = []

    def identity(self) -> dict:
        """What makes two runs the same run: the video, the settings that change the numbers
        or the outputs, and the model."""
        return {
            "video": video_fingerprint(Path(self.source.path)),
            "settings": self.settings.identity(),
            "model": {
                "key": checkpoint_key(self.settings.encoder, self.settings.metric),
                "sha256": checkpoint_sha256(self.checkpoint),
                "precision": self.precision,
            },
        }

    def begin(self, plan: Plan) -> list[Sink]:
        """Open the sinks and record what this run is and will write."""
        source, record = self.source, plan.record
        self.warnings += self.folder.notes + plan.notes
        sinks = self.open_outputs(plan)
        record.update({
            "started": record.get("started") or now(), "device": str(self.device), "frames_done": plan.resume_at,
            "mode": "streaming" if self.settings.streaming else "offline", "frames_expected": source.frame_count,
            "processed": {"width": source.width, "height": source.height, "fps": source.output_fps},
            "outputs": {sink.result_key: sink.name(self.info) for sink in sinks},
            "resume_point": record.get("resume_point") if plan.resume_at else None,
        })
        record.setdefault("previous", None)
        record["replaces"] = sorted((set(output_names(self.info)) | set((record["previous"] or {}).get("outputs", {}).values()))
                                    - set(record["outputs"].values()))
        self.folder.write(record)
        return sinks

    def open_outputs(self, plan: Plan) -> list[Sink]:
        """The run's sinks, opened where the plan says: at its resume point, or afresh (also
        when the partial outputs do not reach the resume point)."""
        if plan.resume_at:
            self.info.resume = ResumePoint(plan.resume_at, plan.last_index, plan.record["resume_point"].get("marks", {}))
        else:
            self.folder.discard_unfinished()
        try:
            missing = sorted(self.engine_kind().STATE_KEYS - set(plan.state or {})) if plan.resume_at else []
            if missing:
                state = self.folder.path / plan.record["resume_point"]["state"]
                raise ValueError(f"the resume state {state} lacks {', '.join(missing)}")
            return open_sinks(build_sinks(self.info), self.info)
        except ValueError as exc:
            if not plan.resume_at:
                raise
            self.warnings.append(f"cannot resume ({exc}); starting over")
            log.warning("%s: %s", self.folder.path, self.warnings[-1])
            plan.resume_at, plan.last_index, plan.state, self.info.resume = 0, None, None, None
            self.folder.discard_unfinished()
            return open_sinks(build_sinks(self.info), self.info)

    def engine(self) -> Engine:
        model = load_model(str(self.checkpoint), self.checkpoint.stat().st_mtime_ns, self.settings.encoder,
                           self.settings.metric, str(self.device), self.precision, self.backend)
        return self.engine_kind()(model, self.settings.input_size, self.device, self.precision)

    def facts(self, plan: Plan) -> dict:
        """What the run will do, for the stage callback."""
        return {"encoder": self.settings.encoder, "device": self.device.type, "backend": self.backend,
                "precision": self.precision, "input_size": self.settings.input_size, "width": self.source.width,
                "height": self.source.height, "frames_total": self.source.frame_count, "frames_done": plan.resume_at}

    def engine_kind(self) -> type[Engine]:
        return StreamingEngine if self.settings.streaming else OfflineEngine

    def execute(self, plan: Plan, callbacks: Callbacks, cancel_requested: Callable[[], bool]) -> None:
        """The frames through the engine to the sinks, then the run's end recorded; a cancel
        finishes the frames already computed and saves a resume point."""
        sinks = self.begin(plan)
        writer = OrderedWriter(sinks, workers=spare_cores(self.device))
        loop = FrameLoop(self.folder, plan, sinks, writer, callbacks)
        outcome, started, frames, decoded = Outcome(), time.perf_counter(), None, None
        try:
            facts = self.facts(plan)
            callbacks.stage({"stage": "loading", **facts})
            loading = time.perf_counter()
            engine = self.engine()
            callbacks.stage({"stage": "running", **facts, "load_s": round(time.perf_counter() - loading, 3)})
            decoded = self.source.frames(skip=plan.resume_at)  # read ahead by the engine
            frames = engine.run(decoded, plan.state)
            outcome.status = loop.run(engine, frames, cancel_requested)
            writer.drain()
            if outcome.status is Status.CANCELLED:
                loop.save_resume_point(engine, finishing=True)
        except KeyboardInterrupt:
            outcome.status = Status.CANCELLED
            raise
        except OSError as exc:  # failed, even when the last frame was computed (a write behind it failed)
            outcome.fail(out_of_space(exc, self.folder.path, loop.done))
            raise outcome.error from exc
        except BaseException as exc:
            outcome.fail(exc)
            raise
        finally:
            with deferred_interrupts() as interrupted:
                for generator in (frames, decoded):
                    if generator is not None:
                        generator.close()
                writer.finish(raise_error=False)
                loop.saver.close()  # a resume point being written is finished first
                close_error = self.end(plan.record, sinks, loop, outcome, started)
            if interrupted and outcome.status is not Status.COMPLETE:  # a run that completed meanwhile stands
                raise KeyboardInterrupt
            if outcome.status is Status.COMPLETE:
                callbacks.finished()
            if close_error is not None and outcome.error is not None and outcome.status is Status.FAILED:
                raise outcome.error from close_error

    def end(self, record: dict, sinks: list[Sink], loop: FrameLoop, outcome: Outcome, started: float) -> BaseException | None:
        """Close the sinks and record how the run ended, publishing its outputs when it
        completed (a failure to close or publish then fails the run); returns the error that
        closing gave."""
        close_error = close_all(sinks, completed=outcome.status is Status.COMPLETE)
        if close_error is not None and outcome.status is Status.COMPLETE:
            outcome.fail(out_of_space(close_error, self.folder.path, loop.done))
        elapsed = time.perf_counter() - started
        self.warnings += self.source.warnings
        record.update({"status": outcome.status, "frames_done": loop.done,
                       "error": None if outcome.error is None else str(outcome.error),
                       "skipped_frames": self.source.skipped_frames, "warnings": self.warnings,
                       "elapsed_s": round(elapsed, 3), "resume_points_s": round(loop.timer.spent, 3),
                       "frames_per_second": round(loop.computed / elapsed, 3) if elapsed > 0 else None})
        try:
            self.folder.complete(record) if outcome.status is Status.COMPLETE else self.folder.write(record)
        except OSError as exc:  # run.json keeps its last state, which is resumable
            log.warning("%s could not be updated: %s", self.folder.path / RUN_JSON, exc.strerror or exc)
            if outcome.status is Status.COMPLETE:
                outcome.fail(out_of_space(exc, self.folder.path, loop.done))
                close_error = close_error or exc
        return close_error

    def result(self, record: dict) -> dict:
        """Annolid's entries (lists of path strings) and this package's facts about the run."""
        out = self.folder.path
        complete = record["status"] == Status.COMPLETE
        paths = {}
        for key, name in record.get("outputs", {}).items():
            path = out / name if complete else partial(out / name)
            if not path.exists():
                continue
            listed = key in ("depth_frames", "point_cloud_csv") and path.is_dir()
            paths[key] = sorted(str(p) for p in path.iterdir()) if listed else [str(path)]
        settings = self.settings
        return {
            "output_dir": [str(out)],
            **paths,
            "status": record["status"],
            "cancelled": record["status"] == Status.CANCELLED,
            "run_json": str(out / RUN_JSON),
            "video": str(self.source.path),
            "frames": record.get("frames_done", 0),
            "skipped_frames": record.get("skipped_frames", 0),
            "fps": self.source.output_fps,
            "model": record["model"]["key"],
            "encoder": settings.encoder,
            "depth_kind": self.info.kind,
            "depth_unit": KINDS[self.info.kind],
            "mode": record.get("mode"),
            "device": str(self.device),
            "precision": self.precision,
            "elapsed_s": record.get("elapsed_s"),
            "resume_points_s": record.get("resume_points_s"),  # of the network's thread, saving resume points
            "frames_per_second": record.get("frames_per_second"),
            "warnings": record.get("warnings", []),
        }


class ResumeTimer:
    """When the next resume point is due: at most every CHECKPOINT_MIN_S, and rarely enough
    that saving them (the copy on the network's thread and the writing beside it) takes under
    1/CHECKPOINT_COST of the run. `spent` sums the network thread's part."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.saved_at, self.cost, self.spent, self.writing = clock(), 0.0, 0.0, 0.0

    def due(self) -> bool:
        return self.clock() - self.saved_at >= max(CHECKPOINT_MIN_S, CHECKPOINT_COST * (self.cost + self.writing))

    def taken(self, began: float) -> None:
        """A resume point was taken, the network's thread busy with it since `began` (a clock()
        reading); the interval starts again only then."""
        self.saved_at = self.clock()
        self.cost = self.saved_at - began
        self.spent += self.cost


class ResumeSaver:
    """Resume points written by a thread of their own, so the network's thread pays only for
    the snapshot's copy: each state goes to a new file, and run.json points at it once it is
    whole on disk (`RunFolder.save_state`, `point_at`). One is written at a time; a point that
    comes due while one is being written is left out."""

    def __init__(self, folder: RunFolder, record: dict, timer: ResumeTimer):
        self.folder, self.record, self.timer = folder, record, timer
        self.relay = Relay(1, "resume points", handle=self._save)

    def busy(self) -> bool:
        return self.relay.queue.unfinished_tasks > 0

    def put(self, state: dict, last_index: int, marks: dict) -> None:
        self.relay.put((state, last_index, marks))

    def _save(self, item) -> None:
        began = time.monotonic()
        state, last_index, marks = item
        written = self.folder.save_state(state)
        self.folder.point_at(self.record, written, state["frames"], last_index, marks)
        self.timer.writing = time.monotonic() - began

    def drain(self) -> None:
        self.relay.drain()

    def close(self) -> None:
        self.relay.close()


class Heartbeat:
    """run.json's count of the frames done, rewritten at most every RECORD_EVERY_S."""

    def __init__(self, folder: RunFolder, record: dict):
        self.folder, self.record, self.at = folder, record, time.monotonic()

    def beat(self, done: int) -> None:
        if time.monotonic() - self.at >= RECORD_EVERY_S:
            self.record["frames_done"], self.at = done, time.monotonic()
            self.folder.write(self.record)


class FrameLoop:
    """The engine's frames to the writer and the callbacks, in order, with resume points saved
    and run.json's count kept fresh along the way."""

    def __init__(self, folder: RunFolder, plan: Plan, sinks: list[Sink], writer: OrderedWriter, callbacks: Callbacks):
        self.folder, self.record, self.sinks, self.writer, self.callbacks = folder, plan.record, sinks, writer, callbacks
        self.first, self.done, self.last_index = plan.resume_at, plan.resume_at, plan.last_index
        self.timer, self.heartbeat = ResumeTimer(), Heartbeat(folder, plan.record)
        self.saver = ResumeSaver(folder, plan.record, self.timer)

    @property
    def computed(self) -> int:
        """Frames computed in this run (a resumed run's earlier ones not counted)."""
        return self.done - self.first

    def run(self, engine: Engine, frames, cancel_requested: Callable[[], bool]) -> Status:
        """Every frame (complete), or up to a cancel: the frames already computed are handed
        out too, for a resume point (cancelled, or complete if they were the video's last)."""
        for item in frames:
            self.hand_out(*item, engine.ready() == 0)
            if cancel_requested():
                for computed in itertools.islice(frames, engine.ready()):
                    self.hand_out(*computed, engine.ready() == 0)
                return Status.COMPLETE if engine.finished() else Status.CANCELLED
            if engine.ready() == 0 and self.timer.due():  # a group's end: where a resume point can be taken
                self.save_resume_point(engine)
            self.heartbeat.beat(self.done)
        return Status.COMPLETE

    def hand_out(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray, group_end: bool) -> None:
        self.writer.write(frame_index, rgb, depth)
        self.done, self.last_index = self.done + 1, frame_index
        self.callbacks.frame(self.done, self.computed, group_end, frame_index, rgb, depth)

    def save_resume_point(self, engine: Engine, finishing: bool = False) -> None:
        """At an engine boundary (else nothing), once every frame handed out is written: the
        snapshot and the sinks' marks here, the file by the saver's thread. `finishing` (a
        cancel): after the one being written, and on disk before this returns."""
        if finishing:
            self.saver.drain()
        if self.saver.busy() or (self.record.get("resume_point") or {}).get("frames") == self.done:
            return
        began = self.timer.clock()
        state = engine.snapshot()
        if state is None:  # not at a group's end: still due at the next one
            return
        self.writer.drain()
        self.saver.put(state, self.last_index, {sink.result_key: sink.mark() for sink in self.sinks})
        self.timer.taken(began)
        if finishing:
            self.saver.drain()


def out_of_space(exc: BaseException, folder: Path, done: int) -> BaseException:
    """A write error as a message that says what to do; other errors as they are."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left on the device holding {folder}; free some space, then run again "
                           f"with resume=True (annolid-depth --resume) to go on from the {done} frames done")
    if isinstance(exc, OSError) and exc.errno is not None:
        return OutputError(f"cannot write the outputs in {folder} ({exc.strerror}); "
                           f"fix that, then run again with resume=True (annolid-depth --resume)")
    return exc


@contextlib.contextmanager
def deferred_interrupts():
    """Let a Ctrl-C during clean-up wait until the clean-up is done, so it cannot leave a
    half-closed output; the list it yields says whether one came (main thread only:
    signals arrive there)."""
    caught: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)


class Callbacks:
    """Annolid's progress (percent) and preview (payload) callbacks and this package's
    per-frame and stage callbacks, all fed from one place."""

    def __init__(self, progress, preview, frame, total: int | None, info: RunInfo, stage=None):
        self.progress, self.preview, self.on_frame, self.on_stage = progress, preview, frame, stage
        self.total, self.info = total, info
        self.percent = -1

    def stage(self, payload: dict) -> None:
        if self.on_stage is not None:
            self.on_stage(payload)

    def frame(self, done: int, computed: int, group_end: bool, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        total = max(self.total, done) if self.total is not None else None
        if self.progress is not None and total:
            self._report(min(99, done * 100 // total))  # 100 only once the run is complete
        if self.on_frame is None and self.preview is None:
            return
        payload = {"frame_index": int(frame_index), "frames_done": done, "frames_total": total, "rgb": rgb,
                   "depth": depth, "depth_kind": self.info.kind, "frames_computed": computed, "group_end": group_end}
        if self.on_frame is not None:
            self.on_frame(payload)
        if self.preview is not None:
            self.preview({**payload, **preview_overlay(depth, self.info.settings.metric, self.info.settings.grayscale)})

    def finished(self) -> None:
        if self.progress is not None:
            self._report(100)

    def _report(self, percent: int) -> None:
        if percent > self.percent:
            self.percent = percent
            self.progress(percent)


def preview_overlay(depth: np.ndarray, metric: bool, grayscale: bool) -> dict:
    """Annolid's preview entries: the depth coloured over its 1st..99th percentile (RGB
    uint8, nearer brighter) and its statistics."""
    all_finite = np.isfinite(depth.min() + depth.max())  # as every frame the engines hand out is
    finite = depth.ravel() if all_finite else depth[np.isfinite(depth)]
    if finite.size:
        lo, hi = display_range(finite)
        stats = {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean())}
    else:
        lo, hi, stats = 0.0, 1.0, {"min": float("nan"), "max": float("nan"), "mean": float("nan")}
    if hi <= lo and finite.size:
        lo, hi = stats["min"], stats["max"]
    overlay = cv2.cvtColor(colorize(depth, lo, hi, metric, grayscale), cv2.COLOR_BGR2RGB)
    return {"overlay": overlay, "depth_stats": {**stats, "display_min": lo, "display_max": hi}}


TAIL_SAMPLE = 8192  # values sampled to find where a map's 1 % tails begin


def display_range(values: np.ndarray) -> tuple[float, float]:
    """`np.percentile(values, (1, 99))` of finite 1-D values, the same floats, faster on a
    large map (it runs on the network's thread for every preview; bench/bench_pipeline.py): only
    the values below the 2nd and above the 98th percentile of a strided sample are
    partitioned, since they hold the order statistics needed whenever they are enough;
    otherwise, and for small maps, numpy does it all."""
    n = values.size
    if n >= 16 * TAIL_SAMPLE:
        position = (n - 1) * (np.array([1.0, 99.0]) / 100)  # numpy's linear method, as it computes it
        below = np.floor(position).astype(np.intp)
        gamma = position - below
        sample = np.sort(values[:: n // TAIL_SAMPLE])
        low = values[values <= sample[len(sample) // 50]]  # the smallest values, ties included
        high = values[values >= sample[-1 - len(sample) // 50]]  # the largest
        rank_low, rank_high = below[0], below[1] - (n - high.size)  # ranks within each tail
        if low.size >= rank_low + 2 and rank_high >= 0:
            a, b = np.stack([np.partition(low, (rank_low, rank_low + 1))[rank_low : rank_low + 2],
                             np.partition(high, (rank_high, rank_high + 1))[rank_high : rank_high + 2]], axis=1)
            step = b - a
            ends = np.where(gamma >= 0.5, b - step * (1 - gamma), a + step * gamma)
            return float(ends[0]), float(ends[1])
    return tuple(float(v) for v in np.percentile(values, (1, 99)))
