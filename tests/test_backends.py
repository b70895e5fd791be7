"""ONNX export and the compiled CPU backends: the same depth as torch, through the same engines."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ENGINES, assert_same_depth, depth_of, synthetic_frames
from parity_recipe import errors, recipe_state_dict, write_checkpoint

from annolid_depth.engine.artefacts import file_facts
from annolid_depth.engine.backends import RUNTIMES as RUNTIME_CLASSES
from annolid_depth.engine.backends import BackendError, CompiledModel, installed, load_backend, pick_backend
from annolid_depth.engine.device import cpu_runs_bf16
from annolid_depth.engine.graphs import FORMAT, SPEC, ExportError, export_onnx
from annolid_depth.engine.loading import load_model, self_check
from annolid_depth.export import main as export_main
from annolid_depth.model import VideoDepthAnything
from annolid_depth.model.vda import write_slots
from annolid_depth.runner import run_video_depth_anything

RUNTIMES = [r for r in ("onnxruntime", "openvino") if installed(r)]
pytestmark = pytest.mark.skipif(not RUNTIMES, reason="no ONNX runtime installed (pip install 'annolid-depth[onnx]')")


def load(checkpoint, encoder="vits"):
    return load_model(str(checkpoint), checkpoint.stat().st_mtime_ns, encoder, False, "cpu")


def test_export_folder_describes_its_graphs(vits_export):
    spec = json.loads((vits_export.folder / SPEC).read_text())
    assert spec["model"] == "video_depth_anything_vits" and spec["encoder"] == "vits" and spec["format"] == FORMAT
    assert spec["checkpoint"]["size"] == vits_export.checkpoint.stat().st_size
    assert len(spec["checkpoint"]["sha256"]) == 64
    assert list(spec["graphs"]) == ["encoder", "temporal", "step", "per_image"]
    step = spec["graphs"]["step"]
    assert list(step["inputs"])[:3] == ["features_2", "features_3", "window"]
    assert step["inputs"]["keys_0"] == ["P0", 8, "slots", 24] and step["outputs"]["new_values_7"] == ["P7", 8, "N", 8]
    import onnx

    for name, graph in spec["graphs"].items():
        proto = onnx.load(str(vits_export.folder / graph["file"]), load_external_data=False)
        assert [i.name for i in proto.graph.input] == list(graph["inputs"])
        assert [o.name for o in proto.graph.output] == list(graph["outputs"])
        sizes = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert sizes[0], f"{name}: the frame count must be dynamic"


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["offline", "stream"])
def test_backend_reproduces_the_fixtures(parity_dir, vits_export, runtime, kind):
    compiled = load_backend(vits_export.model, runtime, vits_export.checkpoint, "fp32", vits_export.folder)
    assert isinstance(compiled, CompiledModel) and compiled.runtime == runtime
    fixture = np.load(parity_dir / f"vits_{kind}.npz")
    depth = depth_of(compiled, kind, fixture["frames"], int(fixture["input_size"]))
    max_rel, rel_l2 = errors(depth, fixture["depth"])
    assert max_rel <= 3e-5 and rel_l2 <= 1e-5, (max_rel, rel_l2)


def test_export_command_round_trip_for_vitb(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "video_depth_anything_vitb.pth", "vitb")
    assert export_main(["--model", "video_depth_anything_vitb", "--onnx", str(tmp_path / "onnx"),
                        "--checkpoint-root", str(tmp_path)]) == 0
    model = load(checkpoint, "vitb")
    compiled = load_backend(model, RUNTIMES[0], checkpoint, "fp32", tmp_path / "onnx")
    assert_same_depth(compiled, model, [rgb for _, rgb in synthetic_frames(4, 28, 42)])


def test_export_round_trip_for_vitl(tmp_path):
    model = VideoDepthAnything("vitl")
    model.load_state_dict(recipe_state_dict("vitl"), strict=True)
    model.eval()
    export_onnx(model, tmp_path / "onnx")
    compiled = CompiledModel(model, RUNTIME_CLASSES[RUNTIMES[0]](tmp_path / "onnx", "fp32"), RUNTIMES[0])
    assert_same_depth(compiled, model, [rgb for _, rgb in synthetic_frames(4, 28, 42)])


def test_streaming_state_stays_in_its_slots(vits_export):
    """Longer than the ring of slots, with groups of several frames: the state written back
    from the step graph must be what torch keeps."""
    compiled = load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32", vits_export.folder)
    frames = [rgb for _, rgb in synthetic_frames(60, 20, 28)]
    max_rel, rel_l2 = errors(depth_of(compiled, "stream", frames), depth_of(vits_export.model, "stream", frames))
    assert max_rel <= 3e-5 and rel_l2 <= 1e-5, (max_rel, rel_l2)


@pytest.mark.parametrize("store", [np.zeros, torch.zeros])
def test_slots_are_written_run_by_run(store):
    """A group's keys go to its slots, also when they wrap round the ring or come in any order."""
    for slots in ([8, 9, 1, 2, 3], [4], [2, 3, 4, 5, 6], [6, 2, 3, 9, 0]):
        values = np.arange(2 * 3 * len(slots) * 4, dtype=np.float32).reshape(2, 3, len(slots), 4) + 1
        held, expected = store((2, 3, 10, 4)), np.zeros((2, 3, 10, 4), np.float32)
        expected[:, :, slots] = values
        index = np.array(slots) if store is np.zeros else torch.tensor(slots)
        write_slots(held, index, values if store is np.zeros else torch.from_numpy(values))
        assert np.array_equal(np.asarray(held), expected), slots


@pytest.mark.skipif(not (installed("openvino") and cpu_runs_bf16()), reason="needs OpenVINO and a CPU with bf16 arithmetic")
def test_openvino_bf16_compiled_after_fp32_stays_close(parity_dir, vits_export, tmp_path):
    """bf16 graphs compiled in a process that compiled the fp32 ones first: within bf16's
    error of the fixtures (they came out constant when both precisions shared OpenVINO's
    cache folder)."""
    folder = tmp_path / "onnx"
    shutil.copytree(vits_export.folder, folder, ignore=shutil.ignore_patterns("openvino"))
    fixture = np.load(parity_dir / "vits_stream.npz")
    frames, expected = fixture["frames"][:10], fixture["depth"][:10]  # streaming is causal: the first frames' depth
    for precision, bounds in (("fp32", (3e-5, 1e-5)), ("bf16", (4e-2, 2e-2))):
        compiled = load_backend(vits_export.model, "openvino", vits_export.checkpoint, precision, folder)
        depth = np.stack([d for _, _, d in ENGINES["stream"](compiled, int(fixture["input_size"]), precision=precision).run(enumerate(frames))])
        max_rel, rel_l2 = errors(depth, expected)
        assert max_rel <= bounds[0] and rel_l2 <= bounds[1], (precision, max_rel, rel_l2)
    assert sorted(p.name for p in (folder / "openvino").iterdir()) == ["bf16", "fp32"]


def test_cache_is_reused(vits_export, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(vits_export.cache))
    before = {p.name: p.stat().st_mtime_ns for p in vits_export.folder.iterdir()}
    compiled = load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32")
    assert isinstance(compiled, CompiledModel)
    assert {p.name: p.stat().st_mtime_ns for p in vits_export.folder.iterdir() if p.name in before} == before
    assert [p.name for p in vits_export.cache.glob("annolid/depth/compiled/*")] == [vits_export.folder.name]


def test_a_stale_cache_is_exported_again(vits_export, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    folder = cache / vits_export.folder.relative_to(vits_export.cache)
    shutil.copytree(vits_export.folder, folder, ignore=shutil.ignore_patterns("openvino"))
    spec = json.loads((folder / SPEC).read_text())
    (folder / SPEC).write_text(json.dumps({**spec, "format": FORMAT - 1}))  # as an older version left it
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert isinstance(load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32"), CompiledModel)
    assert json.loads((folder / SPEC).read_text())["format"] == FORMAT


def test_runner_runs_on_a_compiled_backend(vits_export, video, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(vits_export.cache))
    options = dict(checkpoint_root=vits_export.checkpoint.parent, input_size=28, max_res=64, max_frames=3, save_npz=True)
    on_torch = run_video_depth_anything(video, tmp_path / "torch", backend="torch", **options)
    compiled = run_video_depth_anything(video, tmp_path / "compiled", backend=RUNTIMES[0], **options)
    assert compiled["frames"] == on_torch["frames"] == 3
    a, b = np.load(on_torch["npz"][0])["depths"], np.load(compiled["npz"][0])["depths"]
    assert errors(b, a)[0] <= 3e-5


def test_export_of_another_checkpoint_is_refused(vits_export, tmp_path):
    spec = json.loads((vits_export.folder / SPEC).read_text())
    cases = {
        "vitb": ({**spec, "encoder": "vitb", "model": "video_depth_anything_vitb"}, "exported from video_depth_anything_vitb"),
        "old": ({**spec, "format": FORMAT - 1}, f"format {FORMAT - 1}, this version reads {FORMAT}"),
        "other": ({**spec, "checkpoint": {**spec["checkpoint"], "size": 1, "sha256": "0" * 64}}, "from another"),
    }
    for name, (changed, message) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / SPEC).write_text(json.dumps(changed))
        with pytest.raises(ExportError, match=message):
            load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32", tmp_path / name)
    with pytest.raises(ExportError, match="holds no ONNX export"):
        load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32", tmp_path / "empty")


def test_a_graph_that_does_not_compile_falls_back_to_torch(vits_export, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(vits_export.folder, broken, ignore=shutil.ignore_patterns("openvino"))
    (broken / "encoder.onnx").write_bytes(b"not a graph")
    spec = json.loads((broken / SPEC).read_text())
    spec["graphs"]["encoder"].update(file_facts(broken / "encoder.onnx"))  # as an export of a graph that does not compile
    (broken / SPEC).write_text(json.dumps(spec))
    with pytest.warns(UserWarning, match=f"backend {RUNTIMES[0]} could not compile the network .*running on torch"):
        model = load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32", broken)
    assert model is vits_export.model


def test_auto_and_a_missing_runtime(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(BackendError, match=r"pip install 'annolid-depth\[onnx\]'"):
        pick_backend("onnxruntime", cpu, "fp32")
    with pytest.raises(ValueError, match="runs fp32 only"):
        pick_backend("onnxruntime", cpu, "bf16")
    with pytest.raises(ValueError, match="unknown backend"):
        pick_backend("tensorrt", cpu, "fp32")


def test_runner_names_a_missing_runtime_before_any_work(video, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BackendError, match="annolid-depth\\[openvino\\]"):
        run_video_depth_anything(video, tmp_path / "out", backend="openvino", max_frames=1)
    assert not (tmp_path / "out").exists()


def test_export_command_reports_bad_input(tmp_path, capsys):
    assert export_main(["--model", "video_depth_anything_vitx", "--onnx", str(tmp_path / "o")]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()



def test_a_compiled_stream_resumes_from_its_snapshot(vits_export, tmp_path):
    """The streaming state of a compiled backend (numpy stores) goes through a snapshot on
    disk and resumes to the same depth, as torch's does."""
    from annolid_depth.engine import StreamingEngine

    compiled = load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32", vits_export.folder)
    frames = list(synthetic_frames(30, 20, 28))
    whole = [d for _, _, d in StreamingEngine(compiled, input_size=28).run(frames)]
    engine = StreamingEngine(compiled, input_size=28)
    for _ in engine.run(frames):
        if (state := engine.snapshot()) is not None and state["frames"] >= 8:
            break
    torch.save(state, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    rest = list(StreamingEngine(compiled, input_size=28).run(frames[state["frames"]:], state))
    assert [i for i, _, _ in rest] == [i for i, _ in frames[state["frames"]:]]
    for (_, _, d), expected in zip(rest, whole[state["frames"]:]):
        assert np.abs(d - expected).max() <= 1e-5 * float(expected.max() - expected.min())


@pytest.mark.skipif(not (installed("openvino") and cpu_runs_bf16()), reason="needs OpenVINO and a CPU with bf16 arithmetic")
def test_openvino_bf16_stream_state_is_bf16_and_resumes_across_precisions(vits_export, tmp_path):
    """OpenVINO's bf16 step graph keeps the stream's keys and values in bf16 (half the memory,
    no conversion of the whole state on each call); its snapshot resumes on the same backend
    to the same depth, and a snapshot in one precision resumes in the other."""
    from annolid_depth.engine import StreamingEngine

    frames = list(synthetic_frames(30, 20, 28))

    def interrupted(model, precision):
        engine = StreamingEngine(model, input_size=28, precision=precision)
        for _ in engine.run(frames):
            if (state := engine.snapshot()) is not None and state["frames"] >= 8:
                torch.save(state, tmp_path / "state.pt")
                return torch.load(tmp_path / "state.pt", weights_only=True)

    def resumed(model, precision, state):
        return [d for _, _, d in StreamingEngine(model, input_size=28, precision=precision).run(frames[state["frames"]:], state)]

    bf16 = load_backend(vits_export.model, "openvino", vits_export.checkpoint, "bf16", vits_export.folder)
    whole = [d for _, _, d in StreamingEngine(bf16, input_size=28, precision="bf16").run(frames)]
    state = interrupted(bf16, "bf16")
    assert {held.dtype for held in state["memory"].values()} == {torch.bfloat16}  # numbered stores of a compiled backend
    for d, expected in zip(resumed(bf16, "bf16", state), whole[state["frames"]:]):
        assert np.array_equal(d, expected)
    fp32 = load_backend(vits_export.model, "openvino", vits_export.checkpoint, "fp32", vits_export.folder)
    exact = [d for _, _, d in StreamingEngine(fp32, input_size=28).run(frames)]
    for later in (resumed(fp32, "fp32", state), resumed(bf16, "bf16", interrupted(fp32, "fp32"))):
        max_rel, rel_l2 = errors(np.stack(later), np.stack(exact[len(frames) - len(later):]))
        assert max_rel <= 4e-2 and rel_l2 <= 2e-2, (max_rel, rel_l2)


def test_self_check_catches_a_graph_with_wrong_numbers(vits_export, tmp_path):
    """A graph that compiles and runs but computes something else (one weight of the head
    changed): the self-check names the engine and the error; the true graphs pass it."""
    import onnx
    from onnx import numpy_helper

    folder = tmp_path / "onnx"
    shutil.copytree(vits_export.folder, folder, ignore=shutil.ignore_patterns("openvino"))
    graph = onnx.load(str(folder / "per_image.onnx"))
    biggest = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))
    changed = numpy_helper.to_array(biggest) * 1.5
    biggest.CopyFrom(numpy_helper.from_array(changed.astype(np.float32), biggest.name))
    onnx.save(graph, str(folder / "per_image.onnx"))
    runtime = RUNTIME_CLASSES[RUNTIMES[0]]
    good = CompiledModel(vits_export.model, runtime(vits_export.folder, "fp32"), RUNTIMES[0])
    assert self_check(good, vits_export.model, "fp32") is None
    wrong = CompiledModel(vits_export.model, runtime(folder, "fp32"), RUNTIMES[0])
    assert re.fullmatch(r"StreamingEngine: max_rel \S+, rel_l2 \S+", self_check(wrong, vits_export.model, "fp32"))


BROKEN_RUNTIME = "raise ImportError('libopenvino.so.2026: cannot open shared object file')\n"


@pytest.mark.skipif("openvino" not in RUNTIMES, reason="needs OpenVINO (what auto takes)")
def test_auto_with_a_broken_runtime_runs_torch_with_one_line(vits_export, video, tmp_path):
    """An OpenVINO that is installed but does not import: the CLI's default backend runs torch,
    says why in one line, and gives torch's depth (a cache of its own: no kept answer of auto's)."""
    fake = tmp_path / "site"
    (fake / "openvino").mkdir(parents=True)
    (fake / "openvino" / "__init__.py").write_text(BROKEN_RUNTIME)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path]), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "annolid_depth", str(video), "--output-dir", str(tmp_path / "auto"),
                           "--checkpoint-root", str(vits_export.checkpoint.parent), "--input-size", "28", "--max-res", "64",
                           "--max-frames", "3", "--save-npz", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "openvino" in line]
    assert lines == ["annolid-depth: warning: backend openvino failed a speed probe (ImportError: "
                     "libopenvino.so.2026: cannot open shared object file); auto does not take it"], done.stderr
    assert not (tmp_path / "cache" / "annolid" / "depth" / "backend-choice.json").exists()  # timed again next run
    on_torch = run_video_depth_anything(video, tmp_path / "torch", backend="torch", checkpoint_root=vits_export.checkpoint.parent,
                                        input_size=28, max_res=64, max_frames=3, save_npz=True)
    auto = np.load(tmp_path / "auto" / Path(on_torch["npz"][0]).name)["depths"]
    assert np.array_equal(auto, np.load(on_torch["npz"][0])["depths"])
