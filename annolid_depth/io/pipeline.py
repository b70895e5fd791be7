"""Frames to sinks: every sink's `prepare` in a pool of workers, `write` on one thread in frame order.

The network leaves cores idle (all of them beside a GPU), and a frame's CPU work after it
(quantise and encode the depth record, colourise, encode PNGs and video, format point
clouds) would otherwise run on one thread and starve the GPU. `OrderedWriter` spreads that
work over the spare cores: each frame is one pool task running every sink's `prepare`; a
writer thread (a `Relay`) takes the tasks' results in submission order and hands them to
`write`. At most `ahead` frames are queued, so memory stays flat however long the video,
and the frames still queued at Ctrl-C take a fraction of a second to finish. The pool's
threads, like the writer's, step back behind the caller's (`background.step_back`), which
runs the network.

An error (a sink failing, a full disk) stops the writing at the frame that failed, so every
frame before it stays written, and is raised in the caller at its next `write`, `drain` or
`finish`; the frames after it are dropped.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..background import Relay, step_back

WRITE_AHEAD = 16  # frames queued for the writers: two of the streaming engine's groups. Depth
# leaves the network in bursts of up to 8 frames; with a queue shorter than a burst the network
# waited for the pool, then the pool for the network (bench/bench_pipeline.py). About 100 MB at
# 1280x720.


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def spare_cores(device: torch.device) -> int:
    """Cores the network leaves to the writers: all of them beside a GPU; on a CPU run those
    beyond torch's threads, none when torch uses every core (a writer thread then slowed
    2-core runs, bench/bench_pipeline.py)."""
    cores = usable_cores()
    return cores if device.type != "cpu" else max(0, cores - torch.get_num_threads())


class OrderedWriter:
    """Feeds frames to `sinks`: inline when `workers` is 0, else `prepare` on `workers` pool
    threads and `write` on a `Relay`'s thread, in the order the frames were given."""

    def __init__(self, sinks, workers: int, ahead: int | None = None):
        self.sinks = sinks
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="prepare", initializer=step_back) if workers else None
        self.relay = Relay(ahead or WRITE_AHEAD, "write", handle=self._write_prepared) if workers else None

    def _prepare(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> list | None:
        if self.relay is not None and self.relay.error is not None:  # dropped: nothing after an error is written
            return None
        return [sink.prepare(frame_index, rgb, depth) for sink in self.sinks]

    def _write(self, frame_index: int, payloads: list) -> None:
        """A frame's payloads to their sinks, once every sink has prepared its own."""
        for sink, payload in zip(self.sinks, payloads):
            sink.write(frame_index, payload)

    def _write_prepared(self, task) -> None:
        frame_index, prepared = task
        self._write(frame_index, prepared.result())

    def write(self, frame_index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
        """Hand over one frame; blocks while `ahead` frames are queued."""
        if self.relay is None:
            self._write(frame_index, self._prepare(frame_index, rgb, depth))
        else:
            self.relay.put((frame_index, self.pool.submit(self._prepare, frame_index, rgb, depth)))

    def drain(self) -> None:
        """Wait until every frame handed over so far is written."""
        if self.relay is not None:
            self.relay.drain()

    def finish(self, raise_error: bool = True) -> None:
        """Write every queued frame and end the threads."""
        if self.relay is not None:
            self.relay.close()
            self.pool.shutdown()
            if raise_error:
                self.relay.raise_error()
