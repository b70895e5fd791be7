"""The ordered parallel writer: frame order kept, errors raised in the caller, quick stops."""
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from annolid_depth.background import STEP_BACK
from annolid_depth.engine.transform import read_ahead
from annolid_depth.io.pipeline import OrderedWriter
from annolid_depth.io.records import iter_records
from annolid_depth.io.sinks import NdjsonSink, RunInfo, Sink

FRAME = np.zeros((6, 8, 3), np.uint8), np.linspace(1, 2, 48, dtype=np.float32).reshape(6, 8)


class LoggingSink(Sink):
    """Keeps what it is given; its prepare takes longer on some frames, so a pool finishes
    frames out of order; fails on a chosen frame in prepare or write, as a full disk would."""

    def __init__(self, fail_at=None, fail_in="write", slow=()):
        self.fail_at, self.fail_in, self.slow = fail_at, fail_in, slow
        self.prepared, self.written = [], []
        self.released = threading.Event()

    def prepare(self, frame_index, rgb, depth):
        if frame_index in self.slow:
            self.released.wait(0.05)
        if frame_index == self.fail_at and self.fail_in == "prepare":
            raise OSError(28, "No space left on device")
        self.prepared.append(frame_index)
        return frame_index * 10

    def write(self, frame_index, payload):
        if frame_index == self.fail_at and self.fail_in == "write":
            raise OSError(28, "No space left on device")
        self.written.append((frame_index, payload))


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_frames_are_written_in_order_with_their_own_payloads(workers):
    sink = LoggingSink(slow={0, 4, 5})
    writer = OrderedWriter([sink], workers)
    for i in range(12):
        writer.write(i, *FRAME)
    writer.drain()  # a resume point needs every frame so far written
    assert sink.written == [(i, 10 * i) for i in range(12)]
    writer.write(12, *FRAME)
    writer.finish()
    assert sink.written == [(i, 10 * i) for i in range(13)]


@pytest.mark.parametrize("fail_in", ["prepare", "write"])
@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_sink_raises_in_the_caller_and_keeps_what_came_before(tmp_path, workers, fail_in):
    info = RunInfo(video_path=tmp_path / "v.mp4", output_dir=tmp_path, width=8, height=6, fps=10)
    ndjson, failing = NdjsonSink(), LoggingSink(fail_at=3, fail_in=fail_in)
    ndjson.open(info)
    writer = OrderedWriter([ndjson, failing], workers)
    with pytest.raises(OSError, match="No space left"):
        for i in range(40):
            writer.write(i, *FRAME)
        writer.finish()
    writer.finish(raise_error=False)  # as the runner does on its way out
    ndjson.close(completed=False)
    assert [i for i, _ in failing.written] == [0, 1, 2]
    kept = [r["frame_index"] for r in iter_records(tmp_path / "depth.ndjson.partial")]
    assert kept == ([0, 1, 2, 3] if fail_in == "write" else [0, 1, 2])  # ndjson writes frame 3 before the failing sink


def test_memory_stays_bounded_while_the_writer_is_blocked():
    class Blocked(LoggingSink):
        def write(self, frame_index, payload):
            self.released.wait()
            super().write(frame_index, payload)

    sink = Blocked()
    writer = OrderedWriter([sink], workers=2, ahead=3)
    feeder = threading.Thread(target=lambda: [writer.write(i, *FRAME) for i in range(50)])
    feeder.start()
    feeder.join(0.5)
    assert feeder.is_alive() and len(sink.prepared) <= 3 + 2 + 1  # queued, in the pool, being written
    sink.released.set()
    feeder.join()
    writer.finish()
    assert [i for i, _ in sink.written] == list(range(50))


def test_ctrl_c_with_a_full_queue_ends_within_a_second():
    sink = LoggingSink(slow=set(range(1000)))  # 50 ms per frame: the queue stays full
    writer = OrderedWriter([sink], workers=1, ahead=4)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        for i in range(1000):
            writer.write(i, *FRAME)
    interrupted = time.monotonic()
    writer.finish(raise_error=False)  # the queued frames are written: a few at most
    assert time.monotonic() - interrupted < 1.0
    assert 0 < len(sink.written) < 30 and [i for i, _ in sink.written] == list(range(len(sink.written)))


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class PrioritySink(Sink):
    """Notes the priority of the threads that prepare and write its frames."""

    def __init__(self):
        self.seen = {}

    def prepare(self, frame_index, rgb, depth):
        self.seen["prepare"] = thread_nice()

    def write(self, frame_index, payload):
        self.seen["write"] = thread_nice()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_helper_threads_step_back_behind_the_thread_that_runs_the_network():
    sink, caller = PrioritySink(), thread_nice()
    writer = OrderedWriter([sink], workers=2)
    writer.write(0, *FRAME)
    writer.finish()
    read_ahead_nice = []
    frames = ((i, FRAME[0]) for i in range(2) if not read_ahead_nice.append(thread_nice()))
    assert len(list(read_ahead(frames, 14))) == 2
    expected = min(19, caller + STEP_BACK)
    assert sink.seen == {"prepare": expected, "write": expected}
    assert read_ahead_nice == [expected] * 2
    assert thread_nice() == caller
