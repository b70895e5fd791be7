"""The network as four ONNX graphs, for the compiled CPU runtimes (`backends.py`) and for use
outside this package (`python -m annolid_depth.export`). `export.json` says what each graph
takes and returns and what it was exported from. The graphs split the network where the
engines need to work between calls:

- `encoder`: images [N, 3, 14*ph, 14*pw] and the position table resampled to ph x pw
  (`VideoDepthAnything.pretrained.position_table(ph, pw)[:, 1:]`, as [1, ph, pw, C]: the
  resampling fixes the size, so it is computed outside) -> 4 feature maps [N, ph, pw, C].
- `temporal`: features 2 and 3 of the T frames of one clip, all attending to each other ->
  path_3 [T, F, 2ph, 2pw] (the windowed mode).
- `step`: the same for T frames of a stream. The temporal attention's memory goes in and out
  as explicit tensors: for each of the 8 attention blocks, the keys and values of the
  earlier frames [P, 8, slots, d] go in; the current frames' keys and values [P, 8, T, d] come
  out, for the caller to store in the frames' slots. `window` [T, n] holds the positions each
  frame attends to: slot s < slots is an earlier frame, slots + j is current frame j.
- `per_image`: features 0 and 1 and path_3 of n images -> depth [n, 1, 14*ph, 14*pw] before
  the final relu, one image independently of the others (run it a few images at a time).

Every size is dynamic: frame count, ph, pw, window length, state size.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..model import PATCH, VideoDepthAnything
from ..model.vda import TemporalAttention
from ..weights import checkpoint_key, checkpoint_sha256
from .artefacts import SPEC, ExportError, check_target, file_facts, place, staging_folder, verify_graphs

FORMAT = 2  # bump when the graphs' inputs, outputs, meaning or speed change (cached graphs are
# then exported again; a folder given with --onnx must be). 2: the step graph's windows without
# gather and scatter ops.
OPSET = 18


def _missing(package: str, extra: str) -> ExportError:
    return ExportError(f"{package} is not installed; pip install 'annolid-depth[{extra}]'")


# --------------------------------------------------------------------------- graphs


def tokens(features: torch.Tensor) -> torch.Tensor:
    """[N, ph, pw, C] -> [N, ph*pw, C], the layout the network's head takes."""
    return features.flatten(1, 2)


class EncoderGraph(nn.Module):
    def __init__(self, model: VideoDepthAnything):
        super().__init__()
        self.dino = model.pretrained

    def forward(self, images, position):
        ph, pw = position.shape[1], position.shape[2]
        table = torch.cat([self.dino.pos_embed[:, :1], position.flatten(1, 2)], dim=1)
        return tuple(f.unflatten(1, (ph, pw)) for f in self.dino(images, table))


class TemporalGraph(nn.Module):
    def __init__(self, model: VideoDepthAnything):
        super().__init__()
        self.head = model.head

    def forward(self, features_2, features_3):
        frames, ph, pw, _ = features_2.shape
        return self.head.temporal(tokens(features_2), tokens(features_3), frames, ph, pw)


class GraphMemory:
    """The `AttentionMemory` of the step graph while it is traced: each block's earlier keys and
    values come from inputs, the current frames' follow them (as a second part, see
    `held_parts`) and are returned."""

    def __init__(self, blocks: list[nn.Module], window: torch.Tensor, state: tuple[torch.Tensor, ...]):
        self.window = window
        self.index = {block: i for i, block in enumerate(blocks)}
        self.state = state
        self.new: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # The windows' gather and scatter-add written as the runtimes run them fast: a gather along
    # one axis and a matrix product with the windows' placement, not the generic gather and
    # scatter kernels (bench/bench_model.py times the step graph).

    def to_windows(self, scores):
        """Each frame's window picked from the frames' scores laid end to end."""
        p, heads, t, slots = scores.shape
        flat = (self.window + torch.arange(t).unsqueeze(1) * slots).flatten()  # [T * positions] into [T * slots]
        return scores.reshape(p, heads, t * slots).index_select(2, flat).view(p, heads, t, -1)

    def to_slots(self, weights, slots: int):
        """Each frame's weights go through its own block of a block-diagonal 0/1 matrix."""
        p, heads, t, n = weights.shape
        placed = (self.window.unsqueeze(-1) == torch.arange(slots)).to(weights.dtype)  # [T, positions, slots]
        diagonal = (placed.unsqueeze(2) * torch.eye(t, dtype=weights.dtype).view(t, 1, t, 1)).reshape(t * n, t * slots)
        return torch.matmul(weights.reshape(p, heads, t * n), diagonal).view(p, heads, t, slots)

    def store(self, block, keys, values):
        i = self.index[block]
        self.new[i] = (keys, values)
        earlier_keys, earlier_values = self.state[2 * i], self.state[2 * i + 1]
        return (earlier_keys, keys), (earlier_values, values)


def attention_blocks(model: VideoDepthAnything) -> list[TemporalAttention]:
    """The head's temporal attention blocks, in the order the step graph's state lists them."""
    return [m for m in model.head.modules() if isinstance(m, TemporalAttention)]


class StepGraph(nn.Module):
    def __init__(self, model: VideoDepthAnything):
        super().__init__()
        self.head = model.head
        self.blocks = attention_blocks(model)

    def forward(self, features_2, features_3, window, state: list[torch.Tensor]):
        frames, ph, pw, _ = features_2.shape
        memory = GraphMemory(self.blocks, window, state)
        path_3 = self.head.temporal(tokens(features_2), tokens(features_3), frames, ph, pw, memory)
        return (path_3, *(t for i in range(len(self.blocks)) for t in memory.new[i]))


class PerImageGraph(nn.Module):
    def __init__(self, model: VideoDepthAnything):
        super().__init__()
        self.head = model.head

    def forward(self, features_0, features_1, path_3):
        _, ph, pw, _ = features_0.shape
        return self.head.per_image(tokens(features_0), tokens(features_1), path_3, ph, pw)


def state_grids(ph: int, pw: int) -> list[tuple[int, int]]:
    """Pixel grid of each attention block's state, in `attention_blocks` order: two blocks
    per temporal module, at levels 3 and 4 (ph x pw, halved by a stride-2 convolution), path_4
    (ph x pw) and path_3 (2ph x 2pw)."""
    half = ((ph + 1) // 2, (pw + 1) // 2)
    return [grid for grid in [(ph, pw), half, (ph, pw), (2 * ph, 2 * pw)] for _ in range(2)]


def state_shapes(model: VideoDepthAnything, ph: int, pw: int, slots: int) -> list[tuple[int, ...]]:
    """Shape of each state tensor (keys, values per block) for a ph x pw grid and `slots` frames."""
    shapes = []
    for block, (gh, gw) in zip(attention_blocks(model), state_grids(ph, pw)):
        dim = block.to_q.weight.shape[0]
        shapes += [(gh * gw, block.heads, slots, dim // block.heads)] * 2
    return shapes


# --------------------------------------------------------------------------- export


def _example(model: VideoDepthAnything, ph: int = 3, pw: int = 4, frames: int = 3, slots: int = 5):
    """Small inputs to trace with; sizes distinct and above 1, so no size is taken as fixed."""
    images = torch.randn(frames, 3, ph * PATCH, pw * PATCH)
    with torch.no_grad():
        position = model.pretrained.position_table(ph, pw)[:, 1:].unflatten(1, (ph, pw))
        features = [f.contiguous() for f in EncoderGraph(model)(images, position)]  # as a runtime hands them over
        path_3 = TemporalGraph(model)(features[2], features[3])
    window = torch.tensor([[0, 1, slots + i] for i in range(frames)])
    state = tuple(torch.zeros(s) for s in state_shapes(model, ph, pw, slots))
    return images, position, features, path_3, window, state


def graph_specs(model: VideoDepthAnything) -> dict:
    """What each graph takes and returns: names and shapes, a name standing for a size that
    may change from call to call (N images or frames, ph x pw patches, P pixels, n positions)."""
    c, f = model.config.embed_dim, model.config.features
    feature = ["N", "ph", "pw", c]
    path_3 = ["N", f, "2*ph", "2*pw"]
    state, new = {}, {}
    for i, block in enumerate(attention_blocks(model)):
        d = block.to_q.weight.shape[0] // block.heads
        for kind in ("keys", "values"):
            state[f"{kind}_{i}"] = [f"P{i}", block.heads, "slots", d]
            new[f"new_{kind}_{i}"] = [f"P{i}", block.heads, "N", d]
    return {
        "encoder": {
            "inputs": {"images": ["N", 3, f"{PATCH}*ph", f"{PATCH}*pw"], "position": [1, "ph", "pw", c]},
            "outputs": {f"features_{i}": feature for i in range(4)},
        },
        "temporal": {"inputs": {"features_2": feature, "features_3": feature}, "outputs": {"path_3": path_3}},
        "step": {
            "inputs": {"features_2": feature, "features_3": feature, "window": ["N", "n"], **state},
            "outputs": {"path_3": path_3, **new},
        },
        "per_image": {
            "inputs": {"features_0": feature, "features_1": feature, "path_3": path_3},
            "outputs": {"depth": ["N", 1, f"{PATCH}*ph", f"{PATCH}*pw"]},
        },
    }


def _export_one(module: nn.Module, args: tuple, names: dict, path: Path) -> None:
    """Trace `module` into an ONNX graph, every size named in `names` dynamic. The tracing
    exporter takes seconds where torch.export's takes a minute per head graph, and its graphs
    run the same."""
    shapes = {**names["inputs"], **names["outputs"]}
    dynamic = {name: [d for d, size in enumerate(shape) if isinstance(size, str)] for name, shape in shapes.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own deprecation and on tracing
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(names["inputs"]),
            output_names=list(names["outputs"]),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )


def checkpoint_facts(checkpoint: Path, digest: bool = True) -> dict:
    stat = checkpoint.stat()
    facts = {"file": checkpoint.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if digest:
        facts["sha256"] = checkpoint_sha256(checkpoint)
    return facts


def export_onnx(model: VideoDepthAnything, out_dir: str | Path, checkpoint: Path | None = None,
                overwrite: bool = False) -> dict:
    """Write the four graphs and `export.json` into `out_dir` (`artefacts.check_target` says
    which folders may take them; `overwrite` replaces an earlier export's own files there).
    They are made whole in a hidden folder inside it and moved into place, `export.json` last,
    so no half-written export is ever described as whole and no other file is touched."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise _missing("onnx", "onnx") from None

    out_dir = Path(out_dir)
    check_target(out_dir, overwrite)
    images, position, features, path_3, window, state = _example(model)
    specs = graph_specs(model)
    calls = {
        "encoder": (EncoderGraph(model), (images, position)),
        "temporal": (TemporalGraph(model), (features[2], features[3])),
        "step": (StepGraph(model), (features[2], features[3], window, list(state))),
        "per_image": (PerImageGraph(model), (features[0], features[1], path_3)),
    }
    staging = staging_folder(out_dir)
    try:
        for name, (module, args) in calls.items():
            _export_one(module, args, specs[name], staging / f"{name}.onnx")
            specs[name].update(file=f"{name}.onnx", **file_facts(staging / f"{name}.onnx"))
        spec = {
            "format": FORMAT,
            "package_version": __version__,
            "torch_version": torch.__version__,
            "opset": OPSET,
            "model": checkpoint_key(model.encoder, model.metric),
            "encoder": model.encoder,
            "metric": model.metric,
            "checkpoint": checkpoint_facts(checkpoint) if checkpoint else None,
            "graphs": specs,
        }
        (staging / SPEC).write_text(json.dumps(spec, indent=2))
        place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return spec


def read_spec(folder: Path, encoder: str, metric: bool, checkpoint: Path | None) -> dict:
    """The export's description, checked against what it is about to stand in for, and its
    graphs against their checksums."""
    path = Path(folder) / SPEC
    try:
        spec = json.loads(path.read_text())
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        raise ExportError(f"{folder} holds no ONNX export ({SPEC} is missing)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} cannot be read ({exc}); export again") from None
    redo = f"export again: python -m annolid_depth.export --model {checkpoint_key(encoder, metric)} --onnx {folder} --overwrite"
    if spec.get("format") != FORMAT:
        raise ExportError(f"{folder} is an export of format {spec.get('format')}, this version reads {FORMAT}; {redo}")
    if (spec.get("encoder"), spec.get("metric")) != (encoder, metric):
        raise ExportError(f"{folder} was exported from {spec.get('model')}, not the {encoder} "
                          f"{'metric' if metric else 'relative'} model asked for; {redo}")
    if checkpoint is not None and not same_checkpoint(spec.get("checkpoint"), checkpoint):
        raise ExportError(f"{folder} was exported from another {checkpoint.name} (size, date and "
                          f"checksum differ); {redo}")
    verify_graphs(Path(folder), spec, redo)
    return spec


def same_checkpoint(recorded: dict | None, checkpoint: Path) -> bool:
    """Size and date match, or else the checksum does (a copied file keeps its bytes)."""
    if not recorded:
        return False
    facts = checkpoint_facts(checkpoint, digest=False)
    if facts["size"] != recorded.get("size"):
        return False
    return facts["mtime_ns"] == recorded.get("mtime_ns") or recorded.get("sha256") == checkpoint_sha256(checkpoint)
