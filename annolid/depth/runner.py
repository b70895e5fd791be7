"""`run_video_depth_anything`: video in, depth outputs on disk.

Wires a `VideoSource` to an engine and the engine to the sinks. Everything that can be
checked before inference (arguments, video, output folder, optional packages, weights) is
checked first, so a bad argument never costs a model load or leaves partial output.
"""
from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .engine import offline_depth, pick_device, pick_precision, reuse_freed_memory, streaming_depth
from .engine.device import DTYPES
from .errors import OutputError
from .io.sinks import RunInfo, build_sinks
from .io.source import VideoSource
from .model import VideoDepthAnything
from .settings import DepthSettings, default_output_dir, load_settings
from .weights import checkpoint_key, ensure_checkpoint, load_weights

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, "int | None"], None]
PreviewCallback = Callable[[int, np.ndarray, np.ndarray], None]


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
    save_depth_video: bool = False,
    save_depth_frames: bool = False,
    save_point_clouds: bool = False,
    save_npz: bool = False,
    save_exr: bool = False,
    focal_length_x: float = 470.4,
    focal_length_y: float = 470.4,
    checkpoint_root: str | Path | None = None,
    include_region_labels: bool = False,
    streaming: bool = True,
    *,
    max_frames: int | None = None,
    point_cloud_format: str = "csv",
    device: str | None = None,
    precision: str | None = None,
    progress_callback: ProgressCallback | None = None,
    preview_callback: PreviewCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict:
    """Estimate depth for every processed frame of `input_video` and write the outputs.

    `max_frames` is an alias of `max_len`. `output_dir` defaults to a folder next to the
    video named after its stem (or `<video_depth_anything.output_dir>/<stem>` when set in
    ~/.labelmerc). Relative models give disparity (larger = nearer, unknown scale and
    shift); metric models give metres. Returns the output paths and the run's facts; a
    cancelled run returns what it wrote with `cancelled: True`.
    """
    settings = DepthSettings(
        encoder=encoder,
        metric=bool(metric),
        input_size=int(input_size),
        max_res=int(max_res),
        target_fps=target_fps,
        max_frames=int(max_len if max_frames is None else max_frames),
        streaming=bool(streaming),
        fp32=bool(fp32),
        precision=precision or "",
        grayscale=bool(grayscale),
        save_depth_video=bool(save_depth_video),
        save_depth_frames=bool(save_depth_frames),
        save_point_clouds=bool(save_point_clouds),
        point_cloud_format=point_cloud_format,
        save_npz=bool(save_npz),
        save_exr=bool(save_exr),
        include_region_labels=bool(include_region_labels),
        focal_length_x=float(focal_length_x),
        focal_length_y=float(focal_length_y),
    )
    settings.validate()
    torch_device = pick_device(device)
    run_precision = pick_precision(torch_device, settings.fp32, settings.precision or None)

    source = VideoSource(input_video, settings.target_fps, settings.max_frames, settings.max_res)
    with source, reuse_freed_memory():
        checkpoint = ensure_checkpoint(settings.encoder, settings.metric, checkpoint_root)
        out = Path(output_dir) if output_dir else default_output_dir(source.path, load_settings().output_dir)
        prepare_output_dir(out)
        info = RunInfo(
            video_path=Path(source.path),
            output_dir=out,
            stem=Path(source.path).stem,
            width=source.width,
            height=source.height,
            fps=source.output_fps,
            total_frames=source.frame_count,
            metric=settings.metric,
            grayscale=settings.grayscale,
            focal_length_x=settings.focal_length_x,
            focal_length_y=settings.focal_length_y,
            include_region_labels=settings.include_region_labels,
            point_cloud_format=settings.point_cloud_format,
        )
        sinks = build_sinks(
            info,
            save_depth_video=settings.save_depth_video,
            save_depth_frames=settings.save_depth_frames,
            save_point_clouds=settings.save_point_clouds,
            save_npz=settings.save_npz,
            save_exr=settings.save_exr,
        )
        done, cancelled, started = 0, False, time.perf_counter()
        opened: list = []
        results: dict = {}
        frames = decoded = writer = None
        finished = False
        try:
            for sink in sinks:  # opening checks optional packages and folders, before the model loads
                sink.open(info)
                opened.append(sink)
            modified = checkpoint.stat().st_mtime_ns
            model = load_model(str(checkpoint), modified, settings.encoder, settings.metric, str(torch_device), run_precision)
            engine = streaming_depth if settings.streaming else offline_depth
            decoded = prefetched(source)
            frames = engine(model, decoded, settings.input_size, torch_device, run_precision)
            writer = SinkWriter(opened, threaded=core_to_spare(torch_device))
            for frame_index, rgb, depth in frames:
                writer.write(frame_index, rgb, depth)
                done += 1
                if progress_callback is not None:
                    progress_callback(done, source.frame_count)
                if preview_callback is not None:
                    preview_callback(frame_index, rgb, depth)
                if should_cancel is not None and should_cancel():
                    cancelled = True
                    break
            writer.finish()
            finished = True
        finally:
            for generator in (frames, decoded):
                if generator is not None:
                    generator.close()
            if writer is not None and not finished:
                writer.finish(raise_error=False)  # keep the frames computed so far
            for sink in opened:
                results.update(sink.close(finished and not cancelled))
    elapsed = time.perf_counter() - started
    return {
        "output_dir": str(out),
        **results,
        "video": str(source.path),
        "frames": done,
        "skipped_frames": source.skipped_frames,
        "fps": source.output_fps,
        "model": checkpoint_key(settings.encoder, settings.metric),
        "encoder": settings.encoder,
        "depth_kind": "metric_depth" if settings.metric else "relative_disparity",
        "depth_unit": "m" if settings.metric else None,
        "mode": "streaming" if settings.streaming else "offline",
        "device": str(torch_device),
        "precision": run_precision,
        "cancelled": cancelled,
        "elapsed_s": round(elapsed, 3),
        "frames_per_second": round(done / elapsed, 3) if elapsed > 0 else None,
    }


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


@functools.lru_cache(maxsize=1)
def load_model(
    checkpoint: str, modified_ns: int, encoder: str, metric: bool, device: str, precision: str = "fp32"
) -> VideoDepthAnything:
    """The network with its weights, on `device`, ready for `precision`; kept for the next
    run in this process (`modified_ns` makes a replaced checkpoint file load afresh).
    Channels-last convolution weights run the head about 15 % faster on CPU, with
    identical results."""
    model = VideoDepthAnything(encoder, metric)
    load_weights(model, Path(checkpoint))
    model = model.eval().to(device, memory_format=torch.channels_last)
    return model if precision == "fp32" else model.hold_weights_in(DTYPES[precision])


class SinkWriter:
    """Writes frames to the sinks, on a thread of its own when `threaded`, so encoding and
    disk I/O overlap inference; at most `ahead` frames (a window) wait. An error while
    writing is raised in the caller at its next `write` or at `finish`; later frames are
    then dropped. Use a thread only when a core is free for it (`core_to_spare`): with
    torch on every core, the thread slowed 2-core runs by 3-5 %."""

    def __init__(self, sinks, threaded: bool, ahead: int = 32):
        self.sinks = sinks
        self.error: BaseException | None = None
        self.queue: queue.Queue | None = queue.Queue(ahead) if threaded else None
        if self.queue is not None:
            self.thread = threading.Thread(target=self._run, name="write", daemon=True)
            self.thread.start()

    def _run(self):
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the caller
                    self.error = exc

    def _write(self, frame_index, rgb, depth):
        for sink in self.sinks:
            sink.put(frame_index, rgb, depth)

    def write(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        self._raise()
        if self.queue is None:
            self._write(frame_index, rgb, depth)
        else:
            self.queue.put((frame_index, rgb, depth))

    def finish(self, raise_error: bool = True) -> None:
        """Wait until every queued frame is written."""
        if self.queue is not None and self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if raise_error:
            self._raise()

    def _raise(self):
        if self.error is not None:
            raise self.error


def core_to_spare(device: torch.device) -> bool:
    """Whether a thread beside inference has a core of its own: the network runs on a GPU,
    or this process may use more cores than torch's threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return device.type != "cpu" or cores > torch.get_num_threads()


def prefetched(items, ahead: int = 8):
    """Iterate `items` from a background thread, up to `ahead` items early.

    Decoding (PyAV and OpenCV release the GIL) then overlaps inference. Errors from the
    producer surface here; closing the generator stops the producer.
    """
    buffer: queue.Queue = queue.Queue(ahead)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(end)
        except BaseException as exc:  # handed to the consumer, which raises it
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                buffer.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
