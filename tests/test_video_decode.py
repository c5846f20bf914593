"""decode_sampled_frames / probe_video on synthetic PyAV-written videos whose pixels carry the frame index."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.errors import (
    CorruptVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from models.video import SampledVideo, decode_sampled_frames, probe_video, sample_indices
from tests.video_factory import index_frame, read_index, write_audio_only, write_video


def frame_ids(video: SampledVideo) -> list[int]:
    return [read_index(frame) for frame in video.frames]


def assert_frame_exact(video: SampledVideo) -> None:
    expected, fps = sample_indices(video.num_frames, video.num_frames / video.duration_s)
    assert video.indices.dtype == np.int64
    assert video.indices.tolist() == expected.tolist()
    assert video.fps == pytest.approx(fps)
    assert video.frames.dtype == np.uint8 and video.frames.ndim == 4 and video.frames.shape[-1] == 3
    assert len(video.frames) == len(video.indices)
    assert frame_ids(video) == video.indices.tolist()


def test_bframe_h264_returns_frames_in_presentation_order(tmp_path: Path) -> None:
    path = write_video(tmp_path / "bframes.mp4", 90)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    pts_in_decode_order = [p.pts for p in packets]
    assert pts_in_decode_order != sorted(pts_in_decode_order), "fixture must contain B-frames"

    video = decode_sampled_frames(path)
    assert video.num_frames == 90
    assert video.duration_s == pytest.approx(3.0)
    assert video.fps == pytest.approx(2.0)
    assert (video.width, video.height) == (64, 48)
    assert_frame_exact(video)


def test_long_video_decodes_exactly_the_sample_indices(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", 600, fps=30)
    video = decode_sampled_frames(path)
    expected, real_fps = sample_indices(600, 30.0)
    assert video.indices.tolist() == expected.tolist()
    assert video.fps == real_fps
    assert frame_ids(video) == expected.tolist()


def test_sparse_sampling_seeks_to_keyframes_and_stays_frame_exact(tmp_path: Path) -> None:
    # 600 frames at 240 fps = 2.5 s -> 5 samples 150 frames apart; keyframes every 12 frames.
    path = write_video(tmp_path / "sparse.mp4", 600, fps=240)
    video = decode_sampled_frames(path)
    assert video.indices.tolist() == [0, 150, 300, 449, 599]
    assert frame_ids(video) == [0, 150, 300, 449, 599]
    assert video.seeks > 0
    assert video.decoded_frames < 100  # sequential decoding would decode all 600


def test_sparse_sampling_without_header_frame_count_counts_packets(tmp_path: Path) -> None:
    path = write_video(tmp_path / "sparse.mkv", 480, fps=240, container_format="matroska")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0, "matroska has no frame count in the header"
    info = probe_video(path)
    assert info.num_frames == 480
    video = decode_sampled_frames(path)
    assert video.num_frames == 480
    assert_frame_exact(video)
    assert video.seeks > 0


def test_missing_frame_count_is_counted_by_demuxing(tmp_path: Path) -> None:
    path = write_video(tmp_path / "count.mkv", 45, container_format="matroska")
    info = probe_video(path)
    assert info.num_frames == 45
    assert info.avg_fps == pytest.approx(30.0)
    video = decode_sampled_frames(path)
    assert video.num_frames == 45
    assert_frame_exact(video)


def test_variable_frame_rate_indexes_by_presentation_order(tmp_path: Path) -> None:
    gaps = [1, 3, 1, 2, 5, 1, 1, 4]
    pts = np.concatenate([[0], np.cumsum([gaps[i % len(gaps)] for i in range(59)])]).tolist()
    path = write_video(tmp_path / "vfr.mp4", 60, fps=30, pts=pts)
    info = probe_video(path)
    assert info.num_frames == 60
    # Average rate = frames / duration, not the nominal 30 fps.
    assert info.avg_fps is not None and info.avg_fps < 15
    video = decode_sampled_frames(path)
    expected, real_fps = sample_indices(60, info.avg_fps)
    assert video.indices.tolist() == expected.tolist()
    assert video.fps == real_fps
    assert frame_ids(video) == expected.tolist()


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_returns_frames_as_displayed(tmp_path: Path, rotation: int) -> None:
    path = write_video(tmp_path / f"rot{rotation}.mp4", 12, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    displayed = (48, 64) if rotation in (90, -90) else (64, 48)
    assert (info.width, info.height) == displayed
    video = decode_sampled_frames(path)
    assert (video.width, video.height) == displayed
    assert video.frames.shape[1:3] == (displayed[1], displayed[0])
    for index, frame in zip(video.indices.tolist(), video.frames, strict=True):
        expected = np.rot90(index_frame(index), k=rotation // 90)
        assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 12
        assert read_index(np.rot90(frame, k=-(rotation // 90))) == index


def test_one_frame_video_returns_that_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "one.mp4", 1)
    video = decode_sampled_frames(path)
    assert video.num_frames == 1
    assert video.indices.tolist() == [0]
    assert video.fps == pytest.approx(30.0)
    assert frame_ids(video) == [0]


def test_three_frame_video_repeats_frames_to_four_samples(tmp_path: Path) -> None:
    path = write_video(tmp_path / "three.mp4", 3)
    video = decode_sampled_frames(path)
    assert video.indices.tolist() == [0, 1, 1, 2]
    assert video.fps == pytest.approx(40.0)
    assert frame_ids(video) == [0, 1, 1, 2]


def test_large_frames_are_resized_to_max_edge_as_decoded(tmp_path: Path) -> None:
    path = write_video(tmp_path / "big.mp4", 3, width=640, height=360)
    video = decode_sampled_frames(path)
    assert video.frames.shape == (4, 288, 512, 3)
    assert (video.width, video.height) == (640, 360)  # source size, not the resized one
    assert frame_ids(video) == [0, 1, 1, 2]
    small = decode_sampled_frames(path, max_edge=256)
    assert small.frames.shape == (4, 144, 256, 3)


def test_progress_reports_increasing_fractions_ending_at_one(tmp_path: Path) -> None:
    path = write_video(tmp_path / "progress.mp4", 60)
    seen: list[float] = []
    decode_sampled_frames(path, progress=seen.append)
    assert seen and seen[-1] == 1.0
    assert seen == sorted(seen)
    assert all(0.0 < p <= 1.0 for p in seen)


def assert_user_message(error: VideoError) -> None:
    message = str(error)
    assert message and "\n" not in message
    assert "Traceback" not in message and "av.error" not in message


def test_audio_only_file_raises_no_video_stream(tmp_path: Path) -> None:
    path = write_audio_only(tmp_path / "audio.mp4")
    with pytest.raises(NoVideoStreamError) as info:
        decode_sampled_frames(path)
    assert info.value.code == "no_video_stream"
    assert "audio" in str(info.value)
    assert_user_message(info.value)
    with pytest.raises(NoVideoStreamError):
        probe_video(path)


def test_text_file_named_mp4_raises_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(NotAVideoError) as info:
        decode_sampled_frames(path)
    assert info.value.code == "not_a_video"
    assert_user_message(info.value)


def test_empty_file_raises_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(NotAVideoError):
        decode_sampled_frames(path)


def test_truncated_mp4_raises_corrupt_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "full.mp4", 60)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the moov index at the end is lost
    with pytest.raises(CorruptVideoError) as info:
        decode_sampled_frames(cut)
    assert info.value.code == "corrupt_video"
    assert_user_message(info.value)


def test_truncated_faststart_mp4_raises_corrupt_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "full.mp4", 120, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    assert b"moov" in data[:200], "faststart puts the index first"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # header intact, half the frames missing
    with pytest.raises(CorruptVideoError) as info:
        decode_sampled_frames(cut)
    assert "truncated" in str(info.value)
    assert_user_message(info.value)


def test_file_over_max_bytes_raises_too_large_before_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 30)
    size = path.stat().st_size
    with pytest.raises(VideoTooLargeError) as info:
        decode_sampled_frames(path, max_bytes=size - 1)
    assert info.value.code == "video_too_large"
    assert str(size) in str(info.value)
    assert decode_sampled_frames(path, max_bytes=size).num_frames == 30


def test_video_over_max_duration_raises_too_long(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 60)  # 2 s
    with pytest.raises(VideoTooLongError) as info:
        decode_sampled_frames(path, max_duration_s=1.5)
    assert info.value.code == "video_too_long"
    assert_user_message(info.value)
    assert decode_sampled_frames(path, max_duration_s=2.0).duration_s == pytest.approx(2.0)


def test_probe_reports_codec_size_rate_and_count(tmp_path: Path) -> None:
    path = write_video(tmp_path / "p.mp4", 45, fps=15, width=96, height=64)
    info = probe_video(path)
    assert info.codec == "h264"
    assert (info.num_frames, info.width, info.height, info.rotation) == (45, 96, 64, 0)
    assert info.avg_fps == pytest.approx(15.0)
    assert info.duration_s == pytest.approx(3.0)


def test_unreliable_pts_fall_back_to_sequential_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.video as video_module

    real_scan = video_module._scan_packets

    def shifted_scan(container, stream):  # pts that match no decoded frame
        table = real_scan(container, stream)
        table.pts_sorted = table.pts_sorted + 1
        return table

    monkeypatch.setattr(video_module, "_scan_packets", shifted_scan)
    path = write_video(tmp_path / "sparse.mp4", 600, fps=240)
    video = decode_sampled_frames(path)
    assert frame_ids(video) == [0, 150, 300, 449, 599]
    assert video.seeks == 0
    assert video.decoded_frames == 600


def test_sparse_mpegts_imprecise_seeks_step_back_and_stay_frame_exact(tmp_path: Path) -> None:
    # mpeg-ts seeks land near (often after) the requested keyframe; the decoder must step back.
    path = write_video(tmp_path / "sparse.ts", 600, fps=240, container_format="mpegts")
    video = decode_sampled_frames(path)
    assert video.indices.tolist() == [0, 150, 300, 449, 599]
    assert frame_ids(video) == [0, 150, 300, 449, 599]
    assert video.decoded_frames < 100


def test_avi_decode_order_stamps_are_not_trusted_for_seeking(tmp_path: Path) -> None:
    # AVI stamps packets in decode order; with B-frames those are not presentation timestamps.
    path = write_video(tmp_path / "sparse.avi", 600, fps=240, container_format="avi")
    video = decode_sampled_frames(path)
    assert frame_ids(video) == [0, 150, 300, 449, 599]
    assert video.seeks == 0


def test_fast_mode_takes_the_nearest_keyframes_and_decodes_only_those(tmp_path: Path) -> None:
    # keyframes every 12 frames; the exact samples are [0, 150, 300, 449, 599]
    path = write_video(tmp_path / "sparse.mp4", 600, fps=240, options={"sc_threshold": "0"})
    with av.open(str(path)) as container:
        keys = [i for i, p in enumerate(container.demux(video=0)) if p.size and p.is_keyframe]
    assert keys == list(range(0, 600, 12))  # no B-frame reordering at GOP starts: decode index = display index
    exact = decode_sampled_frames(path)
    fast = decode_sampled_frames(path, mode="fast")
    assert fast.indices.tolist() == exact.indices.tolist() and fast.fps == exact.fps
    assert frame_ids(fast) == [0, 144, 300, 444, 588]  # ties go to the earlier keyframe
    assert fast.decoded_frames == 5 < exact.decoded_frames


def test_fast_mode_without_usable_keyframes_decodes_exactly(tmp_path: Path) -> None:
    path = write_video(tmp_path / "onegop.mp4", 60, options={"g": "1000", "sc_threshold": "0"})
    video = decode_sampled_frames(path, mode="fast")
    assert_frame_exact(video)
