"""What runs the network: torch, or a compiled CPU runtime (ONNX Runtime, OpenVINO).

A compiled backend is an object with the network's own interface (`encode`, `decode`,
`metric`), so the engines, sinks and resume do not know which one runs.
It runs the graphs of `graphs.py`, exported once per checkpoint and kept under
~/.cache/annolid/depth/compiled/ (or $XDG_CACHE_HOME/annolid/depth/compiled/), so a
second run starts in seconds. Features travel between the graphs as [N, ph, pw, C] arrays;
the streaming memory keeps each attention block's keys and values in CPU tensors held by the
engine's `StreamMemory`, written in place, slot by slot, as torch does: float32, or bf16 where
the runtime runs the step graph in bf16 (half the memory and none of the runtime's conversion
of the whole state on every call).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DepthError
from ..model import PATCH, VideoDepthAnything
from ..model.vda import StreamMemory, finish_depth, micro_batches, write_slots
from ..settings import BACKENDS, user_cache
from ..weights import checkpoint_key
from .artefacts import GRAPHS, RUNTIME_CACHE, CompiledFiles, graph_digests
from .fastest import fastest_backend, openvino_config
from .graphs import FORMAT, ExportError, export_onnx, read_spec, state_shapes

EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}
# The precisions each runtime runs, and those auto may take on a CPU when installed and faster
# than torch there (`fastest.py`); ONNX Runtime ran slower than torch in every case measured.
# A compiled backend cannot recompute a non-finite
# group in FP32 (the run stops instead); bf16 has float32's exponent range and does not overflow
# as fp16 does, so that is left to broken weights or input, which FP32 would refuse as well.
RUNTIME_PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}
AUTO_CANDIDATES = ("openvino",)

log = logging.getLogger(__name__)


class BackendError(DepthError):
    """A backend whose runtime is not installed."""


def installed(runtime: str) -> bool:
    return importlib.util.find_spec(runtime) is not None and importlib.util.find_spec("onnx") is not None


def pick_backend(requested: str, device: torch.device, precision: str) -> str:
    """The backend to use: `requested`, checked; for auto, the fastest installed one on this
    CPU (torch on GPUs)."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "auto":
        if device.type != "cpu":
            return "torch"
        candidates = [r for r in AUTO_CANDIDATES if precision in RUNTIME_PRECISIONS[r] and installed(r)]
        return fastest_backend(precision, candidates)
    if requested == "torch":
        return requested
    if device.type != "cpu":
        raise ValueError(f"backend {requested} runs on the CPU; use backend torch on {device.type}")
    if precision not in RUNTIME_PRECISIONS[requested]:
        runs = " and ".join(RUNTIME_PRECISIONS[requested])
        raise ValueError(f"backend {requested} runs {runs} only; choose one of those precisions, or backend torch")
    if not installed(requested):
        raise BackendError(f"backend {requested} needs the {requested} package: pip install 'annolid-depth[{EXTRAS[requested]}]'")
    return requested


def cache_dir(model: VideoDepthAnything, checkpoint: Path) -> Path:
    """One folder per checkpoint file (path, size and date) and export format."""
    stat = checkpoint.stat()
    identity = f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{FORMAT}"
    return user_cache("compiled") / f"{checkpoint_key(model.encoder, model.metric)}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def exported(model: VideoDepthAnything, checkpoint: Path, folder: Path | None = None) -> Path:
    """A folder with the graphs of `model`: `folder` as given (refused when it does not match
    the checkpoint or a graph its checksum), else the cache's, exported there again when
    missing, stale or damaged."""
    if folder is not None:
        read_spec(folder, model.encoder, model.metric, checkpoint)
        return folder
    folder = cache_dir(model, checkpoint)
    try:
        read_spec(folder, model.encoder, model.metric, checkpoint)
    except ExportError as exc:
        log.info("exporting %s to %s (%s)", checkpoint.name, folder, exc)
        export_onnx(model, folder, checkpoint, overwrite=True)
    return folder


# --------------------------------------------------------------------------- runtimes


class OnnxRuntimeGraphs:
    state_dtype = torch.float32

    def __init__(self, folder: Path, precision: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.sessions = {
            name: ort.InferenceSession(str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
            for name in GRAPHS
        }

    def run(self, name: str, inputs: dict[str, np.ndarray], borrowed: bool = False) -> list[np.ndarray]:
        return self.sessions[name].run(None, inputs)

    def state(self, store: torch.Tensor) -> np.ndarray:
        """A state tensor as this runtime's input, sharing its memory."""
        return store.numpy()


class OpenVinoGraphs:
    def __init__(self, folder: Path, precision: str):
        import openvino as ov

        self.ov = ov
        core = ov.Core()
        config = openvino_config(precision)
        # one folder per precision: compiling the bf16 graphs in a process that compiled the
        # fp32 ones into the same cache folder gave wrong depth or a crash (OpenVINO 2026.4);
        # its files are used only while verified.json vouches for them (`CompiledFiles`)
        compiled = CompiledFiles(folder / RUNTIME_CACHE / precision, graph_digests(folder))
        if compiled.usable():
            config["CACHE_DIR"] = str(compiled.folder)
        else:
            log.info("compiling the graphs without a cache: %s is a link or cannot be written", compiled.folder)
        # In bf16 the step graph takes and returns the streaming state in bf16: in float32 the
        # runtime converted the whole state (hundreds of MB) on every call.
        self.state_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.graphs = {name: core.compile_model(self._read(core, folder, name), "CPU", config) for name in GRAPHS}
        if "CACHE_DIR" in config:
            compiled.seal()

    def _read(self, core, folder: Path, name: str):
        graph = core.read_model(str(folder / f"{name}.onnx"))
        if name != "step" or self.state_dtype != torch.bfloat16:
            return graph
        from openvino.preprocess import PrePostProcessor

        steps = PrePostProcessor(graph)
        for port in graph.inputs:
            if port.get_any_name().startswith(("keys_", "values_")):
                steps.input(port.get_any_name()).tensor().set_element_type(self.ov.Type.bf16)
        for port in graph.outputs:
            if port.get_any_name().startswith("new_"):
                steps.output(port.get_any_name()).tensor().set_element_type(self.ov.Type.bf16)
        return steps.build()

    def run(self, name: str, inputs: dict[str, np.ndarray], borrowed: bool = False) -> list:
        """The graph's outputs: copies, or with `borrowed` views of the runtime's own buffers,
        valid until this graph runs again; bf16 outputs as torch tensors (numpy has no bf16)."""
        graph = self.graphs[name]
        result = graph(inputs, share_outputs=borrowed)  # the inputs are read in place either way
        return [self._output(result[output], output) for output in graph.outputs]

    def _output(self, array: np.ndarray, port):
        if port.get_element_type() != self.ov.Type.bf16:
            return array
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)  # the runtime shows bf16's bits as float16

    def state(self, store: torch.Tensor):
        """A state tensor as this runtime's input, sharing its memory."""
        if store.dtype == torch.bfloat16:
            return self.ov.Tensor(store.view(torch.int16).numpy(), list(store.shape), self.ov.Type.bf16)
        return store.numpy()


RUNTIMES = {"onnxruntime": OnnxRuntimeGraphs, "openvino": OpenVinoGraphs}


# --------------------------------------------------------------------------- the model's interface


class CompiledModel:
    """The network's interface (see `VideoDepthAnything`) over the exported graphs."""

    def __init__(self, model: VideoDepthAnything, graphs, runtime: str):
        self.model, self.graphs, self.runtime = model, graphs, runtime
        self.metric = model.metric
        self.positions: dict[tuple[int, int], np.ndarray] = {}

    def position(self, ph: int, pw: int) -> np.ndarray:
        if (ph, pw) not in self.positions:
            with torch.no_grad():
                table = self.model.pretrained.position_table(ph, pw)[:, 1:].float()
            self.positions[(ph, pw)] = table.unflatten(1, (ph, pw)).numpy()
        return self.positions[(ph, pw)]

    def encode(self, images: torch.Tensor, images_per_call: int | None = None) -> list[torch.Tensor]:
        """Images [N, 3, h, w] -> 4 features [N, ph, pw, C], `images_per_call` images a call."""
        n, _, h, w = images.shape
        step = images_per_call or n
        position = self.position(h // PATCH, w // PATCH)
        images = images.float().contiguous().numpy()
        parts = [self.graphs.run("encoder", {"images": images[i : i + step], "position": position}) for i in range(0, n, step)]
        return [torch.from_numpy(np.concatenate(level)) if len(parts) > 1 else torch.from_numpy(level[0]) for level in zip(*parts)]

    def decode(self, tokens, frames: int, h: int, w: int, memory: StreamMemory | None = None, outputs: int | None = None,
               pixels_per_call: int | None = None):
        """As `VideoDepthAnything.decode`, features from `encode`; the runtime splits the
        temporal attention's work itself, so `pixels_per_call` does not apply."""
        f0, f1, f2, f3 = (np.ascontiguousarray(t.numpy()) for t in tokens)
        if memory is None:
            path_3 = np.concatenate([
                self.graphs.run("temporal", {"features_2": f2[v : v + frames], "features_3": f3[v : v + frames]})[0]
                for v in range(0, len(f2), frames)
            ])
        else:
            path_3 = self.step(f2, f3, memory)
        outputs = len(path_3) if outputs is None else outputs
        depth = [self.graphs.run("per_image", {"features_0": f0[p], "features_1": f1[p], "path_3": path_3[p]})[0]
                 for p in micro_batches(outputs)]
        return finish_depth(torch.from_numpy(np.concatenate(depth)), h, w)

    def step(self, f2: np.ndarray, f3: np.ndarray, memory: StreamMemory) -> np.ndarray:
        """The current frames through the temporal levels, reading and extending `memory`."""
        dtype = self.graphs.state_dtype
        if not memory.stores:
            shapes = state_shapes(self.model, f2.shape[1], f2.shape[2], memory.slots)
            memory.stores = {i: torch.zeros(shape, dtype=dtype) for i, shape in enumerate(shapes)}
        elif next(iter(memory.stores.values())).dtype != dtype:  # resumed from a run in another precision
            memory.stores = {i: store.to(dtype) for i, store in memory.stores.items()}
        window = memory.window.cpu().numpy()
        current = window[:, -1]
        graph_window = window.copy()  # a current frame's slot -> its place after the stored slots
        for j, s in enumerate(current):
            graph_window[window == s] = memory.slots + j
        state = {f"{('keys', 'values')[i % 2]}_{i // 2}": self.graphs.state(store) for i, store in memory.stores.items()}
        # borrowed: the new keys and values are stored at once, path_3 is used before the next step
        path_3, *new = self.graphs.run("step", {"features_2": f2, "features_3": f3, "window": graph_window, **state}, borrowed=True)
        for i, values in enumerate(new):
            write_slots(memory.stores[i], current, torch.as_tensor(values))
        return path_3


def load_backend(model: VideoDepthAnything, runtime: str, checkpoint: Path, precision: str, onnx_dir: Path | None = None):
    """`model` (float32, on the CPU) run by `runtime`, one of `RUNTIMES`: its graphs from
    `onnx_dir`, else from the cache. A runtime that fails to compile them gives way to torch,
    with a warning saying which and why."""
    try:
        folder = exported(model, Path(checkpoint), onnx_dir)
        return CompiledModel(model, RUNTIMES[runtime](folder, precision), runtime)
    except DepthError:
        raise
    except Exception as exc:  # a runtime's own error: torch still runs the same network
        warnings.warn(f"backend {runtime} could not compile the network ({type(exc).__name__}: {exc}); running on torch", stacklevel=2)
        return model
