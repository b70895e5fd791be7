"""Checkpoint integrity: a download checked against the Hub's SHA-256 and recorded; damage found at load."""
import hashlib
import io
import os
import re

import pytest
import torch
from fake_hub import PAYLOAD, VITS, leftovers

from annolid_depth.errors import WeightsError
from annolid_depth.weights import checkpoint_sha256, download_checkpoint, read_state_dict


def tensors_file() -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(50_000, dtype=torch.float32)}, buffer)
    return buffer.getvalue()


def test_a_download_is_checked_and_its_sha256_recorded(hub, tmp_path):
    hub.serve(VITS, PAYLOAD)
    path = download_checkpoint(VITS.key, tmp_path)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert (tmp_path / f"{VITS.filename}.sha256").read_text() == f"{digest}  {VITS.filename}\n"  # sha256sum's format
    assert checkpoint_sha256(path) == digest


def test_a_download_that_differs_from_the_hubs_sha256_is_refused(hub, tmp_path):
    hub.serve(VITS, PAYLOAD)
    hub.etags[f"{VITS.repo_id}/{VITS.filename}"] = hashlib.sha256(b"what the Hub published").hexdigest()
    with pytest.raises(WeightsError, match="the downloaded file's SHA-256 is [0-9a-f]{64}, the Hub's is [0-9a-f]{64}: try again"):
        download_checkpoint(VITS.key, tmp_path)
    assert leftovers(tmp_path) == []


def test_damage_after_download_fails_at_load_with_re_download_advice(hub, tmp_path):
    content = tensors_file()
    hub.serve(VITS, content)
    path = download_checkpoint(VITS.key, tmp_path)
    assert torch.equal(read_state_dict(path)["weight"], torch.arange(50_000, dtype=torch.float32))
    damaged = bytearray(content)
    damaged[len(content) // 2] ^= 0x40  # one bit inside the tensor data: torch.load alone would not notice
    path.write_bytes(bytes(damaged))
    with pytest.raises(WeightsError, match=r"is damaged: its SHA-256 is .* Delete both files and re-download it: run\n"
                                           r"  python -m annolid_depth.download_weights --model video_depth_anything_vits"):
        read_state_dict(path)


def test_the_hash_is_kept_per_path_size_and_time(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"a" * 1000)
    first = checkpoint_sha256(path)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    stat = path.stat()
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert checkpoint_sha256(path) == first  # same size and time: not hashed again
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert checkpoint_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest()


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"   \n\t\n", "is empty"),
    (b"\xff\xfe not text", "is not UTF-8 text"),
    (b"deadbeef  weights.pth\n", r"does not start with a SHA-256 \(64 hex digits\)"),
])
def test_a_damaged_checksum_file_is_named_with_what_to_do(tmp_path, content, says):
    path = tmp_path / "weights.pth"
    torch.save({"weight": torch.ones(3)}, path)
    (tmp_path / "weights.pth.sha256").write_bytes(content)
    record = re.escape(str(tmp_path / "weights.pth.sha256"))
    with pytest.raises(WeightsError, match=f"checksum file {record} {says}; delete {record} and download the checkpoint again, "
                                           r"or write its hash there with `sha256sum weights.pth > weights.pth.sha256`"):
        read_state_dict(path)


def test_an_upper_case_hash_is_accepted(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"weight": torch.ones(3)}, path)
    (tmp_path / "weights.pth.sha256").write_text(f"{checkpoint_sha256(path).upper()}  weights.pth\n")
    assert torch.equal(read_state_dict(path)["weight"], torch.ones(3))


def test_a_checkpoint_placed_by_hand_gets_its_hash_on_first_load_and_is_checked_after(weights_dir, tmp_path, caplog):
    from annolid_depth.model import VideoDepthAnything
    from annolid_depth.weights import load_weights

    path = tmp_path / "video_depth_anything_vits.pth"
    path.write_bytes((weights_dir / path.name).read_bytes())  # as copied in by hand: no .sha256 beside it
    load_weights(VideoDepthAnything("vits"), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (tmp_path / "video_depth_anything_vits.pth.sha256").read_text() == f"{digest}  video_depth_anything_vits.pth\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video_depth_anything_vits.pth", "video_depth_anything_vits.pth.sha256"]

    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    path.write_bytes(bytes(damaged))
    with pytest.raises(WeightsError, match=r"is damaged: its SHA-256 is [0-9a-f]{64}, but was " + digest + " when it was downloaded or first loaded"):
        read_state_dict(path)


def test_a_hand_placed_checkpoint_in_a_read_only_folder_still_loads(weights_dir, tmp_path, caplog):
    from annolid_depth.model import VideoDepthAnything
    from annolid_depth.weights import load_weights

    folder = tmp_path / "weights"
    folder.mkdir()
    path = folder / "video_depth_anything_vits.pth"
    path.write_bytes((weights_dir / path.name).read_bytes())
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes in read-only folders (root)")
        load_weights(VideoDepthAnything("vits"), path)
    finally:
        folder.chmod(0o755)
    assert not (folder / "video_depth_anything_vits.pth.sha256").exists()
    assert f"cannot record the SHA-256 of video_depth_anything_vits.pth in {folder / path.name}.sha256" in caplog.text
