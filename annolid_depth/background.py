"""`Relay`: a bounded queue with a thread of its own at one end, the one way work leaves
the caller's thread. The engines read frames ahead with it (decoding and the resize to the
network input run beside the network), and the writer hands prepared frames to the sinks
with it (the sinks write beside the next frame's work).

Either the thread produces (it iterates `items` into the queue, the caller iterates the
relay) or it consumes (the caller `put`s, the thread calls `handle` on each item in order).
The queue holds at most `size` items, so memory stays flat however long the video. An error
on the thread reaches the caller, raised at its next call; `close()` stops the thread even
while it waits on a full queue, so Ctrl-C ends a run within a fraction of a second.

The thread steps back (`step_back`): the caller's thread runs the network, the one piece
of work that cannot be split, and on a GPU host it is the thread that keeps the GPU fed; the
helpers run on the time it leaves. With every thread at one priority, the network's thread
got only part of a core while the others waited for its frames (bench/bench_pipeline.py).
"""
from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator

_END = object()
POLL_S = 0.1  # how often a blocked thread looks for a stop
STEP_BACK = 10  # nice levels a helper thread runs below the thread that started it


def step_back() -> None:
    """Run the calling thread STEP_BACK nice levels below its present priority (Linux, where
    each thread has its own; elsewhere nothing): it then takes the cores the others leave,
    and any core it is alone on. A thread inherits its starter's priority."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox may refuse it: the thread runs as it is
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + STEP_BACK)


class Relay:
    def __init__(self, size: int, name: str, items: Iterable | None = None, handle: Callable | None = None):
        if (items is None) == (handle is None):
            raise TypeError("a Relay either produces `items` or consumes with `handle`")
        self.queue: queue.Queue = queue.Queue(size)
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.items, self.handle = items, handle
        self.thread = threading.Thread(target=self._produce if handle is None else self._consume, name=name, daemon=True)
        self.thread.start()

    # the thread's side
    def _produce(self) -> None:
        step_back()
        try:
            for item in self.items:
                if not self._offer(item):
                    return
        except BaseException as exc:  # raised in the caller, after the items before it
            self.error = exc
        self._offer(_END)

    def _offer(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self) -> None:
        step_back()
        while (item := self.queue.get()) is not _END:
            try:
                if self.error is None:  # after an error the rest is dropped
                    self.handle(item)
            except BaseException as exc:
                self.error = exc
            finally:
                self.queue.task_done()
        self.queue.task_done()

    # the caller's side
    def __iter__(self) -> Iterator:
        """The produced items in order; the producer's error after the items before it."""
        try:
            while (item := self.queue.get()) is not _END:
                yield item
            self.raise_error()
        finally:
            self.close()

    def put(self, item) -> None:
        """Hand an item to the consuming thread; blocks while `size` items wait."""
        self.raise_error()
        self.queue.put(item)

    def drain(self) -> None:
        """Wait until the consuming thread has handled every item put so far."""
        self.queue.join()
        self.raise_error()

    def close(self) -> None:
        """Stop the thread: a consumer first handles what was put, a producer stops at once."""
        if not self.thread.is_alive():
            return
        if self.handle is not None:
            self.queue.put(_END)
        else:
            self.stopped.set()
            while self.thread.is_alive():  # make room for a producer blocked on a full queue
                try:
                    self.queue.get(timeout=POLL_S)
                except queue.Empty:
                    pass
        self.thread.join()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error
