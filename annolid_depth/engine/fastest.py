"""Which runtime `auto` takes on a CPU: the installed one that runs the network fastest here.

Which runtime runs the network fastest depends on the CPU: on an AMD EPYC without AVX-512
OpenVINO ran the encoder about twice as fast as torch; on one Xeon with AMX the two ran FP32
alike, on another torch ran an encoder block 1.14x faster in FP32 and OpenVINO 1.3x faster
in bf16. So auto times one encoder block (vits's, on four images at input 252: linear layers,
attention, GELU and layer norms, most of a run's time) in torch and in each installed compiled
runtime that runs the precision (OpenVINO: ONNX Runtime ran slower than torch in every case
measured, README "Compiled CPU runtimes"), and takes a compiled one only when it is at least `MARGIN`
faster than torch (a compiled runtime costs an export on a checkpoint's first use and a
self-check at every load). The answer is kept in the user's cache (`backend-choice.json`),
one entry per CPU, thread count, precision and runtime versions, so the probe (a few
seconds) runs once per machine. A runtime that fails the probe is left out with one warning,
and then no answer is kept.
"""
from __future__ import annotations

import copy
import importlib.metadata
import io
import json
import logging
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..model.vda import Block
from ..settings import user_cache
from .artefacts import write_json_whole
from .device import DTYPES
from .graphs import OPSET

PROBE_SHAPE = (4, 577, 384)  # four vits images at input 252 (18 x 32 patches and the class token)
PROBE_HEADS = 6
MARGIN = 1.1
REPEATS = 5
CHOICES = "backend-choice.json"

log = logging.getLogger(__name__)


def best_seconds(calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The best time of each call over `REPEATS` rounds, the calls taking turns, so that
    anything else running on the machine slows them alike."""
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(REPEATS):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def probe_block() -> tuple[torch.nn.Module, torch.Tensor]:
    """One encoder block of vits with fixed random weights, and its input."""
    generator = torch.Generator().manual_seed(0)
    block = Block(PROBE_SHAPE[-1], PROBE_HEADS).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return block, torch.randn(PROBE_SHAPE, generator=generator)


def torch_call(precision: str, block: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    if precision != "fp32":
        block, x = copy.deepcopy(block).to(DTYPES[precision]), x.to(DTYPES[precision])

    def call():
        with torch.no_grad():
            return block(x)

    return call


def openvino_config(precision: str) -> dict:
    """How OpenVINO runs the network's graphs, and so the probe's: torch's thread count, one
    call at a time, the precision asked for."""
    return {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}


def openvino_call(precision: str, graph: bytes, x: torch.Tensor) -> Callable[[], object]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model=graph), "CPU", openvino_config(precision))
    inputs = x.numpy()
    return lambda: compiled(inputs)


def block_graph(block: torch.nn.Module, x: torch.Tensor) -> bytes:
    """The block as an ONNX graph, in memory."""
    stream = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own deprecation and on tracing
        torch.onnx.export(block, (x,), stream, input_names=["x"], output_names=["y"], opset_version=OPSET, dynamo=False)
    return stream.getvalue()


PROBES = {"openvino": openvino_call}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def choice_key(precision: str, runtimes: list[str]) -> str:
    """What the answer depends on: the CPU, its instruction set as torch sees it, the threads,
    the precision and every candidate's version."""
    versions = ", ".join(f"{name} {_version(name)}" for name in ["torch", *runtimes])
    return (f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
            f"{precision}, {versions}")


def measure(precision: str, runtimes: list[str]) -> dict:
    """{"backend": the choice, "ms": {backend: milliseconds per call of the probe block}}."""
    block, x = probe_block()
    calls = {"torch": torch_call(precision, block, x)}
    graph = None
    for runtime in runtimes:
        log.info("timing torch and %s on this CPU, once: which runs the network faster (%s)", runtime, precision)
        try:
            graph = graph or block_graph(block, x)
            calls[runtime] = PROBES[runtime](precision, graph, x)
            calls[runtime]()
        except Exception as exc:  # a runtime's own failure: it is not a candidate
            calls.pop(runtime, None)
            warnings.warn(f"backend {runtime} failed a speed probe ({type(exc).__name__}: {exc}); auto does not take it",
                          stacklevel=3)
    times = best_seconds(calls)
    fastest = min(times, key=times.get)
    backend = fastest if times[fastest] * MARGIN <= times["torch"] else "torch"
    return {"backend": backend, "ms": {name: round(seconds * 1000, 2) for name, seconds in times.items()}}


def fastest_backend(precision: str, runtimes: list[str]) -> str:
    """The backend auto takes on this CPU among torch and the installed `runtimes`: the cached
    answer for this machine, else a fresh probe, kept for next time."""
    if not runtimes:
        return "torch"
    path, key = user_cache(CHOICES), choice_key(precision, runtimes)
    choices = read_choices(path)
    entry = choices.get(key)
    if not (isinstance(entry, dict) and entry.get("backend") in {"torch", *runtimes}):
        entry = measure(precision, runtimes)
        if set(entry["ms"]) == {"torch", *runtimes}:  # an answer with a runtime left out is not kept
            choices[key] = entry
            write_choices(path, choices)
    return entry["backend"]


def read_choices(path: Path) -> dict:
    """The cached answers; an unreadable or damaged file counts as none (the probe runs again)."""
    try:
        choices = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return choices if isinstance(choices, dict) else {}


def write_choices(path: Path, choices: dict) -> None:
    """Replaced whole; a cache that cannot be written only means probing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_whole(path, choices)
    except OSError:
        pass
