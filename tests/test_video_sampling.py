"""The step-1 sampling rule (models.video.sample_indices) against the reference's golden numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.video import MAX_SAMPLED_FRAMES, sample_indices

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "sample_indices.json"
CASES = json.loads(GOLDEN.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['total_frames']}@{c['avg_fps']}" for c in CASES])
def test_sample_indices_match_reference_golden_exactly(case: dict) -> None:
    indices, real_fps = sample_indices(case["total_frames"], case["avg_fps"])
    assert indices.dtype == np.int64
    assert indices.tolist() == case["indices"]
    assert real_fps == case["real_fps"]


@pytest.mark.parametrize("bad_fps", [None, 0.0, -5.0, float("nan")])
def test_unknown_or_nonpositive_fps_falls_back_to_two_fps(bad_fps: float | None) -> None:
    indices, real_fps = sample_indices(100, bad_fps)
    expected, expected_fps = sample_indices(100, 2.0)
    assert indices.tolist() == expected.tolist()
    assert real_fps == expected_fps
    # 100 frames at 2 fps = 50 s -> 100 samples, i.e. every frame.
    assert indices.tolist() == list(range(100))


def test_single_frame_video_samples_frame_zero_at_file_rate() -> None:
    indices, real_fps = sample_indices(1, 25.0)
    assert indices.tolist() == [0]
    assert real_fps == 25.0


def test_short_videos_get_at_least_four_samples_with_repeats() -> None:
    indices, _ = sample_indices(3, 30.0)
    assert indices.tolist() == [0, 1, 1, 2]


def test_long_videos_are_capped_at_max_sampled_frames_spanning_whole_video() -> None:
    indices, real_fps = sample_indices(10 * 3600 * 30, 30.0)
    assert len(indices) == MAX_SAMPLED_FRAMES
    assert indices[0] == 0 and indices[-1] == 10 * 3600 * 30 - 1
    assert np.all(np.diff(indices) > 0)
    assert real_fps == pytest.approx(MAX_SAMPLED_FRAMES / 36000.0)


def test_indices_are_half_to_even_rounded_and_within_bounds() -> None:
    for n_frames in (2, 5, 17, 301, 4999):
        for fps in (1.0, 23.976, 30.0, 60.0):
            indices, _ = sample_indices(n_frames, fps)
            assert indices.min() >= 0 and indices.max() <= n_frames - 1
            n = len(indices)
            assert indices.tolist() == np.round(np.linspace(0, n_frames - 1, n)).astype(np.int64).tolist()
