"""`run_video_depth_anything`: video in, depth outputs on disk.

Wires a `VideoSource` to an engine and the engine to the sinks, inside a `RunFolder` that
locks the output folder, describes the run in `run.json`, saves resume points and publishes
the outputs once the run completes. Everything that can be checked before inference
(arguments, video, output folder, optional packages, weights) is checked first, so a bad
argument never costs a model load or leaves partial output.

The signature is Annolid's, parameter for parameter and in its order, so Annolid's own code
and scripts drive this package unchanged; everything this package adds is keyword-only.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from .engine import OfflineEngine, StreamingEngine, pick_device, pick_precision
from .engine.backends import load_backend, pick_backend
from .engine.device import DTYPES
from .errors import OutputError
from .io.pipeline import OrderedWriter, spare_cores
from .io.records import KINDS
from .io.run_folder import RUN_JSON, RunFolder, now, video_fingerprint
from .io.sinks import ResumePoint, RunInfo, build_sinks, colorize, output_names, partial
from .io.source import VideoSource
from .model import VideoDepthAnything
from .settings import DepthSettings, default_output_dir, load_settings
from .weights import checkpoint_key, checkpoint_sha256, ensure_checkpoint, load_weights

log = logging.getLogger(__name__)

RECORD_EVERY_S = 2.0  # run.json's frame count is at most this old
CHECKPOINT_MIN_S = 2.0  # resume points are saved at most this often ...
CHECKPOINT_COST = 10  # ... and at most as often as keeps saving them under 1/10 of the run
# Settings that change neither the numbers nor the outputs, so a resume may differ in them.
NOT_IDENTITY = ("output_dir", "checkpoint_root", "device", "fp32", "precision", "backend")


def run_video_depth_anything(
    input_video: str | Path,
    output_dir: str | Path | None = None,
    encoder: str = "vits",
    input_size: int = 518,
    max_res: int = 1280,
    max_len: int = -1,
    target_fps: float = -1,
    metric: bool = False,
    fp32: bool = False,
    grayscale: bool = False,
    save_npz: bool = False,
    save_exr: bool = False,
    focal_length_x: float = 470.4,
    focal_length_y: float = 470.4,
    checkpoint_root: str | Path | None = None,
    progress_callback: Callable[[int], None] | None = None,
    preview_callback: Callable[[dict], None] | None = None,
    streaming: bool = True,
    save_depth_video: bool = False,
    save_depth_frames: bool = False,
    save_point_clouds: bool = False,
    include_region_labels: bool = False,
    *,
    max_frames: int | None = None,
    point_cloud_format: str = "csv",
    point_cloud_stride: int = 1,
    point_cloud_voxel: float = 0.0,
    device: str | None = None,
    precision: str | None = None,
    save_region_stats: bool = False,
    backend: str = "torch",
    resume: bool = False,
    frame_callback: Callable[[dict], None] | None = None,
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
    percentile) and `depth_stats`. `should_cancel()` or a set `stop_event` ends the run as a
    cancel: what was done stays, and `resume=True` continues it. `resume=True` returns a
    complete run with the same video, settings and model at once.

    Relative models give disparity (larger = nearer, unknown scale and shift); metric models
    give metres. Returns Annolid's entries (lists of paths: `output_dir`, `depth_ndjson`, ...)
    and the run's facts (`status`, `frames`, `fps`, ...).
    """
    settings = DepthSettings(
        encoder=encoder, metric=metric, input_size=input_size, max_res=max_res, target_fps=target_fps,
        max_frames=max_len if max_frames is None else max_frames, streaming=streaming, fp32=fp32,
        precision=precision or "", grayscale=grayscale, save_depth_video=save_depth_video,
        save_depth_frames=save_depth_frames, save_point_clouds=save_point_clouds,
        point_cloud_format=point_cloud_format, point_cloud_stride=point_cloud_stride,
        point_cloud_voxel=point_cloud_voxel, save_npz=save_npz, save_exr=save_exr,
        include_region_labels=include_region_labels, save_region_stats=save_region_stats, focal_length_x=focal_length_x, focal_length_y=focal_length_y,
        checkpoint_root=str(checkpoint_root or ""), device=device or "", backend=backend,
    ).normalized()
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
                callbacks = Callbacks(progress_callback, preview_callback, frame_callback, source.frame_count, run.info)
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


class Run:
    """One run of one video into its folder: what it is (identity), doing it, its result."""

    def __init__(self, folder: RunFolder, source: VideoSource, settings: DepthSettings, checkpoint: Path,
                 device: torch.device, precision: str, backend: str):
        self.folder, self.source, self.settings = folder, source, settings
        self.checkpoint, self.device, self.precision, self.backend = checkpoint, device, precision, backend
        self.info = RunInfo(Path(source.path), folder.path, Path(source.path).stem, source.width, source.height,
                            source.output_fps, settings, source_fps=source.fps)
        self.warnings: list[str] = []

    def identity(self) -> dict:
        """What makes two runs the same run: the video, the settings that change the numbers
        or the outputs, and the model."""
        return {
            "video": video_fingerprint(Path(self.source.path)),
            "settings": {k: v for k, v in asdict(self.settings).items() if k not in NOT_IDENTITY},
            "model": {
                "key": checkpoint_key(self.settings.encoder, self.settings.metric),
                "sha256": checkpoint_sha256(self.checkpoint),
                "precision": self.precision,
            },
        }

    def begin(self, plan) -> list:
        """Open the sinks where the plan says (at its resume point, or afresh: also when the
        partial outputs cannot resume) and record what this run is and will write."""
        source, folder, record = self.source, self.folder, plan.record
        self.warnings += plan.notes
        if plan.resume_at:
            self.info.resume = ResumePoint(plan.resume_at, plan.last_index, record["resume_point"].get("marks", {}))
        else:
            folder.discard_unfinished()
        try:
            opened = self.open_sinks()
        except ValueError as exc:  # the partial outputs do not reach the resume point
            if not plan.resume_at:
                raise
            self.warnings.append(f"cannot resume ({exc}); starting over")
            log.warning("%s: %s", folder.path, self.warnings[-1])
            plan.resume_at, plan.last_index, plan.state, self.info.resume = 0, None, None, None
            folder.discard_unfinished()
            opened = self.open_sinks()
        record.update({
            "started": record.get("started") or now(), "device": str(self.device), "frames_done": plan.resume_at,
            "mode": "streaming" if self.settings.streaming else "offline", "frames_expected": source.frame_count,
            "processed": {"width": source.width, "height": source.height, "fps": source.output_fps},
            "outputs": {sink.result_key: sink.name(self.info) for sink in opened},
            "resume_point": record.get("resume_point") if plan.resume_at else None,
        })
        record.setdefault("previous", None)
        record["replaces"] = sorted((set(output_names(self.info)) | set((record["previous"] or {}).get("outputs", {}).values()))
                                    - set(record["outputs"].values()))
        folder.write(record)
        return opened

    def execute(self, plan, callbacks: Callbacks, cancel_requested: Callable[[], bool]) -> None:
        source, folder, record = self.source, self.folder, plan.record
        opened = self.begin(plan)
        started, status, error = time.perf_counter(), "failed", None
        done, last_index = plan.resume_at, plan.last_index
        writer = OrderedWriter(opened, workers=spare_cores(self.device))
        engine = frames = decoded = None
        saved_at, save_cost, recorded_at = time.monotonic(), 0.0, time.monotonic()

        def save_resume_point() -> None:
            nonlocal saved_at, save_cost
            state = engine.snapshot()
            if state is None:
                return
            began = time.monotonic()
            writer.drain()
            folder.save_state(record, state, last_index, {sink.result_key: sink.mark() for sink in opened})
            saved_at, save_cost = time.monotonic(), time.monotonic() - began

        def hand_out(frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
            nonlocal done, last_index
            writer.write(frame_index, rgb, depth)
            done, last_index = done + 1, frame_index
            callbacks.frame(done, frame_index, rgb, depth)

        try:
            model = load_model(str(self.checkpoint), self.checkpoint.stat().st_mtime_ns, self.settings.encoder,
                               self.settings.metric, str(self.device), self.precision, self.backend)
            engine = (StreamingEngine if self.settings.streaming else OfflineEngine)(
                model, self.settings.input_size, self.device, self.precision)
            decoded = source.frames(skip=plan.resume_at)  # read ahead by the engine
            frames = engine.run(decoded, plan.state)
            for item in frames:
                hand_out(*item)
                if cancel_requested():
                    for computed in itertools.islice(frames, engine.ready()):  # finish them: a resume point
                        hand_out(*computed)
                    status = "complete" if engine.finished() else "cancelled"
                    break
                if time.monotonic() - saved_at >= max(CHECKPOINT_MIN_S, CHECKPOINT_COST * save_cost):
                    save_resume_point()
                if time.monotonic() - recorded_at >= RECORD_EVERY_S:
                    record["frames_done"], recorded_at = done, time.monotonic()
                    folder.write(record)
            else:
                status = "complete"
            writer.drain()
            if status == "cancelled":
                save_resume_point()
        except KeyboardInterrupt:
            status = "cancelled"
            raise
        except OSError as exc:
            error = out_of_space(exc, folder.path, done)
            raise error from exc
        except BaseException as exc:
            error = exc
            raise
        finally:
            with deferred_interrupts() as interrupted:
                for generator in (frames, decoded):
                    if generator is not None:
                        generator.close()
                writer.finish(raise_error=False)
                close_error = close_all(opened, completed=status == "complete")
                if close_error is not None and status == "complete":
                    status, error = "failed", out_of_space(close_error, folder.path, done)
                elapsed = time.perf_counter() - started
                self.warnings += source.warnings
                record.update({"status": status, "frames_done": done, "error": None if error is None else str(error),
                               "skipped_frames": source.skipped_frames, "warnings": self.warnings,
                               "elapsed_s": round(elapsed, 3),
                               "frames_per_second": round((done - plan.resume_at) / elapsed, 3) if elapsed > 0 else None})
                try:
                    folder.complete(record) if status == "complete" else folder.write(record)
                except OSError as exc:  # run.json keeps its last state, which is resumable
                    log.warning("%s could not be updated: %s", folder.path / RUN_JSON, exc.strerror or exc)
                    if status == "complete":
                        status, close_error = "failed", close_error or exc
                        error = out_of_space(exc, folder.path, done)
            if interrupted and status != "complete":  # a run that completed meanwhile stands
                raise KeyboardInterrupt
            if status == "complete":
                callbacks.finished()
            if close_error is not None and error is not None and status == "failed":
                raise error from close_error

    def open_sinks(self) -> list:
        """The run's sinks, opened: this checks optional packages and folders before the model
        loads, and cuts a resumed run's partial outputs back to its resume point."""
        opened = []
        try:
            for sink in build_sinks(self.info):
                sink.open(self.info)
                opened.append(sink)
        except BaseException:
            close_all(opened, completed=False)
            raise
        return opened

    def result(self, record: dict) -> dict:
        """Annolid's entries (lists of path strings) and this package's facts about the run."""
        out = self.folder.path
        complete = record["status"] == "complete"
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
            "cancelled": record["status"] == "cancelled",
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
            "frames_per_second": record.get("frames_per_second"),
            "warnings": record.get("warnings", []),
        }


def out_of_space(exc: BaseException, folder: Path, done: int) -> BaseException:
    """A write error as a message that says what to do; other errors as they are."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left on the device holding {folder}; free some space, then run again "
                           f"with resume=True (annolid-depth --resume) to go on from the {done} frames done")
    if isinstance(exc, OSError) and exc.errno is not None:
        return OutputError(f"cannot write the outputs in {folder} ({exc.strerror}); "
                           f"fix that, then run again with resume=True (annolid-depth --resume)")
    return exc


def close_all(sinks, completed: bool) -> BaseException | None:
    """Close every sink, even after one fails (its partial files then stay resumable); the
    first error is returned."""
    first = None
    for sink in sinks:
        try:
            sink.close(completed)
        except Exception as exc:  # noqa: BLE001 - the rest must still close
            log.warning("closing %s failed: %s", type(sink).__name__, exc)
            first = first or exc
    return first


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
    per-frame callback, all fed from one place."""

    def __init__(self, progress, preview, frame, total: int | None, info: RunInfo):
        self.progress, self.preview, self.on_frame = progress, preview, frame
        self.total, self.info = total, info
        self.percent = -1

    def frame(self, done: int, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        total = max(self.total, done) if self.total is not None else None
        if self.progress is not None and total:
            self._report(min(99, done * 100 // total))  # 100 only once the run is complete
        if self.on_frame is None and self.preview is None:
            return
        payload = {"frame_index": int(frame_index), "frames_done": done, "frames_total": total, "rgb": rgb,
                   "depth": depth, "depth_kind": self.info.kind}
        if self.on_frame is not None:
            self.on_frame(payload)
        if self.preview is not None:
            self.preview({**payload, **preview_overlay(depth, self.info.metric, self.info.grayscale)})

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
    large map (1.0 against 3.6 ms at 1280x720, on the network's thread of every preview): only
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


@functools.lru_cache(maxsize=1)
def load_model(
    checkpoint: str, modified_ns: int, encoder: str, metric: bool, device: str, precision: str = "fp32",
    backend: str = "torch",
) -> VideoDepthAnything:
    """The network with its weights, on `device`, ready for `precision`, run by `backend` (as
    `pick_backend` chose it); kept for the next run in this process (`modified_ns` makes a
    replaced checkpoint file load afresh). Channels-last convolution weights run the head
    about 15 % faster on CPU, with identical results."""
    model = VideoDepthAnything(encoder, metric)
    load_weights(model, Path(checkpoint))
    model = model.eval().to(device, memory_format=torch.channels_last)
    if backend != "torch":
        return load_backend(model, backend, Path(checkpoint), precision)
    return model if precision == "fp32" else model.hold_weights_in(DTYPES[precision])
