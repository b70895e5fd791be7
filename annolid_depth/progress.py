"""What a run's progress tells a person, the same in the CLI and the GUI.

`Rate` gives frames per second and the time left from the frames this run computed after
its first group: a resumed run's earlier frames took no time in this run, and the first
group carries the model's warm-up (and, in a batch, nothing says when the clock should
start before it). `cost` says what a run on a CPU will cost and what makes it faster;
`stage_text` words the runner's stage payloads (`run_video_depth_anything(stage_callback=)`).
"""
from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable

SMALL_INPUT = 252  # a lighter network input that keeps the depth usable (README, Speed and precision)
INSTALL_FAST = "pip install 'annolid-depth[fast]'"


class Rate:
    """Frames per second over the groups after the first, measured at group ends only (the
    frames of a group come out together, so counting them one by one would race ahead)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.start: tuple[float, int] | None = None  # time and frames computed at the first group's end
        self.per_second: float | None = None
        self.done, self.total = 0, None

    def update(self, payload: dict) -> None:
        """Takes a per-frame payload of the runner (`frames_done`, `frames_total`,
        `frames_computed`, `group_end`)."""
        self.done, self.total = payload["frames_done"], payload["frames_total"]
        if not payload.get("group_end", True):
            return
        now, computed = self.clock(), payload.get("frames_computed", payload["frames_done"])
        if self.start is None:
            self.start = (now, computed)
        elif computed > self.start[1] and now > self.start[0]:
            self.per_second = (computed - self.start[1]) / (now - self.start[0])

    def seconds_left(self) -> float | None:
        if self.per_second is None or not self.total:
            return None
        return max(self.total - self.done, 0) / self.per_second

    def text(self) -> str:
        """"3.20 frames/s, 0:12 left"; "measuring speed" until a group after the first is done."""
        if self.per_second is None:
            return "measuring speed"
        left = self.seconds_left()
        return f"{self.per_second:.2f} frames/s" + ("" if left is None else f", {format_seconds(left)} left")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def fast_runtime_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def stage_text(payload: dict) -> str:
    """"loading vits on cpu (torch, fp32)..." for the loading stage."""
    return f"loading {payload['encoder']} on {payload['device']} ({payload['backend']}, {payload['precision']})..."


def cost(payload: dict) -> str | None:
    """On a CPU: the frames, the input size and the backend this run takes, and what would
    make it faster; None on a GPU."""
    if payload["device"] != "cpu":
        return None
    total, done = payload["frames_total"], payload["frames_done"]
    frames = "frames" if total is None else f"{total - done} frames" if done else f"{total} frames"
    if done:
        frames += f" (from frame {done} on)"
    text = (f"{frames} at input size {payload['input_size']} on the CPU "
            f"({payload['encoder']}, {payload['backend']}, {payload['precision']}); this takes a while")
    faster = []
    if payload["input_size"] > SMALL_INPUT:
        faster.append(f"--input-size {SMALL_INPUT}")
    faster.append("--target-fps 5 (fewer frames)")
    if payload["backend"] == "torch" and not fast_runtime_installed():
        faster.append(f"the compiled runtime ({INSTALL_FAST})")
    return f"{text}; faster: {', '.join(faster)}"


def expected(rate: Rate) -> str | None:
    """"about 6:50 more at 0.17 frames/s", once the rate is known."""
    left = rate.seconds_left()
    if left is None:
        return None
    return f"about {format_seconds(left)} more at {rate.per_second:.2f} frames/s"
