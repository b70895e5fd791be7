"""The documented contract end to end: run_video_depth_anything and the CLI on a real video."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from helpers import cut_clip, read_seed_snippet, wait_for

from annolid_depth import run_video_depth_anything, runner
from annolid_depth.errors import OutputError, VideoError, WeightsError
from annolid_depth.io.records import iter_records

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"input_size": 56, "max_res": 160}


def test_documented_snippet_verbatim(tmp_path, media_clip, weights_dir, monkeypatch):
    from annolid.depth import run_video_depth_anything  # as the user documentation writes it

    monkeypatch.setenv("ANNOLID_DEPTH_CHECKPOINTS", str(weights_dir))
    monkeypatch.chdir(tmp_path)
    cut_clip(media_clip, tmp_path / "videos" / "mice.mp4", 8)
    input_video = Path("videos/mice.mp4")
    output_dir = Path("outputs/mice_depth")

    result = run_video_depth_anything(
        input_video=str(input_video),
        output_dir=str(output_dir),
        encoder="vits",
        streaming=True,
        target_fps=15,
        max_res=1280,
        save_depth_video=True,
        save_depth_frames=True,
        save_point_clouds=False,
    )

    print(result.get("depth_ndjson"))
    assert result.get("depth_ndjson") == ["outputs/mice_depth/depth.ndjson"]  # Annolid's shape: lists of paths
    assert [r["frame_index"] for r in iter_records(result["depth_ndjson"][0])] == [0, 2, 4, 6]  # 24 fps -> every 2nd
    assert result["fps"] == 12 and result["frames"] == 4 and result["depth_kind"] == "relative_disparity"
    assert result["depth_frames"] == [f"outputs/mice_depth/depth_frames/depth_{i:05d}.png" for i in (0, 2, 4, 6)]
    assert result["depth_visualization"] == ["outputs/mice_depth/mice_vis.mp4"]
    assert result["output_dir"] == ["outputs/mice_depth"] and result["status"] == "complete"


@pytest.mark.parametrize("streaming", [True, False])
def test_every_output_agrees(video, weights_dir, tmp_path, streaming):
    out = tmp_path / "out"
    frames = 36 if not streaming else 12  # offline: past the first 32-frame window
    result = run_video_depth_anything(
        video, out, checkpoint_root=weights_dir, streaming=streaming, max_frames=frames, target_fps=-1,
        save_depth_video=True, save_depth_frames=True, save_point_clouds=True, save_npz=True, save_exr=True, **SMALL,
    )
    assert result["frames"] == frames and not result["cancelled"]
    assert result["mode"] == ("streaming" if streaming else "offline")
    assert result["model"] == "video_depth_anything_vits" and result["depth_unit"] is None
    assert set(result) >= {"output_dir", "depth_ndjson", "depth_visualization", "depth_frames", "point_cloud_csv", "npz", "exr"}

    result = {key: value[0] if key in ("depth_ndjson", "npz", "exr", "depth_visualization") else value
              for key, value in result.items()}
    records = list(iter_records(result["depth_ndjson"]))
    indices = [r["frame_index"] for r in records]
    assert indices == list(range(frames))
    assert {(r["imageHeight"], r["imageWidth"], r["video_name"]) for r in records} == {(90, 160, "mice.mp4")}
    archive = np.load(result["npz"])
    assert archive["depths"].shape == (frames, 90, 160)
    np.testing.assert_array_equal(archive["frame_indices"], indices)
    for line in (0, frames - 1):
        scale = records[line]["otherData"]["depth_map"]["scale"]
        step = (scale["max"] - scale["min"]) / 65535
        assert np.abs(read_seed_snippet(Path(result["depth_ndjson"]), line) - archive["depths"][line]).max() <= step

    with av.open(result["depth_visualization"]) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == frames
        assert (stream.width, stream.height, float(stream.average_rate)) == (160, 90, 24.0)
    assert result["depth_frames"] == [str(out / "depth_frames" / f"depth_{i:05d}.png") for i in indices]
    assert result["point_cloud_csv"] == [str(out / "point_clouds" / f"point_{i:04d}.csv") for i in indices]
    cloud = np.loadtxt(out / "point_clouds" / "point_0003.csv", delimiter=",", skiprows=1)
    depth = archive["depths"][3]
    np.testing.assert_allclose(np.sort(cloud[:, 2]), np.sort(1.0 / depth[depth > 1e-6 * depth.max()]), rtol=1e-4, atol=1e-5)
    import OpenEXR

    with OpenEXR.File(str(Path(result["exr"]) / "depth_00003.exr")) as image:
        np.testing.assert_array_equal(image.channels()["Z"].pixels, depth)


def test_rerun_replaces_results(video, weights_dir, tmp_path):
    for frames in (5, 3):
        result = run_video_depth_anything(video, tmp_path / "out", checkpoint_root=weights_dir, max_frames=frames, **SMALL)
    assert len(Path(result["depth_ndjson"][0]).read_text().splitlines()) == 3


def test_writing_in_a_pool_gives_the_same_files(video, weights_dir, tmp_path, monkeypatch):
    """Where cores are free the sinks prepare frames in a pool; the files are the same."""
    texts = []
    for workers in (0, 2):
        monkeypatch.setattr(runner, "spare_cores", lambda device, workers=workers: workers)
        result = run_video_depth_anything(
            video, tmp_path / str(workers), checkpoint_root=weights_dir, streaming=False, max_frames=40, **SMALL
        )
        texts.append(Path(result["depth_ndjson"][0]).read_text())
    assert texts[0] == texts[1] and texts[0].count("\n") == 40


def test_callbacks_and_cancel(video, weights_dir, tmp_path):
    frames = []
    result = run_video_depth_anything(
        video, tmp_path / "out", checkpoint_root=weights_dir, **SMALL,
        frame_callback=lambda payload: frames.append(payload),
        should_cancel=lambda: len(frames) >= 4,
    )
    assert result["cancelled"] and result["status"] == "cancelled"
    # streaming runs the frames it reads ahead together: the ones already computed are kept
    assert result["frames"] == len(frames) >= 4
    assert [(f["frame_index"], f["frames_done"], f["frames_total"]) for f in frames[:4]] == [(i, i + 1, 70) for i in range(4)]
    assert frames[0]["depth"].shape == (90, 160) and frames[0]["rgb"].shape == (90, 160, 3)
    assert result["depth_ndjson"][0].endswith("depth.ndjson.partial")
    assert [r["frame_index"] for r in iter_records(result["depth_ndjson"][0])] == list(range(len(frames)))


def test_default_output_folders(video, weights_dir, _isolated_home):
    result = run_video_depth_anything(video, checkpoint_root=weights_dir, max_frames=2, **SMALL)
    assert result["output_dir"] == [str(video.parent / "mice")]
    (_isolated_home / ".labelmerc").write_text(yaml.safe_dump({"video_depth_anything": {"output_dir": str(_isolated_home / "depth")}}))
    result = run_video_depth_anything(video, checkpoint_root=weights_dir, max_frames=2, **SMALL)
    assert result["output_dir"] == [str(_isolated_home / "depth" / "mice")]


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"encoder": "vitg"}, ValueError, "vits, vitb, vitl"),
        ({"input_size": 70.5}, ValueError, "input_size must be an integer"),
        ({"input_size": -14}, ValueError, "input_size"),
        ({"max_res": "1280"}, ValueError, "max_res"),
        ({"streaming": "false"}, ValueError, "streaming must be true or false"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"resume": "yes"}, ValueError, "resume must be true or false"),
        ({"point_cloud_stride": 0}, ValueError, r"point_cloud_stride must be an integer >= 1 \(1: every pixel\), got 0"),
        ({"point_cloud_stride": 2.0}, ValueError, "point_cloud_stride must be an integer"),
        ({"point_cloud_voxel": -1}, ValueError, "point_cloud_voxel must be a size >= 0"),
        ({"backend": "onnxruntime", "precision": "bf16"}, ValueError, "fp32"),
    ],
)
def test_bad_arguments_fail_before_any_work(video, weights_dir, tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        run_video_depth_anything(video, tmp_path / "out", checkpoint_root=weights_dir, **{**SMALL, **options})
    assert not (tmp_path / "out").exists()


def test_bad_files_get_clear_errors(tmp_path, video, weights_dir):
    with pytest.raises(VideoError, match="missing.mp4"):
        run_video_depth_anything(tmp_path / "missing.mp4", tmp_path / "out", checkpoint_root=weights_dir)
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(VideoError, match="notes.mp4"):
        run_video_depth_anything(text, tmp_path / "out", checkpoint_root=weights_dir)
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    with pytest.raises(OutputError, match="taken"):
        run_video_depth_anything(video, blocker, checkpoint_root=weights_dir, **SMALL)
    with pytest.raises(WeightsError, match=r"metric_video_depth_anything_vits\.pth(.|\n)*download_weights"):
        run_video_depth_anything(video, tmp_path / "out", metric=True, **SMALL)
    assert not (tmp_path / "out").exists()


def run_cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "annolid_depth", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300, **kwargs)


def test_cli_help_and_run(video, weights_dir, _isolated_home):
    help_text = run_cli("--help").stdout
    for flag in ("--encoder", "--streaming", "--no-streaming", "--target-fps", "--max-res", "--save-depth-video",
                 "--save-point-clouds", "--point-cloud-format", "--save-exr", "--output-dir", "--precision"):
        assert flag in help_text
    (_isolated_home / ".labelmerc").write_text(yaml.safe_dump({"video_depth_anything": {"max_frames": 3, **SMALL}}))
    done = run_cli(str(video), "--checkpoint-root", str(weights_dir), "--quiet")
    assert done.returncode == 0, done.stderr
    assert len((video.parent / "mice" / "depth.ndjson").read_text().splitlines()) == 3  # max_frames from ~/.labelmerc


def test_cli_failures_exit_1_without_traceback(tmp_path, media_clip, _isolated_home):
    done = run_cli(str(tmp_path / "nope.mp4"))
    assert done.returncode == 1
    assert "nope.mp4" in done.stderr and "Traceback" not in done.stderr
    (_isolated_home / ".labelmerc").write_text(yaml.safe_dump({"video_depth_anything": {"encoder": "vitb"}}))
    done = run_cli(str(cut_clip(media_clip, tmp_path / "v.mp4", 2)))
    assert done.returncode == 1 and "video_depth_anything_vitb" in done.stderr and "Traceback" not in done.stderr


def test_cli_interrupt_exits_130_and_keeps_records(video, weights_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "annolid_depth", str(video), "--output-dir", str(out), "--quiet",
                             "--checkpoint-root", str(weights_dir), "--input-size", "56", "--max-res", "160"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out / "depth.ndjson.partial"
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0, proc, "a record")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    records = list(iter_records(out / "depth.ndjson.partial"))
    assert 1 <= len(records) < 70
