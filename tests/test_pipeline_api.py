"""The pipeline API the service builds on: cached encodings, multi-turn, stop strings, sampling, limits."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import InputError
from models.tempo import VideoEncoding
from tests.conftest import GOLDEN_CASES, golden_case


@pytest.fixture(scope="module")
def video():
    meta, arrays = golden_case(GOLDEN_CASES[0])
    return arrays["frames"][:40], meta["case"]["fps"]


@pytest.fixture(scope="module")
def encoding(tiny_pipeline, video):
    return tiny_pipeline.encode(*video)


def test_answer_from_a_saved_and_reloaded_encoding_equals_run(tiny_pipeline, video, encoding, tmp_path):
    encoding.save(tmp_path / "entry")
    loaded = VideoEncoding.load(tmp_path / "entry")
    direct = tiny_pipeline.run(*video, "What happens?", max_new_tokens=6)
    cached = tiny_pipeline.answer(loaded, "What happens?", max_new_tokens=6, debug=True)
    assert cached.token_ids == direct.token_ids
    np.testing.assert_array_equal(cached.allocations, direct.allocations)
    np.testing.assert_allclose(cached.step_logits, direct.step_logits, rtol=0, atol=1e-6)


def test_segments_report_time_ranges_relevance_and_tokens(tiny_pipeline, encoding, video):
    result = tiny_pipeline.answer(encoding, "Where?", max_new_tokens=2)
    fps = video[1]
    assert [s.index for s in result.segments] == list(range(5))
    assert result.segments[0].start_s == 0 and result.segments[-1].end_s == pytest.approx(40 / fps, abs=1e-3)
    assert [s.tokens_kept for s in result.segments] == result.allocations.tolist()
    assert result.prompt_tokens > sum(result.allocations)


def test_history_reaches_the_llm_prompt(tiny_pipeline, encoding):
    single = tiny_pipeline.answer(encoding, "And then?", max_new_tokens=1, debug=True)
    multi = tiny_pipeline.answer(
        encoding, "And then?", max_new_tokens=1, debug=True,
        history=[{"role": "user", "content": "What is shown?"}, {"role": "assistant", "content": "A square."}],
    )
    assert multi.prompt_tokens > single.prompt_tokens
    np.testing.assert_array_equal(multi.allocations, single.allocations)  # the compressor sees the new question


def test_stop_string_truncates_text_and_stops(tiny_pipeline, encoding):
    free = tiny_pipeline.answer(encoding, "What color?", max_new_tokens=8)
    assert len(free.text) > 4
    stop = free.text[2:4]
    streamed: list[str] = []
    cut = tiny_pipeline.answer(encoding, "What color?", max_new_tokens=8, stop=[stop], on_token=lambda t, d: streamed.append(d))
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.find(stop)]
    assert "".join(streamed) == cut.text


def test_streamed_deltas_add_up_to_the_answer(tiny_pipeline, encoding):
    deltas: list[str] = []
    result = tiny_pipeline.answer(encoding, "Describe it.", max_new_tokens=10, on_token=lambda t, d: deltas.append(d))
    assert "".join(deltas) == result.text
    assert result.finish_reason in {"stop", "length"}


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(tiny_pipeline, encoding):
    a = tiny_pipeline.answer(encoding, "Describe it.", max_new_tokens=12, temperature=1.5, seed=7)
    b = tiny_pipeline.answer(encoding, "Describe it.", max_new_tokens=12, temperature=1.5, seed=7)
    greedy = tiny_pipeline.answer(encoding, "Describe it.", max_new_tokens=12)
    assert a.token_ids == b.token_ids
    assert a.token_ids != greedy.token_ids


def test_question_longer_than_the_context_is_an_input_error(tiny_pipeline, encoding):
    with pytest.raises(InputError, match="limit"):
        tiny_pipeline.answer(encoding, "why " * 400, max_length=256, max_new_tokens=1)


def test_bad_frames_are_input_errors(tiny_pipeline):
    with pytest.raises(InputError):
        tiny_pipeline.encode(np.zeros((0, 8, 8, 3), np.uint8), 2.0)
    with pytest.raises(InputError):
        tiny_pipeline.encode(np.zeros((4, 8, 8, 3), np.uint8), 0.0)


def test_single_frame_video_is_answered(tiny_pipeline):
    frames = np.random.default_rng(0).integers(0, 255, (1, 40, 30, 3), dtype=np.uint8)
    result = tiny_pipeline.run(frames, 2.0, "What?", max_new_tokens=2)
    assert result.allocations.tolist() == [16] and len(result.segments) == 1
