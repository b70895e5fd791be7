"""Annolid's own client code against this package: its DepthManager's call, its worker's
stop_event, its callbacks and its result shape (annolid/gui/widgets/depth_manager.py and
annolid/gui/workers.py FlexibleWorker in the Annolid repository)."""
import inspect
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import ANNOLID_ORDER
from parity_recipe import write_checkpoint

from annolid_depth import run_video_depth_anything as depth_run
from annolid_depth.io.records import decode_depth, iter_records
from annolid_depth.runner import display_range


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("annolid_checkpoints")
    write_checkpoint(folder / "video_depth_anything_vits.pth")
    return folder


class FlexibleWorkerLike:
    """What Annolid's FlexibleWorker does with its task: keyword arguments the caller may
    replace after construction, a `stop_event` passed only where the function declares one,
    and an exception handed back as the result."""

    def __init__(self, task, *args, **kwargs):
        self._task, self._args, self._kwargs = task, args, kwargs
        self.stop_event = threading.Event()

    def run(self):
        kwargs = dict(self._kwargs)
        if "stop_event" in inspect.signature(self._task).parameters and "stop_event" not in kwargs:
            kwargs["stop_event"] = self.stop_event
        try:
            return self._task(*self._args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the worker emits it as its finished result
            return exc


def test_the_signature_is_annolids_and_additions_are_keyword_only():
    parameters = inspect.signature(depth_run).parameters
    positional = [name for name, p in parameters.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == ANNOLID_ORDER
    assert {"max_frames", "precision", "device", "point_cloud_format", "should_cancel", "stop_event", "resume",
            "frame_callback"} <= {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_depth_manager_call_with_its_lambdas(video, checkpoints, tmp_path):
    """DepthManager.run_video_depth_anything, argument for argument (config values from a
    ~/.labelmerc section), with its progress and preview lambdas set after construction."""
    output_dir = video.parent / video.stem
    depth_cfg = {"input_size": 56, "max_res": 160, "max_len": 12}
    percents, payloads = [], []
    worker = FlexibleWorkerLike(
        depth_run,
        str(video),
        str(output_dir),
        encoder=depth_cfg.get("encoder", "vits"),
        input_size=depth_cfg.get("input_size", 518),
        max_res=depth_cfg.get("max_res", 1280),
        max_len=depth_cfg.get("max_len", -1),
        target_fps=depth_cfg.get("target_fps", -1),
        metric=depth_cfg.get("metric", False),
        fp32=depth_cfg.get("fp32", False),
        grayscale=depth_cfg.get("grayscale", False),
        save_npz=depth_cfg.get("save_npz", False),
        save_exr=depth_cfg.get("save_exr", False),
        streaming=depth_cfg.get("streaming", True),
        save_point_clouds=depth_cfg.get("save_point_clouds", False),
        include_region_labels=depth_cfg.get("include_region_labels", False),
        progress_callback=None,
        preview_callback=None,
        save_depth_video=depth_cfg.get("save_depth_video", False),
        save_depth_frames=depth_cfg.get("save_depth_frames", False),
        checkpoint_root=str(checkpoints),
    )
    worker._kwargs["progress_callback"] = lambda percent: percents.append(percent)
    worker._kwargs["preview_callback"] = lambda payload: payloads.append(payload)
    result = worker.run()
    assert not isinstance(result, Exception), result

    assert result["output_dir"] == [str(output_dir)]
    assert result["depth_ndjson"] == [str(output_dir / "depth.ndjson")]
    assert Path(result["depth_ndjson"][0]).is_file()
    assert all(type(p) is int and 0 <= p <= 100 for p in percents)
    assert percents == sorted(percents) and percents[-1] == 100 and percents.count(100) == 1

    records = list(iter_records(result["depth_ndjson"][0]))
    assert [p["frame_index"] for p in payloads] == [r["frame_index"] for r in records] == list(range(12))
    for payload, record in zip(payloads, records):
        overlay, stats = payload["overlay"], payload["depth_stats"]
        assert overlay.dtype == np.uint8 and overlay.shape == (90, 160, 3) and overlay.flags.c_contiguous
        depth = decode_depth(record)
        step = float(depth.max() - depth.min()) / 65535
        low, high = np.percentile(payload["depth"], (1, 99))
        assert (stats["display_min"], stats["display_max"]) == pytest.approx((low, high))
        assert stats["min"] == pytest.approx(depth.min(), abs=step) and stats["max"] == pytest.approx(depth.max(), abs=step)
        assert stats["mean"] == pytest.approx(float(payload["depth"].mean()))
    # the overlay spans the display range: the darkest and brightest colours of the map appear
    assert payloads[0]["overlay"].min() < 20 and payloads[0]["overlay"].max() > 230


def test_positional_script_means_the_same(video, checkpoints, tmp_path):
    """An Annolid script passing everything positionally, in Annolid's order."""
    out = tmp_path / "positional"
    result = depth_run(str(video), str(out), "vits", 56, 160, 5, -1, False, True, True, True, False, 470.4, 470.4,
                       str(checkpoints), None, None, False, False, True, False, False)
    assert result["mode"] == "offline" and result["frames"] == 5  # streaming=False, max_len=5
    assert result["npz"] == [str(out / "mice_depths.npz")]  # save_npz
    assert len(result["depth_frames"]) == 5 and "depth_visualization" not in result  # save_depth_frames only


def test_the_workers_stop_ends_the_run_as_a_cancel(video, checkpoints, tmp_path):
    percents = []
    worker = FlexibleWorkerLike(depth_run, str(video), str(tmp_path / "out"), input_size=56, max_res=160,
                                checkpoint_root=str(checkpoints))
    worker._kwargs["progress_callback"] = lambda percent: (percents.append(percent), worker.stop_event.set())
    result = worker.run()
    assert result["status"] == "cancelled" and 1 <= result["frames"] < 70
    assert 100 not in percents
    assert len(list(iter_records(result["depth_ndjson"][0]))) == result["frames"]


def test_a_callback_that_raises_ends_the_run_and_keeps_the_records(video, checkpoints, tmp_path):
    def preview(payload):
        if payload["frame_index"] == 5:
            raise RuntimeError("the display went away")

    worker = FlexibleWorkerLike(depth_run, str(video), str(tmp_path / "out"), input_size=56, max_res=160,
                                checkpoint_root=str(checkpoints), preview_callback=preview)
    result = worker.run()
    assert isinstance(result, RuntimeError) and str(result) == "the display went away"
    kept = [r["frame_index"] for r in iter_records(tmp_path / "out" / "depth.ndjson.partial")]
    assert kept == list(range(6))
    resumed = depth_run(str(video), str(tmp_path / "out"), input_size=56, max_res=160, max_len=10,
                        checkpoint_root=str(checkpoints), resume=True)
    assert "max_frames" in " ".join(resumed["warnings"])  # other settings: started over, and said why


def test_the_preview_range_is_numpys_1st_and_99th_percentile_to_the_bit():
    rng = np.random.default_rng(7)
    maps = [rng.random(n, dtype=np.float32) for n in (1, 2, 3, 1000, 131_071, 131_072, 921_600)]
    maps += [rng.integers(0, 30, 500_000).astype(np.float32),  # ties across the tails' bounds
             np.full(400_000, 2.5, np.float32), (rng.standard_normal(700_000) ** 3).astype(np.float32)]
    fooled = np.ones(1_000_000, np.float32)
    fooled[:: len(fooled) // 8192] = 0  # the sample sees zeros only: too few for the lower tail
    for values in [*maps, fooled]:
        assert display_range(values) == tuple(float(v) for v in np.percentile(values, (1, 99)))
