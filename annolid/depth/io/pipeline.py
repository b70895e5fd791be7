"""Frames to sinks: every sink's `prepare` in a pool of workers, `write` on one thread in frame order.

The network leaves cores idle (all of them beside a GPU), and a frame's CPU work after it
(quantise and encode the depth record, colourise, encode PNGs, format point clouds) would
otherwise run on one thread and starve the GPU. `OrderedWriter` spreads that work over the
spare cores: each frame is one pool task running every sink's `prepare`; a writer thread
takes the tasks' results in submission order and hands them to `write`. At most `ahead`
frames are in flight, so memory stays flat however long the video.

Errors (a sink failing, a full disk) stop the writer at the frame that failed, so every
frame before it stays written, and are raised in the caller at its next `write` or at
`finish`. `stop` ends everything within about one frame's work (Ctrl-C, an error
elsewhere), dropping the frames still in flight.
"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

WAIT = 0.1  # seconds between looks at the stop flag while blocked


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def spare_cores(device: torch.device) -> int:
    """Cores the network leaves to the writers: all of them beside a GPU; on a CPU run those
    beyond torch's threads, none when torch uses every core (a writer thread then slowed
    2-core runs by 3-5 %, measured with the network at input 518)."""
    cores = usable_cores()
    return cores if device.type != "cpu" else max(0, cores - torch.get_num_threads())


class OrderedWriter:
    """Feeds frames to `sinks`: inline when `workers` is 0, else `prepare` on `workers` pool
    threads and `write` on a thread of its own, in the order frames were given."""

    def __init__(self, sinks, workers: int, ahead: int | None = None):
        self.sinks = sinks
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="prepare") if workers else None
        if self.pool is not None:
            self.tasks: queue.Queue[tuple[int, Future] | None] = queue.Queue(ahead or 2 * workers + 2)
            self.thread = threading.Thread(target=self._write_in_order, name="write", daemon=True)
            self.thread.start()

    def _prepare(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> list:
        if self.stopped.is_set():
            return []
        return [sink.prepare(frame_index, rgb, depth) for sink in self.sinks]

    def _write(self, frame_index: int, payloads: list) -> None:
        """A frame's payloads to their sinks, once every sink has prepared its own."""
        for sink, payload in zip(self.sinks, payloads):
            sink.write(frame_index, payload)

    def _write_in_order(self) -> None:
        try:
            while not self.stopped.is_set():
                try:
                    task = self.tasks.get(timeout=WAIT)
                except queue.Empty:
                    continue
                if task is None:
                    return
                frame_index, future = task
                payloads = future.result()
                if self.stopped.is_set():
                    return
                self._write(frame_index, payloads)
        except BaseException as exc:  # handed to the caller; after `stop`, a cancelled task
            if not self.stopped.is_set():
                self.error = exc
            self.stopped.set()

    def write(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        """Queue one frame; blocks while `ahead` frames are in flight."""
        self._raise()
        if self.pool is None:
            self._write(frame_index, self._prepare(frame_index, rgb, depth))
            return
        task = (frame_index, self.pool.submit(self._prepare, frame_index, rgb, depth))
        self._put(task)

    def _put(self, task) -> None:
        while True:  # in short waits, so Ctrl-C and the writer's errors get through
            self._raise()
            if self.stopped.is_set():
                return
            try:
                self.tasks.put(task, timeout=WAIT)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Write every queued frame, then raise the first error, if any."""
        if self.pool is not None:
            self._put(None)
            self.thread.join()
            self.pool.shutdown()
        self._raise()

    def stop(self) -> None:
        """Drop the frames in flight and end the threads, without raising."""
        if self.pool is None:
            return
        self.stopped.set()
        self.pool.shutdown(cancel_futures=True)
        self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
