"""An output folder's files are input, not trusted state: a run.json naming paths outside the
folder, fields of the wrong type, or links among the outputs never make a run touch anything
outside its own outputs, and never stop it with a traceback (one warning, a fresh start)."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_video

from annolid_depth import run_video_depth_anything

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"input_size": 28, "max_res": 64, "max_frames": 4}


def tree_hash(root: Path) -> str:
    """Names, kinds and bytes of everything under `root` (links not followed)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            digest.update(b"link:" + str(path.readlink()).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def scene(tmp_path):
    """A video with its output folder, and files beside and far from it that must survive."""
    videos = tmp_path / "videos"
    video = make_video(videos / "v.mp4", frames=4)
    (videos / "notes.txt").write_text("a thesis chapter\n")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "data.csv").write_text("1,2,3\n")
    (elsewhere / "sub" / "more.bin").write_bytes(bytes(range(256)) * 2000)
    out = videos / "v"
    out.mkdir()
    return video, out, [tmp_path / "elsewhere", videos / "notes.txt"]


def sentinels(paths: list[Path]) -> list[str]:
    return [tree_hash(p) if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def run_cli(video: Path, weights_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "annolid_depth", str(video), "--checkpoint-root", str(weights_dir),
                           "--input-size", "28", "--max-res", "64", "--quiet", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("status", ["complete", "publishing"])
def test_a_run_json_naming_files_outside_its_folder_deletes_nothing(scene, weights_dir, status):
    video, out, outside = scene
    before = sentinels(outside)
    names = {"a": str(outside[0]), "b": "../notes.txt"}
    (out / "run.json").write_text(json.dumps({"format": 1, "status": status, "outputs": names,
                                              "replaces": [str(outside[0]), "../notes.txt"]}))
    done = run_cli(video, weights_dir)
    assert done.returncode == 0, done.stderr
    assert sentinels(outside) == before
    assert f"{out / 'run.json'} is damaged" in done.stderr and "'" + str(outside[0]) + "'" in done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


DAMAGED = {
    "previous is text": {"status": "failed", "previous": "x"},
    "outputs a list while publishing": {"status": "publishing", "outputs": ["depth.ndjson"]},
    "resume point a list": {"status": "cancelled", "resume_point": [25]},
    "frames negative": {"status": "cancelled", "resume_point": {"frames": -5, "last_frame_index": 1, "marks": {}}},
    "frames text": {"status": "cancelled", "resume_point": {"frames": "x", "last_frame_index": 1, "marks": {}}},
    "marks a list": {"status": "cancelled", "resume_point": {"frames": 2, "last_frame_index": 1, "marks": [1]}},
    "status unknown": {"status": "exploded"},
    "a hidden name": {"status": "complete", "outputs": {"depth_ndjson": ".bashrc"}},
    "previous run naming a folder above": {"status": "failed", "previous": {"status": "complete", "outputs": {"a": ".."}}},
    "model not an object": {"status": "complete", "model": "vits", "outputs": {}},
}


@pytest.mark.parametrize("resume", [False, True])
@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_run_json_with_fields_of_the_wrong_type_gives_one_warning_and_a_fresh_start(scene, weights_dir, case, resume,
                                                                                   caplog):
    video, out, outside = scene
    before = sentinels(outside)
    (out / "run.json").write_text(json.dumps({"format": 1, **DAMAGED[case]}))
    result = run_video_depth_anything(video, out, checkpoint_root=weights_dir, resume=resume, **SMALL)
    assert result["status"] == "complete" and result["frames"] == 4
    assert caplog.text.count("is damaged") == 1 and str(out / "run.json") in caplog.text
    assert sentinels(outside) == before


def test_linked_partial_outputs_are_never_written_through(scene, weights_dir, tmp_path, caplog):
    video, out, outside = scene
    target = tmp_path / "elsewhere" / "data.csv"
    (out / "depth.ndjson.partial").symlink_to(target)
    (out / "depth_frames.partial").symlink_to(tmp_path / "elsewhere" / "sub")
    before = sentinels(outside)
    result = run_video_depth_anything(video, out, checkpoint_root=weights_dir, save_depth_frames=True, **SMALL)
    assert result["status"] == "complete"
    assert sentinels(outside) == before
    for name in ("depth.ndjson", "depth_frames"):
        assert not (out / name).is_symlink() and (out / name).exists()
    assert len(list((out / "depth_frames").iterdir())) == 4


def test_a_link_put_in_place_of_a_partial_output_before_a_resume_is_not_followed(scene, weights_dir, tmp_path, caplog):
    video, out, outside = scene
    cancelled = run_video_depth_anything(video, out, checkpoint_root=weights_dir, should_cancel=lambda: True,
                                         **{**SMALL, "max_frames": 0})
    assert cancelled["status"] == "cancelled" and (out / "depth.ndjson.partial").exists()
    big = tmp_path / "elsewhere" / "big.bin"
    big.write_bytes(b"\x01" * 500_000)
    (out / "depth.ndjson.partial").unlink()
    (out / "depth.ndjson.partial").symlink_to(big)
    before = sentinels(outside)
    result = run_video_depth_anything(video, out, checkpoint_root=weights_dir, resume=True, **{**SMALL, "max_frames": 0})
    assert result["status"] == "complete" and big.stat().st_size == 500_000
    assert sentinels(outside) == before
    assert "depth.ndjson.partial is a symbolic link" in caplog.text and "starting over" in caplog.text


def test_a_final_output_that_is_a_link_is_replaced_not_followed(scene, weights_dir, tmp_path, caplog):
    video, out, outside = scene
    (out / "depth.ndjson").symlink_to(tmp_path / "elsewhere" / "data.csv")
    before = sentinels(outside)
    result = run_video_depth_anything(video, out, checkpoint_root=weights_dir, **SMALL)
    assert result["status"] == "complete" and sentinels(outside) == before
    assert not (out / "depth.ndjson").is_symlink() and "is a symbolic link" in caplog.text
