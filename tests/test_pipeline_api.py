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


def test_answer_many_equals_one_by_one_and_isolates_bad_requests(tiny_pipeline, encoding, video):
    from models.tempo import AskRequest

    other = tiny_pipeline.encode(video[0][8:33], video[1])
    reqs = [
        AskRequest(encoding, "What color?", max_new_tokens=5),
        AskRequest(other, "Where is it?", max_new_tokens=7, visual_token_budget=20),
        AskRequest(encoding, "   ", max_new_tokens=5),  # bad: empty question
        AskRequest(other, "How many?", max_new_tokens=3, temperature=1.0, seed=3),
    ]
    batched = tiny_pipeline.answer_many(reqs)
    assert isinstance(batched[2], InputError)
    for req, got in zip(reqs, batched, strict=True):
        if isinstance(got, InputError):
            continue
        alone = tiny_pipeline.answer(req.encoding, req.question, max_new_tokens=req.max_new_tokens,
                                     visual_token_budget=req.visual_token_budget, temperature=req.temperature, seed=req.seed)
        assert got.token_ids == alone.token_ids
        np.testing.assert_array_equal(got.allocations, alone.allocations)


def test_more_requests_than_decode_slots_all_complete(tiny_pipeline, encoding):
    from models.tempo import AskRequest

    slots = tiny_pipeline.decode_slots
    reqs = [AskRequest(encoding, f"Question {i}?", max_new_tokens=3 + i % 4) for i in range(slots * 2 + 1)]
    results = tiny_pipeline.answer_many(reqs)
    for req, res in zip(reqs, results, strict=True):
        assert res.completion_tokens <= req.max_new_tokens
        assert res.token_ids == tiny_pipeline.answer(encoding, req.question, max_new_tokens=req.max_new_tokens).token_ids


def test_prefix_kv_cache_gives_the_same_compression_and_tokens(tiny_pipeline, video):
    plain = tiny_pipeline.encode(*video, prefix_kv=False)
    cached = tiny_pipeline.encode(*video, prefix_kv=True)
    assert plain.prefix_kv is None and cached.prefix_kv is not None
    a = tiny_pipeline.answer(plain, "What color is it?", max_new_tokens=6, debug=True)
    b = tiny_pipeline.answer(cached, "What color is it?", max_new_tokens=6, debug=True)
    assert a.token_ids == b.token_ids
    np.testing.assert_array_equal(a.allocations, b.allocations)
    np.testing.assert_allclose(a.relevance, b.relevance, atol=1e-6)
    np.testing.assert_allclose(a.compression_features, b.compression_features, rtol=1e-4, atol=1e-5)


def test_cached_and_uncached_requests_batch_together(tiny_pipeline, video):
    from models.tempo import AskRequest

    cached = tiny_pipeline.encode(*video, prefix_kv=True)
    plain = tiny_pipeline.encode(video[0][:17], video[1], prefix_kv=False)
    questions = ["Is it red?", "Which way does the square move?", "Why?"]
    reqs = [AskRequest(e, q, max_new_tokens=4) for e in (cached, plain) for q in questions]
    for req, res in zip(reqs, tiny_pipeline.answer_many(reqs), strict=True):
        alone = tiny_pipeline.answer(req.encoding, req.question, max_new_tokens=4)
        assert res.token_ids == alone.token_ids
        np.testing.assert_array_equal(res.allocations, alone.allocations)


def test_prompt_and_answer_must_fit_the_decode_slot(tiny_pipeline, encoding):
    slot = tiny_pipeline.decode_max_seq
    with pytest.raises(InputError, match="context"):
        tiny_pipeline.answer(encoding, "Why?", max_length=slot, max_new_tokens=8)
    with pytest.raises(InputError, match="max_new_tokens"):
        tiny_pipeline.answer(encoding, "Why?", max_new_tokens=slot)
    ok = tiny_pipeline.answer(encoding, "Why?", max_new_tokens=4)  # no max_length: the checkpoint's, clamped to the slot
    assert ok.prompt_tokens + ok.completion_tokens <= slot


def test_requests_join_a_running_batch_and_each_is_reported_when_done(tiny_pipeline, encoding, monkeypatch):
    from models import tempo
    from models.tempo import AskRequest

    monkeypatch.setattr(tempo, "JOIN_POLL_S", 0.0)  # ask for more at every step: deterministic on any CPU

    first = [AskRequest(encoding, "What color?", max_new_tokens=12)]
    late = [AskRequest(encoding, "Where is it?", max_new_tokens=3), AskRequest(encoding, " ", max_new_tokens=3)]
    asked: list[int] = []
    done: list[tuple[str, object]] = []

    def more(free: int) -> list:
        asked.append(free)
        return [late.pop(0)] if late else []

    results = tiny_pipeline.answer_many(first, more=more, on_done=lambda req, res: done.append((req.question, res)))
    assert len(results) == 3 and asked and all(n >= 1 for n in asked)
    assert isinstance(results[2], InputError)  # a bad late request is refused, the others answered
    assert [q for q, _ in done][0] == " "  # refused at once, before anyone finished decoding
    assert {q for q, _ in done} == {"What color?", "Where is it?", " "}
    alone = tiny_pipeline.answer(encoding, "Where is it?", max_new_tokens=3)
    assert results[1].token_ids == alone.token_ids
