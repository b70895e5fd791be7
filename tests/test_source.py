"""VideoSource and FrameReader on videos made here with PyAV, and on the real test clip.

Frame i of a generated video is gray level STEP * i, with a white top-left quadrant that
shows which way up the picture is, so every test can tell which frame came out and how.
"""
import itertools
import logging
import random
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from annolid_depth.errors import VideoError
from annolid_depth.io.source import FrameReader, VideoSource

STEP = 8
WIDTH, HEIGHT = 64, 48


def picture(i: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    rgb = np.full((height, width, 3), (i * STEP) % 256, np.uint8)
    rgb[: height // 2, : width // 2] = 255
    return rgb


def level(rgb: np.ndarray) -> int:
    """Which frame this is: three quarters of the picture hold its gray level."""
    return round(float(np.median(rgb)) / STEP)


def write_video(
    path: Path,
    frames: int = 30,
    codec: str = "ffv1",
    pix_fmt: str = "yuv420p",
    fps: int = 24,
    rotation: int | None = None,
    pts_ms: list[int] | None = None,
    options: dict | None = None,
    container_format: str | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Path:
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def decode_all(source) -> list[tuple[int, np.ndarray]]:
    return [(index, rgb) for index, rgb in source]


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mkv")


def test_every_frame_in_order_with_its_original_index(clip):
    with VideoSource(clip) as source:
        frames = decode_all(source)
        assert (source.fps, source.stride, source.output_fps) == (24.0, 1, 24.0)
        assert (source.width, source.height, source.source_width, source.source_height) == (64, 48, 64, 48)
        assert (source.frame_count, source.rotation, source.skipped_frames) == (30, 0, 0)
    assert [index for index, _ in frames] == list(range(30))
    assert [level(rgb) for _, rgb in frames] == list(range(30))
    for _, rgb in frames:
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert np.array_equal(frames[3][1], picture(3))


def test_iterating_again_decodes_from_the_start(clip):
    source = VideoSource(clip, max_frames=3)
    assert [index for index, _ in source] == [0, 1, 2]
    assert [index for index, _ in source] == [0, 1, 2]


def test_target_fps_keeps_every_kth_frame(clip):
    source = VideoSource(clip, target_fps=12)
    frames = decode_all(source)
    assert (source.stride, source.output_fps, source.frame_count) == (2, 12.0, 15)
    assert [index for index, _ in frames] == list(range(0, 30, 2))
    assert [level(rgb) for _, rgb in frames] == list(range(0, 30, 2))
    assert VideoSource(clip, target_fps=7).stride == 3  # round(24 / 7)
    assert VideoSource(clip, target_fps=60).stride == 1


def test_max_frames_counts_processed_frames(clip):
    source = VideoSource(clip, target_fps=12, max_frames=5)
    assert source.frame_count == 5
    assert [index for index, _ in source] == [0, 2, 4, 6, 8]


def test_max_res_bounds_the_longer_side(clip):
    source = VideoSource(clip, max_res=32)
    assert (source.width, source.height) == (32, 24)
    index, rgb = next(iter(source))
    assert rgb.shape == (24, 32, 3) and rgb.flags.c_contiguous
    expected = cv2.resize(picture(0), (32, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(rgb.astype(int) - expected).max() <= 2
    source.close()
    assert (VideoSource(clip, max_res=100).width, VideoSource(clip, max_res=100).height) == (64, 48)


@pytest.mark.parametrize(
    "rotation, size, white_corner",
    [(90, (48, 64), "bottom_left"), (180, (64, 48), "bottom_right"), (-90, (48, 64), "top_right")],
)
def test_rotation_metadata_turns_frames_upright(tmp_path, rotation, size, white_corner):
    path = write_video(tmp_path / "turned.mp4", frames=4, codec="libx264", rotation=rotation)
    source = VideoSource(path, max_res=32)
    assert source.rotation == rotation % 360
    assert (source.source_width, source.source_height) == size
    assert (source.width, source.height) == (size[0] // 2, size[1] // 2)
    frames = decode_all(source)
    rgb = frames[2][1]
    assert rgb.shape == (size[1] // 2, size[0] // 2, 3)
    corners = {
        "top_left": rgb[:4, :4],
        "top_right": rgb[:4, -4:],
        "bottom_left": rgb[-4:, :4],
        "bottom_right": rgb[-4:, -4:],
    }
    assert {name for name, patch in corners.items() if patch.mean() > 240} == {white_corner}
    assert [level(rgb) for _, rgb in frames] == [0, 1, 2, 3]
    reader = FrameReader(path, max_res=32)
    assert (reader.width, reader.height) == (source.width, source.height)
    assert np.array_equal(reader.read(2), rgb)


@pytest.mark.parametrize(
    "codec, pix_fmt, suffix",
    [("ffv1", "gray", ".mkv"), ("ffv1", "yuv420p10le", ".mkv"), ("libx265", "yuv420p10le", ".mp4")],
)
def test_gray_and_10_bit_sources_become_8_bit_rgb(tmp_path, codec, pix_fmt, suffix):
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = write_video(tmp_path / f"{pix_fmt}{suffix}", frames=12, codec=codec, pix_fmt=pix_fmt)
    with av.open(str(path)) as container:
        assert container.streams.video[0].format.name == pix_fmt
    frames = decode_all(VideoSource(path))
    assert [index for index, _ in frames] == list(range(12))
    assert [level(rgb) for _, rgb in frames] == list(range(12))
    assert all(rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3) for _, rgb in frames)


def test_variable_frame_rate_is_indexed_by_decode_order(tmp_path):
    pts_ms = [0, 40, 50, 120, 130, 200, 260, 270, 280, 400]
    path = write_video(tmp_path / "vfr.mp4", frames=10, codec="libx264", pts_ms=pts_ms)
    frames = decode_all(VideoSource(path))
    assert [index for index, _ in frames] == list(range(10))
    assert [level(rgb) for _, rgb in frames] == list(range(10))


def test_missing_frame_count_and_timestamps(tmp_path):
    """A raw H.264 stream states neither a frame count nor a duration nor timestamps."""
    path = write_video(tmp_path / "raw.h264", frames=20, codec="libx264", container_format="h264")
    source = VideoSource(path)
    assert source.frame_count is None
    frames = decode_all(source)
    assert [index for index, _ in frames] == list(range(20))
    assert [level(rgb) for _, rgb in frames] == list(range(20))
    reader = FrameReader(path)
    assert reader.frame_count is None
    for index in (7, 3, 19, 0, 8):
        assert np.array_equal(reader.read(index), frames[index][1])
    with pytest.raises(IndexError):
        reader.read(20)


def damage_packets(path: Path, packets: list[int]) -> None:
    """Overwrite the middle of the given packets' data with garbage, in place."""
    with av.open(str(path)) as container:
        spans = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    data = bytearray(path.read_bytes())
    for number in packets:
        position, size = spans[number]
        data[position + size // 4 : position + size // 2] = b"\x5a" * (size // 2 - size // 4)
    path.write_bytes(bytes(data))


def test_a_frame_that_fails_to_decode_is_skipped_with_a_warning(tmp_path, caplog):
    path = write_video(tmp_path / "damaged.mov", frames=12, codec="png", pix_fmt="rgb24")
    damage_packets(path, [5])
    source = VideoSource(path)
    with caplog.at_level(logging.WARNING, logger="annolid_depth.io.source"):
        frames = decode_all(source)
    assert [index for index, _ in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert [level(rgb) for _, rgb in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert source.skipped_frames == 1
    assert [record.getMessage() for record in caplog.records] == [f"{path}: frame 5 could not be decoded; skipped"]
    # a damaged frame the sampling drops anyway does not count
    assert [index for index, _ in VideoSource(path, target_fps=12)] == [0, 2, 4, 6, 8, 10]


def test_no_decodable_frame_is_an_error(tmp_path):
    path = write_video(tmp_path / "ruined.mov", frames=3, codec="png", pix_fmt="rgb24")
    damage_packets(path, [0, 1, 2])
    with pytest.raises(VideoError, match=f"no frame of {path} could be decoded"):
        VideoSource(path)


def test_files_that_are_not_videos(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    image = tmp_path / "picture.mp4"
    image.write_bytes(cv2.imencode(".png", picture(0))[1].tobytes())
    audio = tmp_path / "sound.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        samples.sample_rate = 8000
        container.mux(stream.encode(samples))
        container.mux(stream.encode())
    cases = {
        tmp_path / "absent.mp4": "video not found: {}; check the path",
        tmp_path: "{} is a folder, not a video file",
        text: "cannot read {} as a video",
        image: "{} is a still image (png), not a video",
        audio: "{} has no video stream (audio only)",
    }
    for path, message in cases.items():
        with pytest.raises(VideoError) as caught:
            VideoSource(path)
        assert str(caught.value).startswith(message.format(path))
        with pytest.raises(VideoError):
            FrameReader(path)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"target_fps": float("nan")}, "target_fps must be a number > 0, or -1 (every frame), got nan"),
        ({"target_fps": "15"}, "target_fps must be a number > 0, or -1 (every frame), got '15'"),
        ({"max_frames": 2.5}, "max_frames must be an integer > 0, or -1 (all frames), got 2.5"),
        ({"max_res": True}, "max_res must be an integer > 0, or -1 (no limit), got True"),
    ],
)
def test_out_of_range_arguments(clip, arguments, message):
    with pytest.raises(ValueError) as caught:
        VideoSource(clip, **arguments)
    assert str(caught.value) == message


def test_close_stops_a_pass_and_releases_the_file(clip):
    with VideoSource(clip) as source:
        frames = iter(source)
        assert next(frames)[0] == 0
    assert list(frames) == []


def test_memory_does_not_grow_with_video_length(tmp_path):
    path = write_video(tmp_path / "long.mkv", frames=240, width=128, height=96)
    frame_bytes = 64 * 48 * 3
    tracemalloc.start()
    try:
        count = sum(1 for _ in VideoSource(path, max_res=64))  # resized frames are numpy's own memory
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 240
    assert peak < 20 * frame_bytes


def test_reader_matches_the_source_in_any_order(tmp_path):
    """Keyframes every 10 frames and B-frames: reads must seek, land early, decode forward."""
    path = write_video(tmp_path / "gop.mp4", frames=150, codec="libx264", options={"g": "10", "bf": "3"})
    expected = dict(decode_all(VideoSource(path, max_res=32)))
    order = list(range(150))
    random.Random(0).shuffle(order)
    with FrameReader(path, max_res=32) as reader:
        assert (reader.frame_count, reader.fps, reader.width, reader.height) == (150, 24.0, 32, 24)
        for index in order + [149, 3, 4, 5, 5, 100, 101]:
            assert np.array_equal(reader.read(index), expected[index]), index
        with pytest.raises(IndexError, match="has no frame 150"):
            reader.read(150)
        with pytest.raises(IndexError):
            reader.read(-1)
        reader.close()
        assert np.array_equal(reader.read(60), expected[60])


def test_real_clip(media_clip):
    source = VideoSource(media_clip, target_fps=12, max_res=480)
    assert (source.fps, source.stride, source.output_fps) == (24.0, 2, 12.0)
    assert (source.source_width, source.source_height, source.width, source.height) == (960, 540, 480, 270)
    assert source.frame_count == 35
    frames = decode_all(source)
    assert [index for index, _ in frames] == list(range(0, 70, 2))
    assert all(rgb.shape == (270, 480, 3) and rgb.dtype == np.uint8 for _, rgb in frames)
    full = VideoSource(media_clip)
    assert (full.width, full.height, full.frame_count) == (960, 540, 70)
    first = [rgb for _, rgb in itertools.islice(full, 5)]
    assert len(first) == 5 and first[0].shape == (540, 960, 3)
    full.close()
    limited = VideoSource(media_clip, max_frames=4)
    assert limited.frame_count == 4 and [index for index, _ in limited] == [0, 1, 2, 3]
    reader = FrameReader(media_clip, max_res=480)
    assert (reader.frame_count, reader.width, reader.height) == (70, 480, 270)
    for index in (68, 10, 12):
        assert np.array_equal(reader.read(index), frames[index // 2][1])


def test_the_sampling_note_says_every_nth_frame_once_frames_are_read(media_clip, caplog):
    source = VideoSource(media_clip, target_fps=10)  # 24 fps: every 2nd frame gives 12 fps, not the 10 asked for
    assert source.stride == 2 and not caplog.text  # nothing yet: a run that a resume skips never reads frames
    next(iter(source.frames()))
    assert "davis_rollercoaster.mp4: 10 fps asked for; every 2nd frame of the 24 fps video gives 12 fps" in caplog.text


def test_ordinals():
    from annolid_depth.io.source import ordinal

    assert [ordinal(n) for n in (1, 2, 3, 4, 5, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "5th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
