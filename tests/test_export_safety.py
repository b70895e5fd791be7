"""An export writes nothing but its own files, and what it wrote is checked before it is used:
bad folders refused in one line before any work (nothing around them changed), a damaged graph
exported again in the cache and refused in a user's folder, a damaged compiled blob compiled
again."""
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from helpers import assert_same_depth, synthetic_frames

from annolid_depth.engine.artefacts import OWN_FILES, SIDECAR, STAGING, CompiledFiles, file_facts
from annolid_depth.engine.backends import CompiledModel, exported, installed, load_backend
from annolid_depth.engine.graphs import SPEC, ExportError
from annolid_depth.export import main as export_main

RUNTIMES = [r for r in ("onnxruntime", "openvino") if installed(r)]
needs_runtime = pytest.mark.skipif(not RUNTIMES, reason="no ONNX runtime installed (pip install 'annolid-depth[onnx]')")
MODEL = "video_depth_anything_vits"
FRAMES = [rgb for _, rgb in synthetic_frames(4, 28, 42)]


def tree(root: Path) -> dict[str, str]:
    """Every entry under `root` with its content's hash (folders and links as such)."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "folder"
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def flip_bit(path: Path, at: float = 0.5) -> bytes:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 1
    path.write_bytes(bytes(data))
    return bytes(data)


def copy_export(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("openvino"))
    return target


@pytest.fixture
def sentinel(tmp_path) -> Path:
    """work/: a user's files (a folder with a thesis, a file, a nested folder), an export beside them."""
    work = tmp_path / "work"
    (work / "mydata").mkdir(parents=True)
    (work / "mydata" / "thesis.txt").write_text("four years")
    (work / "afile").write_text("not a folder")
    (work / "deep" / "er").mkdir(parents=True)
    (work / "deep" / "er" / "notes.md").write_text("notes")
    (work / "done").mkdir()
    (work / "done" / SPEC).write_text("{}")
    return work


@pytest.mark.parametrize("target, message", [
    ("mydata", "mydata holds other files (thesis.txt); choose an empty or new folder"),
    (".", ". holds other files (afile, deep, done, ...); choose an empty or new folder"),
    ("afile", "afile is a file; choose a folder for the graphs"),
    ("afile/sub", "afile/sub: afile is a file; choose a folder for the graphs"),
    ("/proc/x/out", "cannot create /proc/x/out (No such file or directory); choose a folder you can write to"),
    ("/proc/self", "cannot write in /proc/self (No such file or directory); choose a folder you can write to"),
    ("done", "done holds an export already; pass --overwrite to replace its graphs"),
])
def test_a_bad_folder_is_refused_in_one_line_before_any_work(sentinel, monkeypatch, capsys, target, message):
    """No checkpoint is there to load: the message is the folder's, so the check came first."""
    monkeypatch.chdir(sentinel)
    before = tree(sentinel)
    assert export_main(["--model", MODEL, "--onnx", target]) == 1
    assert capsys.readouterr().err == f"export: {message}\n"
    assert tree(sentinel) == before


def test_a_failed_export_removes_the_folders_it_created(tmp_path, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    assert export_main(["--model", MODEL, "--onnx", str(tmp_path / "new" / "onnx"), "--checkpoint-root", str(weights)]) == 1
    assert "video_depth_anything_vits.pth" in capsys.readouterr().err  # no checkpoint there
    assert not (tmp_path / "new").exists()


def test_overwrite_replaces_only_the_exports_own_files(vits_export, tmp_path, capsys):
    out = copy_export(vits_export.folder, tmp_path / "onnx")
    (out / "openvino" / "fp32").mkdir(parents=True)
    (out / "openvino" / "fp32" / "kept.bin").write_bytes(b"compiled")
    (out / f"{STAGING}killed").mkdir()  # left by an export that was killed: tolerated, not removed
    (tmp_path / "beside.txt").write_text("next to the export")
    theirs = {name: digest for name, digest in tree(tmp_path).items() if Path(name).name not in OWN_FILES}
    inodes = {name: (out / name).stat().st_ino for name in OWN_FILES}
    assert export_main(["--model", MODEL, "--onnx", str(out), "--checkpoint-root", str(vits_export.checkpoint.parent),
                        "--overwrite"]) == 0
    assert capsys.readouterr().out == f"{MODEL}: encoder, temporal, step, per_image -> {out}\n"
    assert {name: digest for name, digest in tree(tmp_path).items() if Path(name).name not in OWN_FILES} == theirs
    assert all((out / name).stat().st_ino != inodes[name] for name in OWN_FILES)  # each replaced
    assert sorted(p.name for p in out.iterdir()) == sorted([*OWN_FILES, "openvino", f"{STAGING}killed"])  # no staging of its own left
    spec = json.loads((out / SPEC).read_text())
    for name, graph in spec["graphs"].items():
        assert {k: graph[k] for k in ("bytes", "sha256")} == file_facts(out / f"{name}.onnx")


@needs_runtime
def test_a_damaged_graph_in_the_cache_is_exported_again(vits_export, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    folder = copy_export(vits_export.folder, cache / vits_export.folder.relative_to(vits_export.cache))
    damaged = flip_bit(folder / "encoder.onnx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    with caplog.at_level(logging.INFO, logger="annolid_depth.engine.backends"):
        compiled = load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32")
    assert f"{folder / 'encoder.onnx'} does not match its checksum in export.json" in caplog.text
    assert isinstance(compiled, CompiledModel)
    assert (folder / "encoder.onnx").read_bytes() != damaged
    assert (folder / "encoder.onnx").read_bytes() == (vits_export.folder / "encoder.onnx").read_bytes()
    assert_same_depth(compiled, vits_export.model, FRAMES)


@needs_runtime
@pytest.mark.parametrize("graph", ["encoder", "step", "per_image"])
def test_a_damaged_graph_in_a_users_folder_is_refused(vits_export, tmp_path, graph):
    folder = copy_export(vits_export.folder, tmp_path / "onnx")
    damaged = flip_bit(folder / f"{graph}.onnx")
    expected = (f"{folder / graph}.onnx does not match its checksum in export.json (damaged or changed); export "
                f"again: python -m annolid_depth.export --model {MODEL} --onnx {folder} --overwrite")
    with pytest.raises(ExportError) as refused:
        load_backend(vits_export.model, RUNTIMES[0], vits_export.checkpoint, "fp32", folder)
    assert str(refused.value) == expected
    assert (folder / f"{graph}.onnx").read_bytes() == damaged  # left as it was


def test_an_export_without_checksums_is_refused_with_what_to_do(vits_export, tmp_path):
    folder = copy_export(vits_export.folder, tmp_path / "onnx")
    spec = json.loads((folder / SPEC).read_text())
    for graph in spec["graphs"].values():
        del graph["sha256"], graph["bytes"]
    (folder / SPEC).write_text(json.dumps(spec))
    with pytest.raises(ExportError, match=r"encoder.onnx has no checksum in export.json \(exported by an earlier "
                                          r"version\); export again: .* --overwrite$"):
        exported(vits_export.model, vits_export.checkpoint, folder)


# --------------------------------------------------------------------------- compiled blobs


GRAPH_DIGESTS = {"encoder": "1" * 64, "temporal": "2" * 64, "step": "3" * 64, "per_image": "4" * 64}


@pytest.fixture
def compiled_folder(tmp_path) -> Path:
    folder = tmp_path / "onnx" / "openvino" / "fp32"
    folder.mkdir(parents=True)
    (folder / "1.blob").write_bytes(b"compiled one")
    (folder / "2.blob").write_bytes(b"compiled two")
    (folder / "notes.txt").write_text("not the runtime's")
    (tmp_path / "outside.blob").write_bytes(b"elsewhere")
    return folder


def test_unverified_blobs_are_deleted_and_nothing_else(compiled_folder):
    files = CompiledFiles(compiled_folder, GRAPH_DIGESTS)
    assert files.usable()  # no verified.json: the blobs go, the rest stays
    assert sorted(p.name for p in compiled_folder.iterdir()) == ["notes.txt"]
    (compiled_folder / "1.blob").write_bytes(b"compiled again")
    files.seal()
    record = json.loads((compiled_folder / SIDECAR).read_text())
    assert record == {"graphs": GRAPH_DIGESTS, "files": {"1.blob": hashlib.sha256(b"compiled again").hexdigest(),
                                                          "notes.txt": hashlib.sha256(b"not the runtime's").hexdigest()}}
    assert CompiledFiles(compiled_folder, GRAPH_DIGESTS).usable() and (compiled_folder / "1.blob").exists()
    assert CompiledFiles(compiled_folder, {**GRAPH_DIGESTS, "step": "5" * 64}).usable()  # other graphs
    assert sorted(p.name for p in compiled_folder.iterdir()) == ["notes.txt", SIDECAR]
    assert (compiled_folder.parents[2] / "outside.blob").read_bytes() == b"elsewhere"


@pytest.mark.parametrize("change", ["flip", "unlisted", "sidecar"])
def test_a_changed_file_or_record_clears_the_blobs(compiled_folder, change):
    files = CompiledFiles(compiled_folder, GRAPH_DIGESTS)
    files.usable()
    (compiled_folder / "1.blob").write_bytes(b"compiled one")
    files.seal()
    if change == "flip":
        flip_bit(compiled_folder / "1.blob")
    elif change == "unlisted":
        (compiled_folder / "3.blob").write_bytes(b"from elsewhere")
    else:
        (compiled_folder / SIDECAR).write_text("{not json")
    assert CompiledFiles(compiled_folder, GRAPH_DIGESTS).usable()
    assert sorted(p.name for p in compiled_folder.glob("*.blob")) == []
    assert (compiled_folder / "notes.txt").exists()


def test_a_linked_blob_or_folder_is_never_used_or_followed(compiled_folder, tmp_path):
    outside = tmp_path / "outside.blob"
    (compiled_folder / "linked.blob").symlink_to(outside)
    before = tree(tmp_path)
    assert not CompiledFiles(compiled_folder, GRAPH_DIGESTS).usable()
    linked = tmp_path / "elsewhere"
    linked.symlink_to(compiled_folder.parent)
    assert not CompiledFiles(linked / "fp32", GRAPH_DIGESTS).usable()
    assert tree(tmp_path) == {**before, "elsewhere": f"link to {compiled_folder.parent}"}


@pytest.mark.skipif(not installed("openvino"), reason="needs OpenVINO (pip install 'annolid-depth[openvino]')")
def test_a_damaged_openvino_blob_is_compiled_again(vits_export, tmp_path):
    folder = copy_export(vits_export.folder, tmp_path / "onnx")
    load_backend(vits_export.model, "openvino", vits_export.checkpoint, "fp32", folder)
    compiled = folder / "openvino" / "fp32"
    record = json.loads((compiled / SIDECAR).read_text())
    blobs = sorted(compiled.glob("*.blob"), key=lambda p: p.stat().st_size)
    assert sorted(record["files"]) == sorted(p.name for p in blobs) and len(blobs) == 4
    assert record["graphs"] == {name: graph["sha256"] for name, graph in json.loads((folder / SPEC).read_text())["graphs"].items()}
    damaged = flip_bit(blobs[-1], 0.6)  # the biggest: the encoder's weights
    model = load_backend(vits_export.model, "openvino", vits_export.checkpoint, "fp32", folder)
    assert blobs[-1].read_bytes() != damaged
    assert json.loads((compiled / SIDECAR).read_text())["files"] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in compiled.glob("*.blob")}
    assert_same_depth(model, vits_export.model, FRAMES)
